"""Drafts and the worklist priority: off by default, opt-in escalation that never lowers."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from common import Priority
from scoring.draft_escalation import CriticalTerm, escalate_from_draft
from scoring.errors import PolicyError
from scoring.urgency import DEFAULT_POLICY_PATH, load_policy


@pytest.fixture(scope="module")
def on():
    """The shipped policy with escalation switched on."""
    return dataclasses.replace(load_policy(), escalate_on_draft_critical=True)


def test_shipped_policy_keeps_drafts_out_of_the_priority() -> None:
    policy = load_policy()
    assert policy.escalate_on_draft_critical is False
    assert CriticalTerm("pneumothorax", "STAT") in policy.draft_critical_terms
    assert escalate_from_draft("Large tension pneumothorax.", Priority.ROUTINE, policy) == (Priority.ROUTINE, ())


def test_a_named_critical_term_raises_with_a_reason(on) -> None:
    priority, reasons = escalate_from_draft("FINDINGS: Large right pneumothorax.", "ROUTINE", on)
    assert priority is Priority.STAT
    assert reasons == ('unverified AI draft names "pneumothorax" → STAT',)


@pytest.mark.parametrize(
    "text",
    [
        "No pneumothorax.",
        "There is no evidence of pneumothorax or consolidation.",
        "Pneumothorax is not seen.",
        "The previous pneumothorax has resolved.",
        "Negative for pneumoperitoneum; free air is not identified.",
        "Hydropneumothoraxes are common.",  # not the whole word
    ],
)
def test_negated_or_partial_terms_do_not_count(on, text: str) -> None:
    assert escalate_from_draft(text, "ROUTINE", on) == (Priority.ROUTINE, ())


def test_negation_stops_at_the_clause(on) -> None:
    priority, reasons = escalate_from_draft("No effusion, but a small apical pneumothorax.", "URGENT", on)
    assert priority is Priority.STAT and len(reasons) == 1


def test_never_lowers_and_only_names_what_raised(on) -> None:
    text = "Right lower lobe consolidation. Small pneumothorax."
    assert escalate_from_draft(text, "STAT", on) == (Priority.STAT, ())
    priority, reasons = escalate_from_draft(text, "URGENT", on)
    assert priority is Priority.STAT and reasons == ('unverified AI draft names "pneumothorax" → STAT',)
    priority, reasons = escalate_from_draft(text, "ROUTINE", on)
    assert priority is Priority.STAT and len(reasons) == 2 and reasons[0].endswith("STAT")


def test_reasons_quote_the_policy_not_the_draft(on) -> None:
    _, reasons = escalate_from_draft("PNEUMOTHORAX   seen in DOE^JOHN", "ROUTINE", on)
    assert reasons and all("DOE" not in r for r in reasons)


def write_policy(tmp_path: Path, drafts: str) -> Path:
    path = tmp_path / "policy.toml"
    path.write_text(DEFAULT_POLICY_PATH.read_text().split("[drafts]")[0] + drafts)
    return path


def test_drafts_table_is_optional(tmp_path: Path) -> None:
    policy = load_policy(write_policy(tmp_path, ""))
    assert policy.escalate_on_draft_critical is False and policy.draft_critical_terms == ()


def test_drafts_table_is_read(tmp_path: Path) -> None:
    policy = load_policy(write_policy(
        tmp_path, '[drafts]\nescalate_on_draft_critical = true\ncritical_terms = {"Aortic  Dissection" = "stat"}\n'
    ))
    assert policy.escalate_on_draft_critical is True
    assert policy.draft_critical_terms == (CriticalTerm("aortic dissection", Priority.STAT),)
    assert escalate_from_draft("Aortic\ndissection.", "ROUTINE", policy)[0] is Priority.STAT


@pytest.mark.parametrize(
    ("drafts", "message"),
    [
        ('[drafts]\nescalate_on_draft_critical = "yes"\n', "true or false"),
        ("[drafts]\nescalate = true\n", "unknown key"),
        ('[drafts]\ncritical_terms = {pneumothorax = "SOON"}\n', "pneumothorax"),
        ('[drafts]\ncritical_terms = {"  " = "STAT"}\n', "critical term"),
        ('[drafts]\ncritical_terms = ["pneumothorax"]\n', "critical_terms"),
    ],
)
def test_bad_drafts_table_is_refused(tmp_path: Path, drafts: str, message: str) -> None:
    with pytest.raises(PolicyError, match=message):
        load_policy(write_policy(tmp_path, drafts))
