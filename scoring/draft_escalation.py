"""Critical terms named in an AI draft → a higher worklist priority (opt-in, never lower).

The ``[drafts]`` table of ``policy.toml`` switches this on (``escalate_on_draft_critical``,
off by default) and maps phrases to priorities. A phrase counts only when the draft
states it: a sentence that negates it ("no pneumothorax", "effusion has resolved") does
not escalate. The matching is a deliberately simple rule, documented in the policy file.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from common import Priority

__all__ = ["CriticalTerm", "DraftPolicy", "escalate_from_draft", "parse_drafts_table"]

_DRAFT_KEYS = {"escalate_on_draft_critical", "critical_terms"}
_MAX_TERM = 64

# Words that negate a finding named after them in the same clause ...
_NEGATION_BEFORE = re.compile(
    r"\b(?:no|not|without|negative for|free of|absence of|absent|rules? out|ruled out|r/o|"
    r"exclude[sd]?|resolved|resolution of|unlikely|neither|nor)\b"
)
# ... and phrases that negate one named before them ("pneumothorax is not seen").
_NEGATION_AFTER = re.compile(
    r"^[^.;]*?\b(?:not (?:seen|identified|present|demonstrated|visible|evident)|is absent|are absent|"
    r"has resolved|have resolved|resolved|excluded|ruled out|unlikely)\b"
)
# Clause boundaries: a negation does not reach past them.
_CLAUSES = re.compile(r"[.;:!?\n]+|\b(?:but|however|although|though|whereas)\b|,\s*(?=(?:with|and)\b)")


@dataclass(frozen=True, slots=True)
class CriticalTerm:
    """A phrase that, named in a draft, may raise the study to ``priority``."""

    term: str
    priority: Priority

    def __post_init__(self) -> None:
        term = " ".join(str(self.term).lower().split())
        if not term or len(term) > _MAX_TERM or not re.search(r"\w", term):
            raise ValueError(f"a critical term must be 1-{_MAX_TERM} characters with a letter, got {self.term!r}")
        object.__setattr__(self, "term", term)
        priority = self.priority if isinstance(self.priority, Priority) else Priority(str(self.priority).upper())
        object.__setattr__(self, "priority", priority)

    def pattern(self) -> re.Pattern[str]:
        words = (re.escape(w) for w in self.term.split())
        return re.compile(r"(?<!\w)" + r"\s+".join(words) + r"(?!\w)")


class DraftPolicy(Protocol):
    """What escalation reads of ``scoring.urgency.Policy`` (a protocol, so this module needs not import it)."""

    @property
    def escalate_on_draft_critical(self) -> bool: ...

    @property
    def draft_critical_terms(self) -> tuple[CriticalTerm, ...]: ...


def parse_drafts_table(table: Mapping[str, Any]) -> tuple[bool, tuple[CriticalTerm, ...]]:
    """Read the optional ``[drafts]`` table of the policy file.

    Returns
    -------
    (bool, tuple of CriticalTerm)
        ``escalate_on_draft_critical`` (default False) and the terms in file order.

    Raises
    ------
    TypeError, ValueError
        Unknown keys, a non-boolean switch, a term that is not a phrase, or a priority
        that is not ROUTINE/URGENT/STAT; messages name the key.
    """
    if not isinstance(table, Mapping):
        raise TypeError(f"[drafts] must be a table, got {type(table).__name__}")
    unknown = sorted(set(table) - _DRAFT_KEYS)
    if unknown:
        raise ValueError(f"[drafts] has unknown key(s) {', '.join(unknown)}; allowed: {', '.join(sorted(_DRAFT_KEYS))}")
    enabled = table.get("escalate_on_draft_critical", False)
    if not isinstance(enabled, bool):
        raise TypeError(f"[drafts] 'escalate_on_draft_critical' must be true or false, got {enabled!r}")
    terms_table = table.get("critical_terms", {})
    if not isinstance(terms_table, Mapping):
        raise TypeError("[drafts.critical_terms] must be a table of \"term\" = \"PRIORITY\"")
    terms = []
    for term, priority in terms_table.items():
        try:
            terms.append(CriticalTerm(term, priority))
        except ValueError as exc:
            raise ValueError(f"[drafts.critical_terms] {term!r}: {exc}") from None
    if len({t.term for t in terms}) != len(terms):
        raise ValueError("[drafts.critical_terms] names a term twice")
    return enabled, tuple(terms)


def escalate_from_draft(
    draft_text: str, current: Priority | str, policy: DraftPolicy
) -> tuple[Priority, tuple[str, ...]]:
    """The priority a draft's critical terms call for, never below ``current``.

    Parameters
    ----------
    draft_text : str
        The generated draft (findings and impression, or the raw answer).
    current : Priority or str
        The study's priority now (ordered or already raised by triage).
    policy : DraftPolicy
        Supplies ``escalate_on_draft_critical`` and ``draft_critical_terms`` (a
        ``scoring.urgency.Policy``).

    Returns
    -------
    (Priority, tuple of str)
        ``(current, ())`` when the option is off or nothing raises the study; otherwise
        the most urgent priority named and one reason per term above ``current``, e.g.
        ``'unverified AI draft names "pneumothorax" → STAT'``. Reasons quote the policy's
        term, never the draft.

    Raises
    ------
    ValueError
        If ``current`` is not a priority.
    """
    current = Priority(current)
    if not policy.escalate_on_draft_critical or not draft_text:
        return current, ()
    clauses = _CLAUSES.split(" ".join(draft_text.lower().split()))
    raising = [
        t for t in policy.draft_critical_terms
        if t.priority.rank > current.rank and any(_states(t, clause) for clause in clauses if clause)
    ]
    if not raising:
        return current, ()
    raising.sort(key=lambda t: -t.priority.rank)
    reasons = tuple(f'unverified AI draft names "{t.term}" → {t.priority.value}' for t in raising)
    return Priority.most_urgent(current, *(t.priority for t in raising)), reasons


def _states(term: CriticalTerm, clause: str) -> bool:
    """Whether ``clause`` names ``term`` without negating it."""
    for match in term.pattern().finditer(clause):
        if _NEGATION_BEFORE.search(clause[: match.start()]) or _NEGATION_AFTER.search(clause[match.end():]):
            continue
        return True
    return False
