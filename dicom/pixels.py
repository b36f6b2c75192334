"""Pixels → model input: one DICOM image becomes the 16-bit grayscale PNG CXR Foundation eats.

Follows the DICOM branch of Google's serving chain for CXR Foundation
(``data_processing_lib.process_xray_image_to_tf_example``, not the Hugging Face quick-start's
``png_to_tfexample``) step by step, each step a pure numpy function:

    ds.pixel_array → apply_modality_lut → apply_window (if WindowCenter/Width)
    → invert_monochrome1 (if MONOCHROME1) → shift_to_unsigned
    → rescale_dynamic_range (16-bit only; uint8 is left as it is) → encode_png16

For 8- and 16-bit stored pixels the chain runs once per stored value, not once per pixel,
and the image is mapped through the resulting table: the same pixels at a fraction of the
cost (see :func:`to_model_array`). The PNG is stored, not compressed (:func:`encode_png16`).

Where Google's code would crash (float windowing, multi-valued windows, big-endian
arrays, wide integer types) we take the obvious float-safe route and say so inline.
No tensorflow/torch here: ``dicom/`` must stay importable without ML libraries.
"""

from __future__ import annotations

import copy
import io
import logging
import struct
import zlib
from collections.abc import Sequence

import numpy as np
import pydicom
from PIL import Image
from pydicom.dataset import FileMetaDataset
from pydicom.pixels import apply_modality_lut
from pydicom.uid import (
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)

from dicom.errors import UnscorableImage

__all__ = [
    "MAX_SIDE",
    "MIN_SIDE",
    "apply_window",
    "decode_png16",
    "encode_png16",
    "invert_monochrome1",
    "rescale_dynamic_range",
    "shift_to_unsigned",
    "to_model_array",
    "to_model_png",
]

log = logging.getLogger(__name__)

# Smallest/largest accepted side in pixels. Real CR/DX detectors are ≤ ~4.3k a side; 8192
# leaves room while bounding memory (the float path holds 8 bytes a pixel). Tiny images are
# allowed down to 8 px because the model resizes internally; a body-part/view filter, not
# this module, decides whether such an image is worth scoring.
MIN_SIDE = 8
MAX_SIDE = 8192

_UINT16_MAX = float(np.iinfo(np.uint16).max)
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

# What pydicom and its pixel plugins raise for corrupt, truncated or unsupported data.
# Broad on purpose (third-party codecs differ), but limited to data errors: a bug of ours
# such as NameError still surfaces.
_DECODE_ERRORS = (
    RuntimeError,
    ValueError,
    TypeError,
    AttributeError,
    NotImplementedError,
    KeyError,
    IndexError,
    OSError,
    EOFError,
)


# ---------------------------------------------------------------------------------------
# The individual steps (pure functions on arrays)
# ---------------------------------------------------------------------------------------


def apply_window(
    arr: np.ndarray, center: float | Sequence[float], width: float | Sequence[float]
) -> np.ndarray:
    """Apply a linear VOI window the way Google's ``image_utils.window`` does.

    Values are clipped to ``[c - w/2, c - 1 + w/2]`` and mapped linearly onto
    ``[0, dtype max]``, truncating to the dtype.

    Parameters
    ----------
    arr : numpy.ndarray
        Integer or float image (floats are what the modality LUT returns with a rescale).
    center, width : float or sequence of float
        WindowCenter / WindowWidth; only the first value of a multi-valued tag is used.

    Returns
    -------
    numpy.ndarray
        Integer input keeps its dtype and maps onto ``[0, iinfo(dtype).max]`` (Google's
        behaviour); float input maps onto ``[0, 65535]`` and stays float64 (Google's
        ``np.iinfo`` call would fail on floats).

    Raises
    ------
    ValueError
        If the window is empty (width ≤ 1) or not finite.
    """
    c, w = _first_value(center), _first_value(width)
    top, bottom = c - 1 + w / 2, c - w / 2
    if not (np.isfinite(top) and np.isfinite(bottom)) or top <= bottom:
        raise ValueError(f"window width must be a finite number > 1, got {w!r}")
    is_int = np.issubdtype(arr.dtype, np.integer)
    out_max = float(np.iinfo(arr.dtype).max) if is_int else _UINT16_MAX
    mapped = np.interp(np.clip(arr, bottom, top), (bottom, top), (0.0, out_max))
    return mapped.astype(arr.dtype) if is_int else mapped


def invert_monochrome1(arr: np.ndarray) -> np.ndarray:
    """Turn MONOCHROME1 (white = low) into MONOCHROME2 with ``max - arr`` (Google's rule).

    Signed integers are inverted in int64 so that a range wider than half the dtype
    cannot wrap around; the result is narrowed back when it fits.
    """
    if np.issubdtype(arr.dtype, np.signedinteger):
        wide = arr.max().astype(np.int64) - arr.astype(np.int64)
        info = np.iinfo(arr.dtype)
        return wide.astype(arr.dtype) if wide.max() <= info.max else wide
    return np.max(arr) - arr


