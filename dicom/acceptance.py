"""The one rule that decides which instances radtriage takes in, and why it refuses the others.

The listener (each C-STORE), ``radtriage send`` (each file, before it goes out) and
``radtriage backfill`` (each file on disk) all ask :func:`identify`, and read files with
:func:`read_file`, so a file refused by one of them is refused by all three with the same
reason, and one accepted by one is accepted by all. Each refusal raises the error whose
status ``dicom.status`` answers: unparsable → 0xC210, identifying UID missing or malformed
→ 0xC220, dataset not matching its SOP class → 0xA900, a SOP class the site does not
accept → 0x0122 (the listener refuses those at negotiation already).

Only the header is read (pydicom decodes values lazily). The image's own SOP Class UID,
in its dataset, is what counts: the one a sender declares (a C-STORE's Affected SOP Class
UID, a file meta's Media Storage SOP Class UID) is a label that senders copy from stale
file meta, and DCMTK's ``dcmsend`` sends the dataset's own anyway.
"""

from __future__ import annotations

import dataclasses
import io
import re
from collections.abc import Collection
from pathlib import Path

import pydicom
from pydicom import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_file_meta_info
from pydicom.uid import UID, ImplicitVRLittleEndian
from pydicom.valuerep import VR

from db.ingest import InstanceHeader
from dicom.errors import DatasetMismatch, InvalidDataset, MissingAttribute, SopClassNotAccepted
from dicom.order import ordered_priority
from dicom.views import expected_instances, view_of

__all__ = ["Part10", "check_encoding", "identify", "read_file", "split_part10"]

# PS3.5 9.1: digits and dots, 64 characters at most. Leading zeros in a component are
# invalid too, but legacy modalities send them and refusing those images helps nobody.
_UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")
_PIXEL_KEYWORDS = ("Rows", "Columns", "BitsAllocated", "SamplesPerPixel")
_PREAMBLE = 128


def identify(ds: Dataset, transfer_syntax: str, *,
             accepted_sop_classes: Collection[str] | None = None) -> InstanceHeader:
    """Check ``ds`` and read what the database records (only the header is read).

    Parameters
    ----------
    ds : pydicom.Dataset
        The received dataset (``event.dataset``) or a file read from disk.
    transfer_syntax : str
        The negotiated transfer syntax, or the file's.
    accepted_sop_classes : collection of str, optional
        The storage SOP classes the site takes in; the dataset's own SOP Class UID must be
        one of them. None: any (``radtriage send``, whose peer decides).

    Returns
    -------
    InstanceHeader
        Everything the header says; ``dicom.intake.take_in`` adds where the bytes are stored.

    Raises
    ------
    MissingAttribute
        Study, Series or SOP Instance UID missing, empty or not a valid UID (0xC220).
    DatasetMismatch
        SOP Class UID missing, or an image class lacks its Image Pixel module (0xA900).
    SopClassNotAccepted
        The dataset's SOP class is not one of ``accepted_sop_classes`` (0x0122).
    InvalidDataset
        The dataset cannot be parsed (0xC210).
    """
    try:
        return _identify(ds, transfer_syntax, accepted_sop_classes)
    except InvalidDataset:
        raise
    except Exception as exc:  # pydicom raises many kinds while decoding a broken value
        raise InvalidDataset.unparsable(exc) from exc


def _identify(ds: Dataset, transfer_syntax: str, accepted: Collection[str] | None) -> InstanceHeader:
    study = _uid(ds, "StudyInstanceUID")
    series = _uid(ds, "SeriesInstanceUID")
    instance = _uid(ds, "SOPInstanceUID")
    sop_class = _text(ds, "SOPClassUID")
    if not sop_class:
        raise DatasetMismatch("SOPClassUID is missing")
    if accepted is not None and sop_class not in accepted:
        raise SopClassNotAccepted(sop_class)
    if "Image Storage" in UID(sop_class).name:
        _check_image_pixel_module(ds, UID(transfer_syntax))
    return InstanceHeader(
        study_instance_uid=study,
        series_instance_uid=series,
        sop_instance_uid=instance,
        sop_class_uid=sop_class,
        transfer_syntax_uid=transfer_syntax,
        ordered_priority=ordered_priority(ds),
        accession_number=_text(ds, "AccessionNumber")[:16] or None,
        modality=_text(ds, "Modality")[:16] or None,
        body_part=_text(ds, "BodyPartExamined")[:16] or None,
        view_position=_text(ds, "ViewPosition")[:16] or None,
        view=view_of(ds),
        expected_instances=expected_instances(ds),
    )


_VRS = frozenset(vr.value.encode() for vr in VR)


