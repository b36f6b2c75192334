"""The completion rule: when a study's views are complete, and which wait makes it due."""

from __future__ import annotations

import datetime as dt

import pytest

from common import CompletedBy, CompletionRule, Cutoffs, StudyViews, View, views_complete

EMPTY = StudyViews(instance_count=0, has_frontal=False, has_lateral=False, expected=None)
NOW = dt.datetime(2026, 11, 28, 12, 0, tzinfo=dt.UTC)
STABLE, GRACE = 5.0, 0.5


def ago(seconds: float) -> dt.datetime:
    return NOW - dt.timedelta(seconds=seconds)


# ------------------------------------------------------------------ StudyViews and views_complete


def test_add_counts_new_instances_and_remembers_views():
    views = EMPTY.add(View.FRONTAL, None, new_instance=True)
    assert views == StudyViews(instance_count=1, has_frontal=True, has_lateral=False, expected=None)
    views = views.add(View.LATERAL, None, new_instance=True)
    assert (views.instance_count, views.has_frontal, views.has_lateral) == (2, True, True)
    assert views.add(None, None, new_instance=True).has_frontal, "an unknown view forgets nothing"


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
    assert not views_complete(EMPTY.add(View.LATERAL, None, True).add(None, None, True))


def test_a_revision_of_a_known_instance_is_not_counted_twice():
    views = EMPTY.add(View.FRONTAL, 2, new_instance=True).add(View.FRONTAL, 2, new_instance=False)
    assert views.instance_count == 1 and not views_complete(views)


def test_the_largest_expected_count_is_kept():
    assert EMPTY.add(None, 2, True).add(None, 5, True).add(None, None, True).expected == 5


def test_counts_are_checked():
    with pytest.raises(ValueError):
        StudyViews(instance_count=-1, has_frontal=False, has_lateral=False, expected=None)
    with pytest.raises(ValueError):
        StudyViews(instance_count=1, has_frontal=True, has_lateral=False, expected=0)


# ------------------------------------------------------------------ the due rule


def test_cutoffs_are_the_waits_before_now():
    assert CompletionRule(STABLE, GRACE).cutoffs(NOW) == Cutoffs(quiet_before=ago(STABLE), grace_before=ago(GRACE))
    assert CompletionRule(STABLE, None).cutoffs(NOW).grace_before is None


@pytest.mark.parametrize("last, views, completed_by", [
    (ago(0.4), True, None),  # within the grace
    (ago(GRACE), True, CompletedBy.VIEWS_COMPLETE),  # the cut-off itself is due
    (ago(1), True, CompletedBy.VIEWS_COMPLETE),
    (ago(1), False, None),  # views incomplete: only the quiet timer
    (ago(STABLE - 0.1), False, None),
    (ago(STABLE), False, CompletedBy.QUIET_TIMER),
    (ago(STABLE + 1), True, CompletedBy.QUIET_TIMER),  # both hold: the quiet timer is named
])
def test_due_by_views_after_the_grace_else_by_the_quiet_timer(last, views, completed_by):
    assert CompletionRule(STABLE, GRACE).cutoffs(NOW).due(last, views_complete=views) is completed_by


def test_without_a_grace_the_view_rule_is_off():
    cutoffs = CompletionRule(STABLE, None).cutoffs(NOW)
    assert cutoffs.due(ago(1), views_complete=True) is None
    assert cutoffs.due(ago(STABLE), views_complete=True) is CompletedBy.QUIET_TIMER


def test_the_reason_reads_as_the_event_detail_says():
    assert [f"{c}" for c in CompletedBy] == ["quiet timer", "views complete", "backfill"]


def test_waits_are_checked():
    with pytest.raises(ValueError):
        CompletionRule(-1, GRACE)
    with pytest.raises(ValueError):
        CompletionRule(STABLE, -0.5)
