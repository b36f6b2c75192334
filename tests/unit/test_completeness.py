"""The view-aware completeness rule: which view an image is, and when a study is complete."""

from __future__ import annotations

import pytest
from pydicom import Dataset
from pydicom.dataelem import RawDataElement
from pydicom.tag import Tag

from dicom.completeness import (
    StudyViews,
    View,
    expected_instances,
    view_of,
    views_complete,
)
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


EMPTY = StudyViews(instance_count=0, has_frontal=False, has_lateral=False, expected=None)


def test_frontal_and_lateral_complete_a_study_without_an_expected_count():
    frontal = EMPTY.add(View.FRONTAL, None, new_instance=True)
    assert not views_complete(frontal)
    both = frontal.add(View.LATERAL, None, new_instance=True)
    assert views_complete(both) and both.instance_count == 2


def test_expected_count_wins_over_frontal_plus_lateral():
    one = EMPTY.add(View.FRONTAL, 3, new_instance=True)
    two = one.add(View.LATERAL, 3, new_instance=True)
    assert not views_complete(two), "3 announced, 2 received"
    assert views_complete(two.add(None, None, new_instance=True))


def test_a_frontal_only_study_with_count_one_is_complete():
    assert views_complete(EMPTY.add(View.FRONTAL, 1, new_instance=True))


def test_no_frontal_never_completes_by_views():
    laterals = EMPTY.add(View.LATERAL, 2, new_instance=True).add(View.LATERAL, 2, new_instance=True)
    assert not views_complete(laterals)


def test_a_revision_of_a_known_instance_is_not_counted_twice():
    views = EMPTY.add(View.FRONTAL, 2, new_instance=True).add(View.FRONTAL, 2, new_instance=False)
    assert views.instance_count == 1 and not views_complete(views)


def test_the_largest_expected_count_is_kept():
    assert EMPTY.add(None, 2, True).add(None, 5, True).add(None, None, True).expected == 5


def test_counts_are_checked():
    with pytest.raises(ValueError):
        StudyViews(instance_count=-1, has_frontal=False, has_lateral=False, expected=None)