def check_encoding(dataset_bytes: bytes | memoryview, transfer_syntax: str) -> None:
    """Refuse a dataset whose bytes contradict its transfer syntax (0xC210).

    pydicom reads such a dataset anyway (it switches VR mode on the fly), and it would be
    stored labelled with a syntax it is not in, unreadable later. The first element tells:
    its group read in the declared byte order is a small one (datasets begin with group
    0x0008 or near it), and an explicit VR syntax has two VR letters after the tag, an
    implicit one a length whose low bytes are not (a first element of 16 KiB or more
    would be needed to look like letters). A deflated dataset is not judged here.

    Raises
    ------
    InvalidDataset
        The byte order or the VR mode contradicts ``transfer_syntax``.
    """
    syntax = UID(transfer_syntax)
    head = bytes(dataset_bytes[:6])
    if syntax.is_deflated or len(head) < 6:
        return  # inflated and read whole by pydicom; too short to judge: identify refuses it
    declared = int.from_bytes(head[:2], "little" if syntax.is_little_endian else "big")
    swapped = int.from_bytes(head[:2], "big" if syntax.is_little_endian else "little")
    if declared > 0xFF >= swapped:
        raise InvalidDataset("the dataset's byte order contradicts its transfer syntax")
    explicit = head[4:6] in _VRS
    if explicit == syntax.is_implicit_VR:
        raise InvalidDataset(f"the dataset is encoded with {'explicit' if explicit else 'implicit'} VR, "
                             "contradicting its transfer syntax")


def _check_image_pixel_module(ds: Dataset, transfer_syntax: UID) -> None:
    """The Image Pixel module (PS3.3 C.7.6.3) is mandatory in every image storage class."""
    if "PixelData" not in ds:
        raise DatasetMismatch("an image storage SOP class without Pixel Data")
    values = {}
    for keyword in _PIXEL_KEYWORDS:
        value = ds.get(keyword)
        if not isinstance(value, int) or value <= 0:
            raise DatasetMismatch(f"Image Pixel module attribute {keyword} is missing or invalid")
        values[keyword] = value
    if not _text(ds, "PhotometricInterpretation"):
        raise DatasetMismatch("Image Pixel module attribute PhotometricInterpretation is missing")
    _check_pixel_values(ds, values)
    if transfer_syntax.is_compressed and not _encapsulated(ds):
        # Stored as received, it would be labelled with a syntax it is not in (PS3.5 A.4).
        raise InvalidDataset("native Pixel Data under a compressed transfer syntax")
    if not transfer_syntax.is_compressed:
        # Native pixel data has a known length; a shorter one is a truncated image.
        frames = _frames(ds)
        bits = values["Rows"] * values["Columns"] * values["SamplesPerPixel"] * values["BitsAllocated"] * frames
        if _value_length(ds, "PixelData") < (bits + 7) // 8:
            raise DatasetMismatch("Pixel Data is shorter than its Rows, Columns and Bits Allocated require")


def _encapsulated(ds: Dataset) -> bool:
    """Whether Pixel Data is encapsulated (undefined length, PS3.5 A.4), without reading it."""
    element = ds.get_item("PixelData", keep_deferred=True)
    if hasattr(element, "is_undefined_length"):
        return bool(element.is_undefined_length)
    return element.length == 0xFFFFFFFF


def _check_pixel_values(ds: Dataset, values: dict[str, int]) -> None:
    """Values no image can have (PS3.3 C.7.6.3.1, PS3.5 8.1.1): such pixels cannot be read as
    what the header says, so the instance does not match its SOP class (0xA900)."""
    allocated = values["BitsAllocated"]
    if allocated != 1 and allocated % 8:
        raise DatasetMismatch("Bits Allocated is neither 1 nor a multiple of 8")
    stored, high = ds.get("BitsStored"), ds.get("HighBit")
    if isinstance(stored, int) and not 0 < stored <= allocated:
        raise DatasetMismatch("Bits Stored is not within Bits Allocated")
    if isinstance(high, int) and not 0 <= high < allocated:
        raise DatasetMismatch("High Bit is not within Bits Allocated")
    if values["SamplesPerPixel"] not in (1, 3, 4):
        raise DatasetMismatch("Samples per Pixel is not 1, 3 or 4")


def _value_length(ds: Dataset, keyword: str) -> int:
    """A value's length in bytes, without reading it when its read was deferred (the listener
    parses only the header: a 10 MB Pixel Data stays in the receive buffer)."""
    element = ds.get_item(keyword, keep_deferred=True)
    if element.value is None:
        return int(element.length)
    return len(element.value)


def _frames(ds: Dataset) -> int:
    try:
        return max(1, int(ds.get("NumberOfFrames") or 1))
    except (TypeError, ValueError) as exc:
        raise DatasetMismatch("NumberOfFrames is not an integer") from exc


