"""Reading a radiograph's header for the completion rule: which view it is, how many instances its study holds."""

from __future__ import annotations

import pytest
from pydicom import Dataset
from pydicom.dataelem import RawDataElement
from pydicom.tag import Tag

from common import View
from dicom.views import expected_instances, view_of
from tests.factories import radiograph


def _coded_view(meaning: str) -> Dataset:
    ds = radiograph(view=None)
    item = Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = "399348003", "SCT", meaning
    ds.ViewCodeSequence = [item]
    return ds


@pytest.mark.parametrize("position, view", [("PA", View.FRONTAL), ("ap ", View.FRONTAL), ("LL", View.LATERAL),
                                             ("RL", View.LATERAL), ("LATERAL", View.LATERAL), ("", None)])
def test_view_position_decides_first(position, view):
    ds = radiograph(view=position or None)
    ds.PatientOrientation = ["A", "F"]  # would say lateral; ViewPosition wins when it is set
    assert view_of(ds) == (view or View.LATERAL)


@pytest.mark.parametrize("meaning, view", [("postero-anterior", View.FRONTAL), ("antero-posterior", View.FRONTAL),
                                            ("left lateral", View.LATERAL), ("oblique", None)])
def test_view_code_sequence_when_view_position_is_absent(meaning, view):
    assert view_of(_coded_view(meaning)) == view


@pytest.mark.parametrize("orientation, view", [(["L", "F"], View.FRONTAL), (["R", "H"], View.FRONTAL),
                                                (["A", "F"], View.LATERAL), (["P", "FL"], View.LATERAL),
                                                (["L", "P"], None), (["F"], None)])
def test_patient_orientation_of_rows_and_columns(orientation, view):
    ds = radiograph(view=None)
    ds.PatientOrientation = orientation
    assert view_of(ds) == view


def test_nothing_said_means_unknown():
    assert view_of(radiograph(view=None)) is None


@pytest.mark.parametrize("value, expected", [(b"3 ", 3), (b"0 ", None), (b"1A", None), (None, None)])
def test_expected_instances(value, expected):
    ds = radiograph()
    if value is not None:
        # As received: a raw value, converted (and possibly failing) only when read.
        ds[0x00201208] = RawDataElement(Tag(0x00201208), "IS", len(value), value, 0, False, True)
    assert expected_instances(ds) == expected
