"""DICOM test data made with pydicom: small radiographs with the tags the listener reads."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from pydicom import Dataset
from pydicom.dataset import FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

CR = "1.2.840.10008.5.1.4.1.1.1"
DX = "1.2.840.10008.5.1.4.1.1.1.1"


def radiograph(
    *,
    study_uid: str | None = None,
    sop_class: str = DX,
    view: str | None = "PA",
    body_part: str | None = "CHEST",
    priority: str | None = None,
    size: int = 64,
    seed: int = 0,
) -> Dataset:
    """A small 12-bit MONOCHROME2 radiograph, ready to send or save."""
    rng = np.random.default_rng(seed)
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = sop_class
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.StudyInstanceUID = study_uid or generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.PatientName = "TEST^PATIENT"
    ds.PatientID = "TEST-0001"
    ds.AccessionNumber = f"ACC{seed:05d}"
    ds.Modality = "DX" if sop_class == DX else "CR"
    if body_part:
        ds.BodyPartExamined = body_part
    if view:
        ds.ViewPosition = view
    if priority:
        ds.RequestedProcedurePriority = priority
    ds.Rows = ds.Columns = size
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.PixelData = rng.integers(0, 4096, (size, size), dtype=np.uint16).tobytes()
    return ds


def write(ds: Dataset, folder: Path, name: str | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / (name or f"{ds.SOPInstanceUID}.dcm")
    ds.save_as(path, enforce_file_format=True)
    return path


def dataset_bytes(path: Path) -> bytes:
    """The encoded dataset of a DICOM file without preamble and file meta (what goes on the wire)."""
    from pydicom.filereader import _read_file_meta_info, read_preamble

    with open(path, "rb") as fh:
        preamble = read_preamble(fh, force=True)
        if preamble is not None:
            _read_file_meta_info(fh)
        return fh.read()