def _uid(ds: Dataset, keyword: str) -> str:
    value = _text(ds, keyword)
    if not value:
        raise MissingAttribute(keyword)
    if len(value) > 64 or not _UID.match(value):
        raise MissingAttribute(keyword, "is not a valid UID")
    return value


def _text(ds: Dataset, keyword: str) -> str:
    # Some senders pad UIDs with NUL or spaces; neither is part of the value.
    return str(ds.get(keyword, "") or "").strip().rstrip("\x00").strip()


@dataclasses.dataclass(frozen=True, slots=True)
class Part10:
    """A file as a C-STORE of it carries it: file meta, and the encoded dataset after it.

    Attributes
    ----------
    head : bytes
        Preamble, ``DICM`` and the file meta group (made when the file had none).
    body : bytes or memoryview
        The dataset's encoding, exactly as in the file (what goes on the wire).
    dataset : pydicom.Dataset
        The parsed dataset (values decoded lazily).
    transfer_syntax : str
    """

    head: bytes
    body: bytes | memoryview
    dataset: Dataset
    transfer_syntax: str

    @property
    def parts(self) -> tuple[bytes, bytes | memoryview]:
        return self.head, self.body


def read_file(path: Path) -> Part10:
    """Read ``path`` as the Part 10 file a C-STORE of it would be stored as.

    A file without a meta header is given one (implicit VR little endian, as the standard
    presumes for a bare dataset); its dataset bytes stay as they are.

    Raises
    ------
    InvalidDataset
        The file is not DICOM (the reason says why, e.g. no DICM preamble) or cannot be
        parsed; a readable file then goes to :func:`identify`.
    """
    raw = Path(path).read_bytes()
    has_preamble = raw[_PREAMBLE:_PREAMBLE + 4] == b"DICM"
    try:
        ds = pydicom.dcmread(io.BytesIO(raw), force=True)
        len(ds)  # parse every top-level element now, not later in a worker
    except Exception as exc:  # pydicom raises many kinds on a file that is not DICOM
        if not has_preamble:
            raise InvalidDataset(f"not a DICOM file (no DICM preamble, and not readable as a bare dataset: "
                                 f"{type(exc).__name__})") from exc
        raise InvalidDataset(f"DICOM file could not be parsed ({type(exc).__name__})") from exc
    meta = getattr(ds, "file_meta", None)
    syntax = meta.get("TransferSyntaxUID") if meta is not None else None
    offset = _dataset_offset(raw) if has_preamble else 0  # a bare dataset starts at byte 0
    if not has_preamble and not any(k in ds for k in ("SOPClassUID", "SOPInstanceUID", "StudyInstanceUID")):
        raise InvalidDataset("not a DICOM file (no DICM preamble, and no SOP Class, SOP Instance "
                             "or Study Instance UID where a bare dataset would have them)")
    if has_preamble and syntax:
        check_encoding(memoryview(raw)[offset:offset + 6], str(syntax))  # as the listener checks what it receives
        return Part10(raw[:offset], memoryview(raw)[offset:], ds, str(syntax))
    syntax = str(syntax or _bare_syntax(ds))
    ds.file_meta = pydicom.dataset.FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = syntax
    for keyword, meta_keyword in (("SOPClassUID", "MediaStorageSOPClassUID"),
                                  ("SOPInstanceUID", "MediaStorageSOPInstanceUID")):
        if ds.get(keyword):  # else identify refuses the file
            setattr(ds.file_meta, meta_keyword, ds[keyword].value)
    buffer = DicomBytesIO()
    buffer.write(b"\x00" * _PREAMBLE + b"DICM")
    write_file_meta_info(buffer, ds.file_meta, enforce_standard="MediaStorageSOPInstanceUID" in ds.file_meta)
    return Part10(buffer.getvalue(), memoryview(raw)[offset:], ds, syntax)


def split_part10(raw: bytes | memoryview) -> tuple[bytes, memoryview]:
    """A Part 10 file's head (preamble, DICM, file meta) and its dataset bytes."""
    offset = _dataset_offset(bytes(raw[:64 * 1024]))
    return bytes(raw[:offset]), memoryview(raw)[offset:]


def _dataset_offset(raw: bytes) -> int:
    """Where the dataset starts in a file with a preamble: after the last file meta element."""
    from pydicom.filereader import _read_file_meta_info

    fh = io.BytesIO(raw)
    fh.seek(_PREAMBLE + 4)
    _read_file_meta_info(fh)
    return fh.tell()


def _bare_syntax(ds: Dataset) -> UID:
    """The transfer syntax a bare dataset is encoded in, as pydicom found it."""
    from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian

    implicit, little = getattr(ds, "original_encoding", (True, True))
    if implicit is None:
        return ImplicitVRLittleEndian
    return ImplicitVRLittleEndian if implicit else ExplicitVRLittleEndian if little else ExplicitVRBigEndian
