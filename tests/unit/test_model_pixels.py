"""The model receives exactly the pixels Google's chain produces.

``dicom.pixels.to_model_png`` maps stored values through a table and writes a stored PNG;
the reference here is Google's chain as it was written before: each step applied to the
whole image in float where Google's code does, then a compressed PNG (Pillow, level 1).
Both PNGs are decoded with TensorFlow's ``tf.io.decode_png``, as ELIXR-C's graph decodes its
input, and must give the same array, pixel for pixel.
"""

from __future__ import annotations

import io

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom import Dataset
from pydicom.pixels import apply_modality_lut

from dicom import pixels
from dicom.pixels import apply_window, invert_monochrome1, rescale_dynamic_range, shift_to_unsigned, to_model_png
from tests.conftest import SAMPLES, need

# Edge samples that decode into a usable grayscale image (as in test_pixels.py).
EDGE_DECODABLE = {"Fake_MONOHR1.dcm", "medsiglip_encapsulated_cxr_fake.dcm"}


def _reference_array(ds: Dataset) -> np.ndarray:
    """Google's DICOM chain step by step on every pixel (modality → window → invert → shift → stretch)."""
    arr = pixels._native(pixels._decode(pixels._with_transfer_syntax(ds)))  # decoding is not under test
    arr = apply_modality_lut(arr, ds)
    if "WindowCenter" in ds and "WindowWidth" in ds:
        arr = apply_window(arr, ds.WindowCenter, ds.WindowWidth)
    if ds.PhotometricInterpretation == "MONOCHROME1":
        arr = invert_monochrome1(arr)
    arr = shift_to_unsigned(arr)
    return arr if arr.dtype == np.uint8 else rescale_dynamic_range(arr)


def _reference_png(arr: np.ndarray) -> bytes:
    """The encoder triage used before: Pillow, zlib level 1, 16-bit gray."""
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(arr, dtype=np.dtype("=u2"))).save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def _as_the_model_decodes(png: bytes) -> np.ndarray:
    tf = pytest.importorskip("tensorflow")
    return tf.io.decode_png(png, channels=1, dtype=tf.uint16).numpy()[..., 0]


def _assert_model_sees_the_reference(ds: Dataset) -> None:
    expected = _reference_array(ds)
    png = to_model_png(ds)
    seen = _as_the_model_decodes(png)
    np.testing.assert_array_equal(seen, _as_the_model_decodes(_reference_png(expected)))
    np.testing.assert_array_equal(seen, expected)
    assert png[24:26] == b"\x10\x00"  # IHDR: 16-bit grayscale, as before


def _samples(folder: str, names: set[str] | None = None) -> list:
    files = sorted((SAMPLES / folder).glob("*.dcm")) if (SAMPLES / folder).is_dir() else []
    files = [f for f in files if names is None or f.name in names]
    return files or [pytest.param(None, id=f"no samples in {folder}")]


@pytest.mark.parametrize(
    "path",
    _samples("chest") + _samples("derived") + _samples("xray_nonchest") + _samples("edge", EDGE_DECODABLE),
    ids=lambda p: getattr(p, "name", "none"),
)
def test_real_samples_reach_the_model_as_googles_chain_makes_them(path):
    need(path is not None, f"DICOM samples in {SAMPLES}")
    _assert_model_sees_the_reference(pydicom.dcmread(path, force=True))


