"""What makes two received copies of one SOP instance the same image, whatever the file around them.

Two hashes, both ``blake3:<hex>``:

* the **dataset hash**, of the dataset's encoding without the preamble and file meta. The
  same file sent by ``dcmsend``, ``radtriage send`` and a backfill differs only in its file
  meta, so this one hash, cheap beside the storing itself, tells them apart from a revision.
* the **image hash**, of the header attributes (those that do not depend on the transfer
  syntax) and the decoded pixels. A PACS that transcodes sends the same image in another
  transfer syntax: other bytes, the same image. Decoding costs a second or so for a large
  compressed radiograph, so it is computed only when a copy of the SOP instance is already
  held and its dataset hash differs.
"""

from __future__ import annotations

import io
from collections.abc import Iterable
from pathlib import Path

import blake3
import numpy as np
import pydicom
from pydicom import Dataset
from pydicom.dataelem import DataElement
from pydicom.sequence import Sequence

__all__ = ["dataset_hash", "image_hash", "image_hash_of_bytes", "image_hash_of_file"]

# Attributes whose value follows from the encoding, not the image: pixel data in any form,
# the offset tables of encapsulated frames, the planar layout, and trailing padding.
# Derivation Description is where DCMTK's codecs (and PACS built on them) note a
# compression they applied.
_ENCODING_DEPENDENT = frozenset({
    0x00082111,  # Derivation Description
    0x7FE00001, 0x7FE00002, 0x7FE00008, 0x7FE00009, 0x7FE00010,  # offset tables, (float) pixel data
    0x00280006,  # Planar Configuration
    0xFFFCFFFC,  # Data Set Trailing Padding
})
_PHOTOMETRIC = 0x00280004
# A JPEG codec may re-label RGB as one of the YBR colour spaces (pydicom decodes them to RGB,
# so the pixels decide); MONOCHROME1 against MONOCHROME2 is a different image.
_COLOUR = ("RGB", "YBR_FULL", "YBR_FULL_422", "YBR_ICT", "YBR_RCT", "YBR_PARTIAL_420")


def dataset_hash(body: bytes | memoryview) -> str:
    """The dataset hash of an encoded dataset (everything after the file meta)."""
    return f"blake3:{blake3.blake3(body).hexdigest()}"


def image_hash(ds: Dataset) -> str | None:
    """The image hash of ``ds``; None when its pixels cannot be decoded (no copy is then proven equal).

    Private elements are left out: read from an implicit VR encoding they have no VR, so
    their values do not compare across encodings.
    """
    digest = blake3.blake3()
    _hash_elements(digest, ds)
    if "PixelData" in ds or "FloatPixelData" in ds or "DoubleFloatPixelData" in ds:
        try:
            pixels = np.asarray(ds.pixel_array)
        except Exception:  # any codec failure: an undecodable image equals nothing  # noqa: BLE001
            return None
        pixels = np.ascontiguousarray(pixels.astype(pixels.dtype.newbyteorder("<"), copy=False))
        digest.update(f"pixels {pixels.shape} {pixels.dtype.str}".encode())
        digest.update(memoryview(pixels).cast("B"))
    return f"blake3:{digest.hexdigest()}"


def image_hash_of_file(path: Path | str) -> str | None:
    """The image hash of a stored Part 10 file; None when it cannot be read or decoded."""
    try:
        ds = pydicom.dcmread(path, force=True)
    except Exception:  # a stored file that no longer parses equals nothing  # noqa: BLE001
        return None
    return image_hash(ds)



def image_hash_of_bytes(parts: Iterable[bytes | memoryview]) -> str | None:
    """The image hash of a Part 10 file given as pieces (file meta, then the dataset)."""
    try:
        ds = pydicom.dcmread(io.BytesIO(b"".join(parts)), force=True)
    except Exception:  # noqa: BLE001
        return None
    return image_hash(ds)


def _hash_elements(digest, ds: Dataset) -> None:
    for element in _top_level(ds):
        _hash_element(digest, element)


def _top_level(ds: Dataset):
    for tag in sorted(ds.keys()):
        if int(tag) in _ENCODING_DEPENDENT or tag.is_private or tag.element == 0:
            continue
        yield ds[tag]


def _hash_element(digest, element: DataElement) -> None:
    digest.update(f"{int(element.tag):08X}=".encode())
    value = element.value
    if isinstance(value, Sequence):
        for number, item in enumerate(value):
            digest.update(f"[{number}]".encode())
            _hash_elements(digest, item)
        digest.update(b"]")
    elif isinstance(value, (bytes, bytearray)):
        digest.update(bytes(value).rstrip(b"\x00 "))
    else:
        text = str(value if value is not None else "").strip()
        if int(element.tag) == _PHOTOMETRIC and text.upper() in _COLOUR:
            text = "RGB"
        digest.update(text.encode("utf-8", "surrogateescape"))
    digest.update(b"\x00")
