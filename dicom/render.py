"""Pixels → MedGemma input: the scoring pixel chain (``dicom.pixels``), shown as 8-bit RGB.

MedGemma's processor takes an RGB picture and does its own resizing and normalising, so
this module only takes the array CXR Foundation is given (modality LUT, window,
MONOCHROME1 inversion, full-range stretch of 16-bit sources) down to 8 bits and three equal channels.
"""

from __future__ import annotations

import numpy as np
import pydicom
from PIL import Image

from dicom.pixels import to_model_array

__all__ = ["to_gray_8bit", "to_rgb_image"]

_UINT16_TO_UINT8 = 255.0 / 65535.0


def to_rgb_image(ds: pydicom.Dataset) -> Image.Image:
    """Render a single-frame grayscale DICOM image as an 8-bit RGB PIL image.

    Parameters
    ----------
    ds : pydicom.Dataset
        A dataset with pixel data (read with or without ``force``).

    Returns
    -------
    PIL.Image.Image
        Mode ``"RGB"``, ``Columns × Rows``, white = dense (16-bit sources use the full 0..255 range; 8-bit ones keep their values).

    Raises
    ------
    dicom.errors.UnscorableImage
        Whatever :func:`dicom.pixels.to_model_array` refuses (no or undecodable pixels,
        multi-frame, colour, no contrast...); the reason is PHI-free.
    """
    return Image.fromarray(to_gray_8bit(to_model_array(ds))).convert("RGB")


def to_gray_8bit(arr: np.ndarray) -> np.ndarray:
    """A full-range uint8/uint16 grayscale array as uint8, rounding to the nearest level.

    Raises
    ------
    ValueError
        If the array is not 2-D uint8 or uint16.
    """
    if arr.ndim != 2 or arr.dtype not in (np.uint8, np.uint16):
        raise ValueError(f"expected a 2-D uint8 or uint16 image, got {arr.dtype.name} {arr.shape}")
    if arr.dtype == np.uint8:
        return arr
    return np.rint(arr * _UINT16_TO_UINT8).astype(np.uint8)