def shift_to_unsigned(arr: np.ndarray) -> np.ndarray:
    """Shift an image to an unsigned dtype suitable for PNG (Google's ``shift_to_unsigned``).

    uint8/uint16 are returned as they are; int8 → uint8 and int16 → uint16 by
    subtracting the minimum; floats are shifted to 0 and, if wider than 16 bits, scaled
    down to fit, then truncated to uint16. Other integer widths and bools take the float
    route (Google's code refuses them).

    Raises
    ------
    ValueError
        For dtypes that are neither numeric nor boolean.
    """
    arr = _native(arr)
    if arr.dtype in (np.uint8, np.uint16):
        return arr
    if arr.dtype == np.int16:
        wide = arr.astype(np.int32)
        return (wide - wide.min()).astype(np.uint16)
    if arr.dtype == np.int8:
        wide = arr.astype(np.int16)
        return (wide - wide.min()).astype(np.uint8)
    if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == np.bool_):
        raise ValueError(f"cannot shift pixels of dtype {arr.dtype.name!r} to unsigned")
    image = arr.astype(np.float64)
    image = image - image.min()
    if image.max() > _UINT16_MAX:
        image = image * (_UINT16_MAX / image.max())
        image[image > _UINT16_MAX] = _UINT16_MAX  # guard against rounding above the top
    return image.astype(np.uint16)


def rescale_dynamic_range(arr: np.ndarray) -> np.ndarray:
    """Stretch an unsigned integer image to use its dtype's full range (min → 0, max → top).

    uint8 stays uint8 (0..255) exactly as Google does; uint16 goes to 0..65535.
    A constant image has no range to stretch and comes back as zeros.

    Raises
    ------
    ValueError
        If the pixels are not of an integer type.
    """
    if not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"pixels must be an integer type, got {arr.dtype.name!r}")
    arr = _native(arr)
    lo, hi = arr.min(), arr.max()
    if lo == hi:
        return np.zeros_like(arr)
    info = np.iinfo(arr.dtype)
    return np.interp(arr, (lo, hi), (info.min, info.max)).astype(arr.dtype)


def encode_png16(arr: np.ndarray) -> bytes:
    """Encode a 2-D uint8/uint16 array as a 16-bit grayscale PNG (values unchanged).

    uint8 input is widened without scaling, so the PNG holds 0..255: the same 8-bit
    semantics in a 16-bit container that Google's serving code produces.

    The PNG is *stored*: every row unfiltered, the deflate stream made of uncompressed
    blocks. It is a transient hand-over to the model, which decodes it to the same pixels as
    a compressed one; compressing was most of triage's CPU (Pillow level 1: ~330 ms for a
    2500×2000 image, and level 0 still ~170 ms because Pillow filters every row; this takes
    ~10 ms) for a PNG ~20 % smaller that nobody keeps.

    Raises
    ------
    ValueError
        If the array is not 2-D or not uint8/uint16.
    """
    if arr.ndim != 2:
        raise ValueError(f"image must be 2-D, got {arr.ndim} dimensions")
    if arr.dtype not in (np.uint8, np.uint16):
        raise ValueError(f"pixels must be uint8 or uint16, got {arr.dtype.name!r}")
    height, width = arr.shape
    # Each scanline: filter type 0 (None), then the samples big-endian, as PNG stores 16 bits.
    scanlines = np.empty((height, 1 + 2 * width), dtype=np.uint8)
    scanlines[:, 0] = 0
    scanlines[:, 1:].view(">u2")[...] = arr
    header = struct.pack(">IIBBBBB", width, height, 16, 0, 0, 0, 0)  # 16-bit gray, no interlace
    return b"".join((
        _PNG_SIGNATURE,
        _png_chunk(b"IHDR", header),
        _png_chunk(b"IDAT", zlib.compress(scanlines, 0)),  # level 0: stored deflate blocks
        _png_chunk(b"IEND", b""),
    ))


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    """One PNG chunk: length, type, data, CRC-32 of type and data."""
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(data, zlib.crc32(kind)))


def decode_png16(png: bytes) -> np.ndarray:
    """Decode a PNG made by :func:`encode_png16` back to a uint16 array.

    Raises
    ------
    ValueError
        If the bytes are not a 16-bit grayscale PNG.
    """
    # IHDR is always the first chunk: bytes 24/25 are bit depth and colour type (0 = gray).
    if png[:8] != _PNG_SIGNATURE or len(png) < 26 or png[24] != 16 or png[25] != 0:
        raise ValueError("not a 16-bit grayscale PNG")
    with Image.open(io.BytesIO(png)) as image:
        return np.asarray(image, dtype=np.uint16)


