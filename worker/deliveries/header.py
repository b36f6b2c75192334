"""What a delivery's receiver keys on, read from the study's stored DICOM file when sending: the
database keeps no patient data, so the accession, order numbers and patient come from there."""

from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path

import pydicom
from pydicom import Dataset


@dataclasses.dataclass(frozen=True, slots=True)
class Header:
    """The DICOM header fields a notice carries (None where the file has none)."""

    accession_number: str | None = None
    placer_order_number: str | None = None  # (0040,2016)
    filler_order_number: str | None = None  # (0040,2017)
    requested_procedure_id: str | None = None  # (0040,1001)
    patient_id: str | None = None
    patient_name: str | None = None
    patient_birth_date: str | None = None
    patient_sex: str | None = None
    study_datetime: dt.datetime | None = None


def read_header(path: Path) -> Header:
    """The header of one stored instance (pixels are not read).

    Raises
    ------
    OSError, pydicom.errors.InvalidDicomError
        The file is gone or is not DICOM.
    """
    return header_of(pydicom.dcmread(path, stop_before_pixels=True))


def header_of(ds: Dataset) -> Header:
    """Top-level attributes first; the order numbers and requested procedure also from the
    first Request Attributes Sequence item that has them (where modalities copy them)."""
    requests = list(ds.get("RequestAttributesSequence") or [])

    def first(keyword: str) -> str | None:
        for item in [ds, *requests]:
            value = _text(item.get(keyword))
            if value:
                return value
        return None

    return Header(
        accession_number=_text(ds.get("AccessionNumber")) or first("AccessionNumber"),
        placer_order_number=first("PlacerOrderNumberImagingServiceRequest"),
        filler_order_number=first("FillerOrderNumberImagingServiceRequest"),
        requested_procedure_id=first("RequestedProcedureID"),
        patient_id=_text(ds.get("PatientID")),
        patient_name=_text(ds.get("PatientName")),
        patient_birth_date=_text(ds.get("PatientBirthDate")),
        patient_sex=_text(ds.get("PatientSex")),
        study_datetime=_study_datetime(ds),
    )


def _text(value: object) -> str | None:
    text = "" if value is None else str(value).strip()
    return text or None


def _study_datetime(ds: Dataset) -> dt.datetime | None:
    date, time = _text(ds.get("StudyDate")), _text(ds.get("StudyTime")) or "000000"
    if not date:
        return None
    try:
        value = dt.datetime.strptime(date + time.split(".")[0].ljust(6, "0")[:6], "%Y%m%d%H%M%S")
    except ValueError:
        return None
    # The modality's local time: aware only where the header states its offset (+HHMM).
    offset = _text(ds.get("TimezoneOffsetFromUTC"))
    if offset and len(offset) == 5 and offset[0] in "+-" and offset[1:].isdigit():
        sign = 1 if offset[0] == "+" else -1
        zone = dt.timezone(sign * dt.timedelta(hours=int(offset[1:3]), minutes=int(offset[3:])))
        return value.replace(tzinfo=zone)
    return value
