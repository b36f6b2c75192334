"""MedGemma's input picture: the scoring pixel chain rendered as 8-bit RGB."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest

from dicom.errors import UnscorableImage
from dicom.pixels import decode_png16, to_model_array, to_model_png
from dicom.render import to_gray_8bit, to_rgb_image
from tests.factories import radiograph


def test_rgb_image_is_the_scoring_array_in_8_bits() -> None:
    ds = radiograph(size=48, seed=4)
    ds.Columns = 32  # not square: PIL's size is (width, height)
    ds.PixelData = np.random.default_rng(1).integers(0, 4096, (48, 32), dtype=np.uint16).tobytes()

    image = to_rgb_image(ds)
    rgb = np.asarray(image)

    assert image.mode == "RGB" and image.size == (32, 48)
    assert (rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all()
    assert rgb.min() == 0 and rgb.max() == 255
    scoring = to_model_array(ds)
    assert np.array_equal(decode_png16(to_model_png(ds)), scoring)  # one chain for both models
    assert np.array_equal(rgb[..., 0], np.rint(scoring / 257.0).astype(np.uint8))


def test_monochrome1_is_shown_white_for_dense_like_scoring() -> None:
    mono2 = radiograph(size=16, seed=2)
    mono1 = radiograph(size=16, seed=2)
    mono1.PhotometricInterpretation = "MONOCHROME1"
    stored = np.frombuffer(mono2.PixelData, dtype=np.uint16)
    mono1.PixelData = (4095 - stored).astype(np.uint16).tobytes()
    assert np.array_equal(np.asarray(to_rgb_image(mono1)), np.asarray(to_rgb_image(mono2)))


def test_real_sample_renders(samples) -> None:
    ds = pydicom.dcmread(samples / "chest" / "CR-MONO1-10-chest.dcm", force=True)
    image = to_rgb_image(ds)
    assert image.mode == "RGB" and image.size == (440, 440) and image.getextrema()[0] == (0, 255)


def test_what_scoring_refuses_is_refused() -> None:
    ds = radiograph(size=16)
    del ds.PixelData
    with pytest.raises(UnscorableImage):
        to_rgb_image(ds)


def test_gray_8bit_rounds_to_the_nearest_level() -> None:
    assert to_gray_8bit(np.array([[0, 128, 129, 257, 65535]], dtype=np.uint16)).tolist() == [[0, 0, 1, 1, 255]]
    eight = np.array([[0, 7, 255]], dtype=np.uint8)
    assert to_gray_8bit(eight) is eight
    with pytest.raises(ValueError):
        to_gray_8bit(np.zeros((2, 2), dtype=np.int32))
