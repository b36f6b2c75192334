"""What the listener refuses before storing, and the status each refusal answers."""

from __future__ import annotations

import pytest
from pydicom.dataelem import RawDataElement
from pydicom.tag import Tag
from pydicom.uid import JPEGLSLossless

from common import View
from db.ingest import InstanceHeader, NewInstance
from dicom import status
from dicom.errors import (
    DatasetMismatch,
    InvalidDataset,
    MissingAttribute,
    OutOfResources,
    SopClassNotAccepted,
)
from dicom.intake import identify
from tests.factories import CR, DX, radiograph

EXPLICIT = "1.2.840.10008.1.2.1"


def test_a_good_radiograph_is_identified_with_its_view_and_expected_count():
    ds = radiograph(view="PA", priority="STAT")
    ds.NumberOfStudyRelatedInstances = 2
    new = identify(ds, EXPLICIT, accepted_sop_classes=(DX,))
    assert (new.study_instance_uid, new.sop_instance_uid, new.sop_class_uid) == (
        ds.StudyInstanceUID, ds.SOPInstanceUID, DX)
    assert new.view is View.FRONTAL and new.expected_instances == 2 and new.ordered_priority.value == "STAT"


def test_the_header_becomes_a_complete_instance_only_once_its_bytes_are_stored():
    header = identify(radiograph(view="LL"), EXPLICIT)
    assert type(header) is InstanceHeader, "nothing to record before the bytes are stored"
    new = header.stored_as(path="objects/ab/cd/x.dcm", content_hash="blake3:" + "ab" * 32, size_bytes=10)
    assert isinstance(new, NewInstance) and new.view is View.LATERAL
    assert (new.sop_instance_uid, new.path, new.size_bytes) == (header.sop_instance_uid, "objects/ab/cd/x.dcm", 10)
    with pytest.raises(TypeError):
        NewInstance(**{f: getattr(header, f) for f in ("study_instance_uid", "series_instance_uid", "sop_instance_uid",
                                                      "sop_class_uid", "transfer_syntax_uid", "ordered_priority")})


@pytest.mark.parametrize("keyword", ["StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"])
def test_missing_identifying_uid_answers_c220(keyword):
    ds = radiograph()
    delattr(ds, keyword)
    with pytest.raises(MissingAttribute, match=keyword) as info:
        identify(ds, EXPLICIT)
    assert status.status_for(info.value) == 0xC220


@pytest.mark.parametrize("bad", ["1.2.3.abc", "1." + "2" * 70, "1..2"])
def test_malformed_uid_answers_c220(bad):
    ds = radiograph()
    ds.StudyInstanceUID = bad
    with pytest.raises(MissingAttribute, match="not a valid UID") as info:
        identify(ds, EXPLICIT)
    assert bad not in str(info.value), "UIDs never go into messages"


def test_a_sop_class_the_site_does_not_accept_answers_0122():
    with pytest.raises(SopClassNotAccepted, match="Digital X-Ray") as info:
        identify(radiograph(sop_class=DX), EXPLICIT, accepted_sop_classes=(CR,))
    assert status.status_for(info.value) == 0x0122
    assert identify(radiograph(sop_class=CR), EXPLICIT, accepted_sop_classes=(CR,)).sop_class_uid == CR


def test_missing_sop_class_answers_a900():
    ds = radiograph()
    del ds.SOPClassUID
    with pytest.raises(DatasetMismatch):
        identify(ds, EXPLICIT)


def test_an_image_without_pixel_data_answers_a900():
    ds = radiograph()
    del ds.PixelData
    with pytest.raises(DatasetMismatch, match="Pixel Data"):
        identify(ds, EXPLICIT)


def test_truncated_native_pixel_data_answers_a900():
    ds = radiograph(size=32)
    ds.PixelData = ds.PixelData[:-10]
    with pytest.raises(DatasetMismatch, match="shorter"):
        identify(ds, EXPLICIT)


def test_compressed_pixel_data_is_not_measured():
    ds = radiograph(size=32)
    ds.PixelData = b"\xfe\xff\x00\xe0" + b"\x00" * 4  # an encapsulated stub: the length says nothing
    ds["PixelData"].is_undefined_length = True  # as it arrives encapsulated (PS3.5 A.4)
    identify(ds, JPEGLSLossless)


def test_native_pixel_data_under_a_compressed_syntax_is_refused():
    ds = radiograph(size=32)  # native pixels, as a sender that mislabels its syntax sends them
    with pytest.raises(InvalidDataset, match="native Pixel Data under a compressed transfer syntax"):
        identify(ds, JPEGLSLossless)


def test_multi_valued_rows_answers_a900():
    ds = radiograph()
    ds.Rows = [32768, 0]
    with pytest.raises(DatasetMismatch, match="Rows"):
        identify(ds, EXPLICIT)


def _raw(ds, tag: int, vr: str, value: bytes) -> None:
    # As received: pydicom converts (and may fail on) a value only when it is read.
    ds[tag] = RawDataElement(Tag(tag), vr, len(value), value, 0, False, True)


def test_a_broken_optional_value_is_ignored():
    ds = radiograph()
    _raw(ds, 0x00201208, "IS", b"1A")  # NumberOfStudyRelatedInstances
    assert identify(ds, EXPLICIT).expected_instances is None


def test_an_unparsable_required_value_answers_c210():
    ds = radiograph()
    _raw(ds, 0x00280010, "US", b"\x01")  # Rows: US needs 2 bytes
    with pytest.raises(InvalidDataset) as info:
        identify(ds, EXPLICIT)
    assert status.status_for(info.value) == 0xC210


@pytest.mark.parametrize("exc, code", [
    (OutOfResources("disk"), 0xA700), (OSError(28, "No space left on device"), 0xA700),
    (InvalidDataset("x"), 0xC210), (RuntimeError("?"), 0xC211),
])
def test_status_table(exc, code):
    assert status.status_for(exc) == code


def test_describe_never_prints_an_os_error_path():
    text = status.describe(OSError(28, "No space left on device", "/data/objects/ab/cd/secret.dcm"))
    assert "secret" not in text and "ENOSPC" in text