# ---------------------------------------------------------------------------------------
# The whole chain
# ---------------------------------------------------------------------------------------


def to_model_png(ds: pydicom.Dataset) -> bytes:
    """Turn a single-frame grayscale DICOM image into CXR Foundation's 16-bit PNG input.

    Parameters
    ----------
    ds : pydicom.Dataset
        A dataset with pixel data (read with or without ``force``).

    Returns
    -------
    bytes
        A 16-bit grayscale PNG of ``Rows × Columns`` pixels.

    Raises
    ------
    UnscorableImage
        As :func:`to_model_array`.
    """
    return encode_png16(to_model_array(ds))


def to_model_array(ds: pydicom.Dataset) -> np.ndarray:
    """The whole chain up to, not including, the PNG: what every model back-end starts from.

    Parameters
    ----------
    ds : pydicom.Dataset
        A dataset with pixel data (read with or without ``force``).

    Returns
    -------
    numpy.ndarray
        2-D ``Rows × Columns``, white = dense: uint8 with its own values for 8-bit sources
        (not stretched, as in Google's chain), otherwise uint16 stretched to 0..65535.

    Raises
    ------
    UnscorableImage
        No pixel data; multi-frame; colour; size outside ``MIN_SIDE..MAX_SIDE``; pixel
        data that cannot be decoded; an image with a single pixel value (e.g. a window
        that does not match the stored values). The reason is PHI-free.
    """
    return _convert(_decoded(ds), ds)


def _decoded(ds: pydicom.Dataset) -> np.ndarray:
    """The stored values, checked and decoded (native byte order)."""
    _check_header(ds)
    return _native(_decode(_with_transfer_syntax(ds)))


def _convert(arr: np.ndarray, ds: pydicom.Dataset) -> np.ndarray:
    """Decoded stored values → the model's array, through a table of the values when possible."""
    if not _by_table(arr, ds):
        return _map_values(arr, ds)
    # Every step maps a stored value on its own, apart from the image's extremes (inversion,
    # shift, stretch), and every step is monotone, so the extremes of the values from the
    # image's minimum to its maximum are those of the image itself: the chain run once on
    # those values gives a table that maps each pixel exactly as the chain run on the image.
    # It replaces several float64 passes over millions of pixels by one lookup.
    lo, hi = int(arr.min()), int(arr.max())
    values = np.arange(lo, hi + 1, dtype=arr.dtype)
    mapped = _map_values(values, ds)
    unsigned = np.dtype(f"u{arr.itemsize}")  # signed values index the table by their bits
    table = np.zeros(1 << (8 * arr.itemsize), dtype=mapped.dtype)
    table[values.view(unsigned)] = mapped
    return np.take(table, arr.view(unsigned))


def _by_table(arr: np.ndarray, ds: pydicom.Dataset) -> bool:
    """Whether the chain may run on the stored values instead of the pixels (see _convert).

    8- and 16-bit integers only (a table of at most 65,536 entries), and not through a
    Modality LUT Sequence: an arbitrary table need not be monotone, so values absent from
    the image could move its extremes.
    """
    return (
        np.issubdtype(arr.dtype, np.integer)
        and arr.itemsize <= 2
        and arr.size > (1 << (8 * arr.itemsize))
        and "ModalityLUTSequence" not in ds
    )


def _map_values(arr: np.ndarray, ds: pydicom.Dataset) -> np.ndarray:
    """Google's chain from the decoded stored values to the model's array (to_model_array)."""
    arr = _apply_modality(arr, ds)
    windowed = _maybe_window(arr, ds)
    arr = windowed if windowed is not None else arr
    # Like Google, only PhotometricInterpretation decides the inversion; PresentationLUTShape
    # and VOI LUT Sequence are not applied (the model was trained on this chain).
    if ds.PhotometricInterpretation == "MONOCHROME1":
        arr = invert_monochrome1(arr)
    arr = shift_to_unsigned(arr)
    if arr.min() == arr.max():
        raise UnscorableImage(
            "image has no contrast after VOI windowing (window does not match the stored values)"
            if windowed is not None
            else "image has no contrast (a single pixel value)"
        )
    # Google's chain stretches 16-bit images only: an 8-bit image keeps its own values.
    return arr if arr.dtype == np.uint8 else rescale_dynamic_range(arr)