def _smooth(shape: tuple[int, int], lo: int, hi: int, seed: int) -> np.ndarray:
    """A radiograph-like image: smooth structure plus noise, spanning about lo..hi."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0 : shape[0], 0 : shape[1]]
    base = np.sin(x / 37.0) * np.cos(y / 53.0) + 0.1 * rng.normal(size=shape)
    return lo + (base - base.min()) / (base.max() - base.min()) * (hi - lo)


def _dataset(arr: np.ndarray, photometric: str = "MONOCHROME2", bits: int | None = None, **tags) -> Dataset:
    ds = Dataset()
    ds.set_pixel_data(arr, photometric, bits or arr.dtype.itemsize * 8)
    for keyword, value in tags.items():
        setattr(ds, keyword, value)
    return ds


SHAPE = (300, 260)  # more pixels than a 16-bit table has entries, so the table is used


def _u16(lo, hi, seed=1):
    return np.rint(_smooth(SHAPE, lo, hi, seed)).astype(np.uint16)


def _i16(lo, hi, seed=2):
    return np.rint(_smooth(SHAPE, lo, hi, seed)).astype(np.int16)


CASES = {
    "12-bit, rescale 1/0 and a window (the common DX header)": lambda: _dataset(
        _u16(200, 3900), bits=12, RescaleSlope=1, RescaleIntercept=0, WindowCenter=2048, WindowWidth=4096),
    "12-bit MONOCHROME1, window clipping both ends": lambda: _dataset(
        _u16(0, 4095), "MONOCHROME1", bits=12, WindowCenter=1500, WindowWidth=1200),
    "16-bit using the full range, no window": lambda: _dataset(
        np.concatenate([_u16(0, 65535)[:-1], np.array([[0] * 259 + [65535]], np.uint16)])),
    "signed, fractional slope and negative intercept": lambda: _dataset(
        _i16(-3000, 3000), RescaleSlope=0.37, RescaleIntercept=-1024.5),
    "signed full range MONOCHROME1 (inverted in a wider type)": lambda: _dataset(
        np.concatenate([_i16(-32768, 32767)[:-1], np.array([[-32768] * 259 + [32767]], np.int16)]), "MONOCHROME1"),
    "negative slope": lambda: _dataset(_u16(10, 1000), bits=12, RescaleSlope=-2.0, RescaleIntercept=100),
    "multi-valued window": lambda: _dataset(
        _u16(0, 4095), bits=12, WindowCenter=[1000, 2000], WindowWidth=[1500, 4000]),
    "8-bit with a window": lambda: _dataset(
        np.rint(_smooth(SHAPE, 3, 250, 4)).astype(np.uint8), WindowCenter=120, WindowWidth=100),
    "8-bit unstretched": lambda: _dataset(np.rint(_smooth(SHAPE, 40, 200, 5)).astype(np.uint8), "MONOCHROME1"),
    "signed 8-bit": lambda: _dataset(np.rint(_smooth(SHAPE, -100, 100, 6)).astype(np.int8)),
    "a Modality LUT that is not monotone": lambda: _with_modality_lut(_dataset(2 * _u16(500, 1500), bits=12)),
}


def _with_modality_lut(ds: Dataset) -> Dataset:
    """A 4096-entry Modality LUT sending odd stored values, absent from the image, to 0."""
    values = np.arange(4096, dtype=np.uint16)
    item = Dataset()
    item.LUTDescriptor = [4096, 0, 16]
    item.ModalityLUTType = "US"
    item.LUTData = np.where(values % 2 == 0, values, 0).tolist()
    ds.ModalityLUTSequence = [item]
    return ds


@pytest.mark.parametrize("case", CASES)
def test_built_images_reach_the_model_as_googles_chain_makes_them(case):
    _assert_model_sees_the_reference(CASES[case]())


def test_full_size_image_reaches_the_model_as_googles_chain_makes_them():
    arr = np.rint(_smooth((2500, 2000), 100, 4000, 7)).astype(np.uint16)
    _assert_model_sees_the_reference(
        _dataset(arr, bits=12, RescaleSlope=1, RescaleIntercept=0, WindowCenter=1800, WindowWidth=3000))


def test_a_window_missing_every_stored_value_is_still_refused():
    ds = _dataset(_u16(100, 200), bits=12, WindowCenter=3000, WindowWidth=100)
    with pytest.raises(pixels.UnscorableImage, match="no contrast after VOI windowing"):
        to_model_png(ds)
