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


def chest_radiograph(rows: int, cols: int, *, seed: int = 0, view: str = "PA",
                     study_uid: str | None = None) -> Dataset:
    """A full-size 12-bit DX: smooth, radiograph-like structure plus noise (pure noise would
    not compress like a radiograph), RescaleSlope/Intercept and a VOI window as DX headers carry."""
    ds = radiograph(view=view, seed=seed, size=8, study_uid=study_uid)
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:rows, 0:cols].astype(np.float32)
    body = np.exp(-(((x - cols / 2) / (0.38 * cols)) ** 2 + ((y - rows / 2) / (0.45 * rows)) ** 2))
    ribs = 0.15 * np.sin(y / (rows / 40) + rng.uniform(0, 6))
    image = 300 + 3200 * body * (1 + ribs) + rng.normal(0, 25, (rows, cols))
    ds.Rows, ds.Columns = rows, cols
    ds.PixelData = np.clip(image, 0, 4095).astype(np.uint16).tobytes()
    ds.RescaleSlope, ds.RescaleIntercept, ds.RescaleType = 1, 0, "US"
    ds.WindowCenter, ds.WindowWidth = 2048, 4096
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