def _check_header(ds: pydicom.Dataset) -> None:
    """Refuse, before decoding anything, what the header already says we cannot score."""
    if "PixelData" not in ds:
        raise UnscorableImage("no pixel data (float or absent pixel data is not scored)")
    frames = _int_tag(ds, "NumberOfFrames", default=1)
    if frames > 1:
        raise UnscorableImage(f"multi-frame images are not scored ({frames} frames)")
    samples = _int_tag(ds, "SamplesPerPixel", default=1)
    photometric = str(ds.get("PhotometricInterpretation", "") or "").strip()
    if not photometric:
        raise UnscorableImage("PhotometricInterpretation is missing")
    if samples != 1 or photometric not in ("MONOCHROME1", "MONOCHROME2"):
        raise UnscorableImage(
            f"colour images are not scored ({photometric[:16]}, {samples} samples per pixel)"
        )
    rows, cols = _int_tag(ds, "Rows"), _int_tag(ds, "Columns")
    if not (MIN_SIDE <= rows <= MAX_SIDE and MIN_SIDE <= cols <= MAX_SIDE):
        raise UnscorableImage(
            f"image size {rows}x{cols} is outside the accepted {MIN_SIDE}..{MAX_SIDE} pixels a side"
        )


def _with_transfer_syntax(ds: pydicom.Dataset) -> pydicom.Dataset:
    """The dataset, or a shallow copy naming the transfer syntax it was read with.

    A file without file meta (old archives, ``dcmread(force=True)``) is still decodable when
    it is uncompressed: pydicom knows the encoding it parsed, just not the UID it needs.
    The caller's dataset is left untouched.
    """
    meta = getattr(ds, "file_meta", None)
    if meta is not None and "TransferSyntaxUID" in meta:
        return ds
    encoding = getattr(ds, "original_encoding", (None, None))
    syntax = {
        (True, True): ImplicitVRLittleEndian,
        (False, True): ExplicitVRLittleEndian,
        (False, False): ExplicitVRBigEndian,
    }.get(tuple(encoding))
    if syntax is None:
        return ds  # nothing to infer from; decoding will say what is wrong
    patched = copy.copy(ds)
    new_meta = FileMetaDataset()
    for element in meta or ():  # copy element by element: FileMetaDataset(meta) shares storage
        new_meta.add(element)
    new_meta.TransferSyntaxUID = syntax
    patched.file_meta = new_meta
    return patched


def _decode(ds: pydicom.Dataset) -> np.ndarray:
    """Decode the pixel data, turning any codec failure into UnscorableImage."""
    try:
        arr = ds.pixel_array
    except _DECODE_ERRORS as exc:  # codec messages may quote tag values: keep only the class
        raise UnscorableImage(f"pixel data could not be decoded: {type(exc).__name__}") from exc
    if arr.shape != (int(ds.Rows), int(ds.Columns)):
        raise UnscorableImage(f"decoded pixel array has an unexpected shape {arr.shape}")
    return arr


def _apply_modality(arr: np.ndarray, ds: pydicom.Dataset) -> np.ndarray:
    """Modality LUT or rescale slope/intercept (pydicom's own implementation)."""
    try:
        out = apply_modality_lut(arr, ds)
    except _DECODE_ERRORS as exc:
        raise UnscorableImage(f"modality LUT could not be applied: {type(exc).__name__}") from exc
    if np.issubdtype(out.dtype, np.floating) and not np.isfinite(out).all():
        raise UnscorableImage("modality LUT produced non-finite values")
    return _native(out)


def _maybe_window(arr: np.ndarray, ds: pydicom.Dataset) -> np.ndarray | None:
    """The windowed image, or None when the dataset has no usable window."""
    if "WindowCenter" not in ds or "WindowWidth" not in ds:
        return None
    try:
        return apply_window(arr, ds.WindowCenter, ds.WindowWidth)
    except (TypeError, ValueError, IndexError):
        # An empty or malformed window: a viewer would fall back to the full range, so do
        # we (Google's code would crash here).
        log.info("ignoring an unusable VOI window")
        return None


def _int_tag(ds: pydicom.Dataset, keyword: str, default: int | None = None) -> int:
    """A tag as one int; absent/empty → default; anything else unusable → UnscorableImage."""
    try:
        value = ds.get(keyword, None)
        if value is None or value == "":
            if default is None:
                raise UnscorableImage(f"{keyword} is missing")
            return default
        if isinstance(value, Sequence) and not isinstance(value, str):
            raise TypeError("multi-valued")
        return int(value)
    except (TypeError, ValueError) as exc:
        raise UnscorableImage(f"{keyword} is not a single integer") from exc


def _first_value(value: float | Sequence[float]) -> float:
    """First value of a possibly multi-valued numeric tag, as float."""
    if isinstance(value, (str, bytes)):
        return float(value)
    if isinstance(value, (Sequence, np.ndarray)):
        return float(value[0])
    return float(value)


def _native(arr: np.ndarray) -> np.ndarray:
    """The array in native byte order (``>u2`` != ``uint16`` would defeat the dtype checks)."""
    if arr.dtype.byteorder in ("=", "|") or arr.dtype.isnative:
        return arr
    return arr.astype(arr.dtype.newbyteorder("="))
