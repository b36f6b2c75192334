"""dicom.pixels: each preprocessing step on hand-built arrays, the chain on built datasets and samples."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom import Dataset

from dicom.errors import DicomError, UnscorableImage
from dicom.pixels import (
    apply_window,
    decode_png16,
    encode_png16,
    invert_monochrome1,
    rescale_dynamic_range,
    shift_to_unsigned,
    to_model_png,
)
from tests.conftest import SAMPLES, need

PHI = ("Doe^Jane", "PHI-4711", "19700101")

# Edge samples that decode into a usable grayscale image; every other edge file is refused.
EDGE_DECODABLE = {"Fake_MONOHR1.dcm", "medsiglip_encapsulated_cxr_fake.dcm"}


def _png_array(png: bytes) -> np.ndarray:
    """Decode independently of dicom.pixels (Pillow), checking it is a 16-bit gray PNG."""
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert png[24] == 16 and png[25] == 0, "IHDR must say bit depth 16, colour type 0 (gray)"
    with Image.open(io.BytesIO(png)) as image:
        assert image.mode in ("I;16", "I;16B", "I")
        return np.asarray(image).astype(np.uint16)


def _dataset(
    arr: np.ndarray,
    *,
    photometric: str = "MONOCHROME2",
    bits_stored: int | None = None,
    tile: int = 1,
    **tags: object,
) -> Dataset:
    """A minimal image dataset carrying fake PHI, so refusal reasons can be checked for it.

    ``tile`` blows each pixel up to tile × tile so tiny hand-built arrays pass the size check.
    """
    arr = arr.repeat(tile, axis=0).repeat(tile, axis=1) if tile > 1 else arr
    ds = Dataset()
    ds.PatientName, ds.PatientID, ds.StudyDate = PHI
    bits = bits_stored if bits_stored is not None else arr.dtype.itemsize * 8
    ds.set_pixel_data(arr, photometric, bits)
    for keyword, value in tags.items():
        setattr(ds, keyword, value)
    return ds


# --- apply_window -----------------------------------------------------------------------


def test_window_integer_maps_clip_range_onto_dtype_range():
    # c=100, w=200: clip to [0, 199], then 0..199 → 0..65535, truncated.
    arr = np.array([0, 50, 199, 300, 65535], dtype=np.uint16)
    out = apply_window(arr, 100, 200)
    assert out.dtype == np.uint16
    assert out.tolist() == [0, 16466, 65535, 65535, 65535]  # 50/199*65535 = 16466.08


def test_window_uint8_keeps_8_bit_range():
    out = apply_window(np.array([0, 64, 200], dtype=np.uint8), 64, 128)  # clip [0, 127]
    assert out.dtype == np.uint8
    assert out.tolist() == [0, 128, 255]  # 64/127*255 = 128.5 → 128


def test_window_uses_first_value_of_multi_valued_tags():
    arr = np.array([0, 50, 199], dtype=np.uint16)
    expected = apply_window(arr, 100, 200)
    assert apply_window(arr, [100, 40], [200, 80]).tolist() == expected.tolist()
    assert apply_window(arr, pydicom.multival.MultiValue(float, ["100", "40"]), ["200", "80"]).tolist() == expected.tolist()


def test_window_is_float_safe():
    # What the modality LUT returns with a rescale: float64 (Google's window() crashes here).
    arr = np.array([-1000.0, 0.0, 40.0, 79.0, 1000.0])
    out = apply_window(arr, 40, 80)  # clip [0, 79]
    assert out.dtype == np.float64
    np.testing.assert_allclose(out, [0.0, 0.0, 40 / 79 * 65535, 65535.0, 65535.0])


@pytest.mark.parametrize("width", [1, 0, -5, float("nan")])
def test_window_refuses_empty_window(width):
    with pytest.raises(ValueError, match="width"):
        apply_window(np.arange(4, dtype=np.uint16), 2, width)


# --- invert / shift / rescale -------------------------------------------------------------


def test_invert_monochrome1_is_max_minus_value():
    arr = np.array([[0, 10], [1023, 5]], dtype=np.uint16)
    assert invert_monochrome1(arr).tolist() == [[1023, 1013], [0, 1018]]
    np.testing.assert_allclose(invert_monochrome1(np.array([-1.5, 2.5])), [4.0, 0.0])


def test_invert_signed_full_range_does_not_wrap():
    out = invert_monochrome1(np.array([-32768, 0, 32767], dtype=np.int16))
    assert out.tolist() == [65535, 32767, 0]


def test_shift_to_unsigned():
    assert shift_to_unsigned(np.array([-5, 0, 10], dtype=np.int16)).tolist() == [0, 5, 15]
    assert shift_to_unsigned(np.array([-5, 0, 10], dtype=np.int16)).dtype == np.uint16
    assert shift_to_unsigned(np.array([-128, 127], dtype=np.int8)).tolist() == [0, 255]
    assert shift_to_unsigned(np.array([-128, 127], dtype=np.int8)).dtype == np.uint8
    assert shift_to_unsigned(np.array([-1.5, 0.5, 2.5])).tolist() == [0, 2, 4]
    assert shift_to_unsigned(np.array([0.0, 65535.0, 131070.0])).tolist() == [0, 32767, 65535]
    same = np.array([1, 2], dtype=np.uint16)
    assert shift_to_unsigned(same) is same


def test_shift_and_rescale_handle_big_endian():
    big = np.array([100, 200, 300], dtype=">u2")
    shifted = shift_to_unsigned(big)
    assert shifted.dtype == np.uint16 and shifted.dtype.isnative
    assert rescale_dynamic_range(big).tolist() == [0, 32767, 65535]


def test_rescale_dynamic_range():
    assert rescale_dynamic_range(np.array([100, 200, 300], dtype=np.uint16)).tolist() == [0, 32767, 65535]
    out8 = rescale_dynamic_range(np.array([10, 20], dtype=np.uint8))
    assert out8.dtype == np.uint8 and out8.tolist() == [0, 255]
    assert rescale_dynamic_range(np.full(3, 7, dtype=np.uint16)).tolist() == [0, 0, 0]
    with pytest.raises(ValueError, match="integer"):
        rescale_dynamic_range(np.array([0.0, 1.0]))


# --- PNG ----------------------------------------------------------------------------------


def test_png16_round_trip_is_exact():
    arr = np.random.default_rng(0).integers(0, 65536, size=(37, 53), dtype=np.uint16)
    png = encode_png16(arr)
    np.testing.assert_array_equal(_png_array(png), arr)
    np.testing.assert_array_equal(decode_png16(png), arr)


def test_png16_of_uint8_keeps_values():
    arr = np.array([[0, 128], [255, 3]], dtype=np.uint8)
    assert _png_array(encode_png16(arr)).tolist() == arr.tolist()


def test_png16_refuses_bad_input():
    with pytest.raises(ValueError, match="2-D"):
        encode_png16(np.zeros((2, 2, 3), dtype=np.uint16))
    with pytest.raises(ValueError, match="uint8 or uint16"):
        encode_png16(np.zeros((2, 2), dtype=np.int32))
    eight_bit = io.BytesIO()
    Image.fromarray(np.zeros((2, 2), dtype=np.uint8)).save(eight_bit, format="PNG")
    with pytest.raises(ValueError, match="16-bit"):
        decode_png16(eight_bit.getvalue())


# --- the whole chain on built datasets ------------------------------------------------------

TILE = 8


def _chain(arr: np.ndarray, **kwargs: object) -> list:
    """Run to_model_png on ``arr`` tiled 8×8 and return one value per original pixel."""
    out = _png_array(to_model_png(_dataset(arr, tile=TILE, **kwargs)))
    small = out[::TILE, ::TILE]
    np.testing.assert_array_equal(out, small.repeat(TILE, axis=0).repeat(TILE, axis=1))
    return small.tolist()



@pytest.mark.parametrize("bits", [8, 10, 12, 15, 16])
def test_bit_depths_rescale_to_full_range(bits):
    top = 2**bits - 1
    if bits == 8:
        arr = np.array([[10, 20], [30, 40]], dtype=np.uint8)
        # uint8 is left as it is (Google's chain does not stretch it), inside a 16-bit PNG.
        expected = [[10, 20], [30, 40]]
    else:
        arr = np.array([[0, top // 2], [top, 1]], dtype=np.uint16)
        expected = [[0, int(top // 2 * 65535 / top)], [65535, int(65535 / top)]]
    assert _chain(arr, bits_stored=bits) == expected


def test_monochrome1_is_inverted():
    arr = np.array([[0, 1023], [511, 923]], dtype=np.uint16)
    out = _chain(arr, photometric="MONOCHROME1", bits_stored=10)
    # inverted: [[1023, 0], [512, 100]] → × 65535/1023, truncated
    assert out == [[65535, 0], [int(512 * 65535 / 1023), int(100 * 65535 / 1023)]]


def test_rescale_slope_intercept_then_window_in_output_units():
    arr = np.array([[0, 100], [200, 300]], dtype=np.uint16)
    # HU = 2*v - 1024 → [-1024, -824, -624, -424] → shift/rescale → thirds of 65535
    assert _chain(arr, bits_stored=12, RescaleSlope=2, RescaleIntercept=-1024) == [[0, 21845], [43690, 65535]]
    # A window in HU proves the order: modality LUT first, window second (clip [-825, -624]).
    windowed = _chain(arr, bits_stored=12, RescaleSlope=2, RescaleIntercept=-1024, WindowCenter=-724, WindowWidth=202)
    assert windowed == [[0, int(1 / 201 * 65535)], [65535, 65535]]


def test_multi_valued_window_on_dataset_uses_first():
    arr = np.array([[0, 50], [199, 400]], dtype=np.uint16)
    assert _chain(arr, bits_stored=12, WindowCenter=[100, 2000], WindowWidth=[200, 10]) == [[0, 16466], [65535, 65535]]


@pytest.mark.parametrize(
    ("photometric", "expected"),
    [("MONOCHROME2", [[0, 21845], [43690, 65535]]), ("MONOCHROME1", [[65535, 43690], [21845, 0]])],
)
def test_signed_pixels(photometric, expected):
    arr = np.array([[-1000, 0], [1000, 2000]], dtype=np.int16)
    assert _dataset(arr, bits_stored=16).PixelRepresentation == 1
    assert _chain(arr, photometric=photometric, bits_stored=16) == expected


def _refusal(ds: Dataset) -> str:
    with pytest.raises(UnscorableImage) as info:
        to_model_png(ds)
    reason = info.value.reason
    assert isinstance(info.value, DicomError) and str(info.value) == reason
    assert not any(p.lower() in reason.lower() for p in PHI), reason
    return reason


def test_refuses_dataset_without_pixels():
    ds = _dataset(np.zeros((16, 16), dtype=np.uint16), bits_stored=12)
    del ds.PixelData
    assert "no pixel data" in _refusal(ds)


def test_refuses_multi_frame():
    ds = _dataset(np.arange(2 * 16 * 16, dtype=np.uint16).reshape(2, 16, 16), bits_stored=12)
    assert _refusal(ds) == "multi-frame images are not scored (2 frames)"


def test_refuses_colour():
    ds = _dataset(np.zeros((16, 16, 3), dtype=np.uint8), photometric="RGB")
    assert _refusal(ds).startswith("colour images are not scored (RGB")


@pytest.mark.parametrize("shape", [(4, 64), (64, 4)])
def test_refuses_absurd_size(shape):
    assert "outside the accepted" in _refusal(_dataset(np.ones(shape, dtype=np.uint16), bits_stored=12))


def test_refuses_truncated_pixel_data():
    ds = _dataset(np.arange(256, dtype=np.uint16).reshape(16, 16), bits_stored=12)
    ds.PixelData = ds.PixelData[:100]
    assert _refusal(ds).startswith("pixel data could not be decoded: ")


def test_refuses_blank_image():
    assert "no contrast" in _refusal(_dataset(np.full((16, 16), 9, dtype=np.uint16), bits_stored=12))


def test_bad_window_is_ignored_not_fatal():
    arr = np.array([[0, 100], [200, 300]], dtype=np.uint16)
    plain = to_model_png(_dataset(arr, bits_stored=12, tile=TILE))
    assert to_model_png(_dataset(arr, bits_stored=12, tile=TILE, WindowCenter=100, WindowWidth=0)) == plain


# --- the shared sample files ------------------------------------------------------------------


def _samples(folder: str) -> list[Path]:
    files = sorted((SAMPLES / folder).glob("*.dcm"))
    # Without files, one None case, which need() skips here and fails under CI.
    return files or [pytest.param(None, id=f"no samples in {folder}")]


@pytest.mark.parametrize(
    "path",
    _samples("chest") + _samples("derived") + _samples("xray_nonchest")
    + [p for p in _samples("edge") if getattr(p, "name", "") in EDGE_DECODABLE],
    ids=lambda p: getattr(p, "name", "none"),
)
def test_decodable_samples_give_16_bit_png_of_right_size(path):
    need(path is not None, f"DICOM samples in {SAMPLES}")
    ds = pydicom.dcmread(path, force=True)
    out = _png_array(to_model_png(ds))
    assert out.shape == (ds.Rows, ds.Columns)
    if ds.BitsAllocated == 8 and "RescaleSlope" not in ds:
        # 8-bit stored data stays on its own 0..255 values, unstretched (Google's behaviour).
        assert out.max() <= 255 and out.min() < out.max()
    else:
        assert (out.min(), out.max()) == (0, 65535)


@pytest.mark.filterwarnings("ignore:Invalid value for VR")
@pytest.mark.parametrize(
    "path", [p for p in _samples("edge") if getattr(p, "name", "") not in EDGE_DECODABLE],
    ids=lambda p: getattr(p, "name", "none"),
)
def test_unusable_edge_samples_are_refused_with_a_reason(path):
    need(path is not None, f"DICOM samples in {SAMPLES / 'edge'}")
    ds = pydicom.dcmread(path, force=True)
    with pytest.raises(UnscorableImage) as info:
        to_model_png(ds)
    assert info.value.reason and len(info.value.reason) < 200


def test_transfer_syntaxes_give_identical_pngs_without_touching_the_dataset():
    source = SAMPLES / "chest" / "CR-MONO1-10-chest.dcm"
    need(source.exists(), f"DICOM sample {source}")
    ds = pydicom.dcmread(source, force=True)  # no file meta at all
    reference = to_model_png(ds)
    assert "TransferSyntaxUID" not in ds.file_meta  # the caller's dataset is left as it was
    for path in sorted((SAMPLES / "derived").glob("*.dcm")):
        assert to_model_png(pydicom.dcmread(path)) == reference, path.name


def test_pixels_module_does_not_import_ml_libraries():
    code = "import sys, dicom.pixels; sys.exit(any(m in sys.modules for m in ('tensorflow', 'torch', 'transformers')))"
    root = Path(__file__).parents[2]
    assert subprocess.run([sys.executable, "-c", code], cwd=root, env={**os.environ, "PYTHONPATH": str(root)}).returncode == 0
