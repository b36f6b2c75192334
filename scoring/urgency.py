"""Finding scores + ordered priority → worklist priority, 0–100 urgency and readable reasons.

The policy (thresholds, severities, implied priorities, prompts) lives in ``policy.toml``
so a clinical lead can read and change it without touching code. One rule is not
configurable: the AI may raise a study above the ordered priority, never lower it.

Thresholds have two meanings, one per kind of head (:meth:`Policy.threshold_for`):
a zero-shot score is compared with the finding's ``threshold`` (difference of cosines);
a trained head's score (a sigmoid output calibrated to its training set's class balance,
not to a site's prevalence) with the finding's ``trained_threshold`` when the policy sets
one, else with the operating threshold stored in the head file.

Every rule says whether it is ``validated`` (its prompt pair and threshold evaluated, by
Google or locally). An unvalidated rule may raise a study to URGENT at most, and its reason
says "unvalidated", until a local validation record (``radtriage probe evaluate
--record-validation``) or a trained head for that finding validates it.
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from common import Priority
from scoring.draft_escalation import CriticalTerm, parse_drafts_table
from scoring.errors import PolicyError, ScoringError
from scoring.heads import Finding, FindingScores

__all__ = ["DEFAULT_POLICY_PATH", "EMBEDDERS", "MEDSIGLIP_POLICY_PATH", "Assessment", "FindingRule", "Policy", "assess",
           "load_policy"]

DEFAULT_POLICY_PATH = Path(__file__).with_name("policy.toml")  # CXR Foundation's scale
MEDSIGLIP_POLICY_PATH = Path(__file__).with_name("policy_medsiglip.toml")
# A policy's `embedder`: the embedder names scores and heads are recorded with. The
# setting's spelling (cxr_foundation) is accepted too.
EMBEDDERS = ("cxr-foundation", "medsiglip")

_RULE_KEYS = {"label", "prompt_positive", "prompt_negative", "threshold", "severity", "priority", "validated"}
_OPTIONAL_RULE_KEYS = {"trained_threshold"}
_URGENCY_KEYS = {"scale", "probability_scale"}
_TOP_KEYS = {"format", "embedder", "urgency", "findings", "drafts"}
_FORMAT = 1
_THRESHOLD_RANGE = (-2.0, 2.0)  # a difference of two cosines cannot leave [-2, 2]
# What a trained head's number is, wherever it is shown.
TRAINED_SCORE_NOTE = "trained-head score, calibrated to its training set's class balance, not this site's prevalence"
# The most an unvalidated rule may raise a study to.
UNVALIDATED_CAP = Priority.URGENT


@dataclass(frozen=True, slots=True)
class FindingRule:
    """What one finding means for the worklist (one ``[findings.<name>]`` table)."""

    name: str
    label: str
    prompt_positive: str
    prompt_negative: str
    threshold: float
    severity: float
    priority: Priority
    trained_threshold: float | None = None  # probability; overrides the trained head's own
    validated: bool = False  # unvalidated rules raise to URGENT at most (see the module docstring)

    def __post_init__(self) -> None:
        object.__setattr__(self, "priority", Priority(self.priority))
        if not isinstance(self.validated, bool):
            raise ValueError(f"validated must be true or false, got {self.validated!r}")
        lo, hi = _THRESHOLD_RANGE
        if not (math.isfinite(self.threshold) and lo <= self.threshold <= hi):
            raise ValueError(f"threshold must be a number in [{lo}, {hi}], got {self.threshold!r}")
        t = self.trained_threshold
        if t is not None and not (math.isfinite(t) and 0.0 <= t <= 1.0):
            raise ValueError(f"trained_threshold must be a probability in [0, 1], got {t!r}")
        if not (math.isfinite(self.severity) and 0.0 <= self.severity <= 1.0):
            raise ValueError(f"severity must be a number in [0, 1], got {self.severity!r}")
        Finding(self.name, self.prompt_positive, self.prompt_negative)  # validates name/prompts

    @property
    def finding(self) -> Finding:
        """The prompt pair the zero-shot head scores."""
        return Finding(self.name, self.prompt_positive, self.prompt_negative)


@dataclass(frozen=True, slots=True)
class Policy:
    """A validated urgency policy: the rules in file order plus the urgency scale."""

    rules: tuple[FindingRule, ...]
    # Whose scores the thresholds are on: zero-shot scores of two embedders are not comparable.
    embedder: str = "cxr-foundation"
    urgency_scale: float = 0.05
    probability_scale: float = 0.05
    # The optional [drafts] table (scoring.draft_escalation): off unless the file says so.
    escalate_on_draft_critical: bool = False
    draft_critical_terms: tuple[CriticalTerm, ...] = ()

    def __post_init__(self) -> None:
        if not self.rules:
            raise ValueError("the policy names no findings")
        embedder = str(self.embedder).replace("_", "-")
        if embedder not in EMBEDDERS:
            raise ValueError(f"'embedder' must be one of {', '.join(EMBEDDERS)}, got {self.embedder!r}")
        object.__setattr__(self, "embedder", embedder)
        names = [r.name for r in self.rules]
        if len(set(names)) != len(names):
            raise ValueError("a finding is named twice")
        for scale in (self.urgency_scale, self.probability_scale):
            if not (math.isfinite(scale) and scale > 0):
                raise ValueError(f"urgency scale must be a number > 0, got {scale!r}")

    @property
    def findings(self) -> tuple[Finding, ...]:
        """The findings (prompt pairs) the heads must score for this policy."""
        return tuple(r.finding for r in self.rules)

    def rule(self, name: str) -> FindingRule:
        """The rule for one finding (KeyError if the policy does not name it)."""
        for r in self.rules:
            if r.name == name:
                return r
        raise KeyError(name)

    def threshold_for(self, name: str, scores: FindingScores) -> float:
        """The threshold ``scores[name]`` is compared with (see the module docstring).

        Zero-shot score → the rule's ``threshold``; trained-head probability → the
        rule's ``trained_threshold`` if set, else the head's operating threshold.
        """
        r = self.rule(name)
        if not scores.is_trained(name):
            return r.threshold
        return r.trained_threshold if r.trained_threshold is not None else scores.head_thresholds[name]

    def implied_priority(self, name: str, scores: FindingScores) -> Priority:
        """The priority the finding raises to when present: the rule's, capped at URGENT
        while neither the rule, a validation record nor a trained head validates it."""
        r = self.rule(name)
        if r.validated or scores.is_validated(name) or r.priority.rank <= UNVALIDATED_CAP.rank:
            return r.priority
        return UNVALIDATED_CAP

    def is_validated(self, name: str, scores: FindingScores) -> bool:
        """Whether the rule, a local validation record or a trained head validates ``name``."""
        return self.rule(name).validated or scores.is_validated(name)

    def criteria(self, scores: FindingScores) -> dict[str, dict[str, Any]]:
        """How each scored finding is judged, to be stored beside the scores: the score's
        ``kind`` (``"zero-shot"`` difference of cosines, or ``"trained"`` head score), the
        ``threshold`` applied and whether the rule is ``validated``."""
        return {
            name: {"kind": "trained" if name in scores.head_thresholds else "zero-shot",
                   "threshold": self.threshold_for(name, scores), "validated": self.is_validated(name, scores)}
            for name in scores if name in {r.name for r in self.rules}
        }

    def check_embedder(self, embedder: str) -> None:
        """Refuse to judge ``embedder``'s scores with thresholds set on another embedder's scale.

        Raises
        ------
        PolicyError
            Naming both embedders and the shipped policy for the one in use.
        """
        if embedder == self.embedder:
            return
        shipped = {"medsiglip": MEDSIGLIP_POLICY_PATH.name}.get(embedder, DEFAULT_POLICY_PATH.name)
        raise PolicyError(
            f"this policy's thresholds are on {self.embedder}'s score scale, but the embedder is {embedder}; "
            f"use a policy written for {embedder} (shipped: scoring/{shipped}, set RADTRIAGE_POLICY_FILE)"
        )

    def scale_for(self, name: str, scores: FindingScores) -> float:
        """How sharply urgency rises around the threshold, in the score's own units."""
        return self.probability_scale if scores.is_trained(name) else self.urgency_scale


@dataclass(frozen=True, slots=True)
class Assessment:
    """Outcome for one study: final priority, urgency (None without AI) and why."""

    priority: Priority
    urgency_score: float | None
    reasons: tuple[str, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "priority", Priority(self.priority))
        u = self.urgency_score
        if u is not None and not (math.isfinite(u) and 0.0 <= u <= 100.0):
            raise ValueError(f"urgency score must be in [0, 100], got {u!r}")


def load_policy(path: Path | None = None) -> Policy:
    """Read and validate a policy file.

    Parameters
    ----------
    path : Path, optional
        A TOML file laid out like the shipped ``scoring/policy.toml`` (the default).

    Raises
    ------
    PolicyError
        If the file cannot be read, is not TOML, or fails validation; the message names
        the file and the offending table/key.
    """
    path = Path(path) if path is not None else DEFAULT_POLICY_PATH
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise PolicyError(f"{path}: cannot read the policy file ({type(exc).__name__})") from exc
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise PolicyError(f"{path}: not valid TOML: {exc}") from exc
    try:
        return _parse_policy(data)
    except (KeyError, TypeError, ValueError) as exc:
        message = exc.args[0] if exc.args else type(exc).__name__
        raise PolicyError(f"{path}: {message}") from exc


def _parse_policy(data: Mapping[str, Any]) -> Policy:
    """Build a Policy from the parsed TOML, naming the table of any problem."""
    _no_unknown_keys("the top level", data, _TOP_KEYS)
    if data.get("format") != _FORMAT:
        raise ValueError(f"'format' must be {_FORMAT}, got {data.get('format')!r}")
    urgency = data.get("urgency", {})
    _require_table("[urgency]", urgency)
    _no_unknown_keys("[urgency]", urgency, _URGENCY_KEYS)
    findings = data.get("findings")
    _require_table("[findings]", findings)
    rules = []
    for name, table in findings.items():
        where = f"[findings.{name}]"
        _require_table(where, table)
        _no_unknown_keys(where, table, _RULE_KEYS | _OPTIONAL_RULE_KEYS)
        missing = sorted(_RULE_KEYS - table.keys())
        if missing:
            raise ValueError(f"{where} is missing {', '.join(missing)}")
        try:
            rules.append(
                FindingRule(
                    name=name,
                    label=_typed(table, "label", str),
                    prompt_positive=_typed(table, "prompt_positive", str),
                    prompt_negative=_typed(table, "prompt_negative", str),
                    threshold=float(_typed(table, "threshold", (int, float))),
                    severity=float(_typed(table, "severity", (int, float))),
                    priority=_priority(table["priority"]),
                    validated=_boolean(table, "validated"),
                    trained_threshold=(
                        float(_typed(table, "trained_threshold", (int, float)))
                        if "trained_threshold" in table
                        else None
                    ),
                )
            )
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{where}: {exc}") from exc
    scales = {key: float(_typed(urgency, key, (int, float))) for key in _URGENCY_KEYS if key in urgency}
    escalate, critical_terms = parse_drafts_table(data.get("drafts", {}))
    try:
        if "embedder" not in data:
            raise ValueError(f"the policy must name its embedder ('embedder = \"{EMBEDDERS[0]}\"' or another of "
                             f"{', '.join(EMBEDDERS)})")
        return Policy(
            rules=tuple(rules),
            embedder=_typed(data, "embedder", str),
            urgency_scale=scales.get("scale", 0.05),
            probability_scale=scales.get("probability_scale", 0.05),
            escalate_on_draft_critical=escalate,
            draft_critical_terms=critical_terms,
        )
    except ValueError as exc:
        raise ValueError(f"[urgency]/[findings]: {exc}") from exc


def assess(
    scores: FindingScores | None,
    ordered: Priority | str,
    policy: Policy,
    *,
    unavailable_reason: str | None = None,
) -> Assessment:
    """Decide a study's worklist priority from its finding scores.

    Notes
    -----
    * Each finding with ``score >= threshold`` implies its rule's priority; the final
      priority is ``Priority.most_urgent(ordered, *implied)``, so never below ``ordered``.
      ``threshold`` is :meth:`Policy.threshold_for` (zero-shot or trained head).
    * Urgency (0–100, higher = read sooner) is::

          urgency = 100 * max_f  severity_f * sigmoid((score_f - threshold_f) / scale_f)

      with ``scale_f`` the policy's ``scale`` for zero-shot scores and its
      ``probability_scale`` for trained-head probabilities.

      It rises monotonically with every score, is 50 × severity for a finding exactly at
      its threshold, approaches 100 × severity far above it and 0 far below.
    * Without scores (AI unavailable) the ordered priority is kept, urgency is None and
      the reason says ``"AI unavailable: …"``.

    Parameters
    ----------
    scores : FindingScores or None
        Zero-shot scores; None when the AI could not score the study.
    ordered : Priority or str
        The priority the clinician ordered.
    policy : Policy
    unavailable_reason : str, optional
        Why there are no scores (PHI-free), shown on the worklist.

    Returns
    -------
    Assessment

    Raises
    ------
    ScoringError
        If ``scores`` lacks a finding the policy names (heads and policy out of step).
    ValueError
        If ``ordered`` is not a priority.
    """
    ordered = Priority(ordered)
    if scores is None:
        return Assessment(ordered, None, (f"AI unavailable: {unavailable_reason or 'no scores'}",))
    missing = [r.name for r in policy.rules if r.name not in scores]
    if missing:
        raise ScoringError(f"no score for finding(s) named in the policy: {', '.join(missing)}")
    margin = {r.name: (scores[r.name] - policy.threshold_for(r.name, scores)) / policy.scale_for(r.name, scores)
              for r in policy.rules}
    present = [r for r in policy.rules if margin[r.name] >= 0]
    implied = {r.name: policy.implied_priority(r.name, scores) for r in present}
    # Most urgent first, then by how far the score clears its threshold.
    present.sort(key=lambda r: (-implied[r.name].rank, -margin[r.name]))
    priority = Priority.most_urgent(ordered, *implied.values())
    reasons = tuple(
        f"{_describe(r.name, scores, policy, '≥')} → {implied[r.name].value}"
        f"{'' if policy.is_validated(r.name, scores) else _unvalidated(r, implied[r.name])}"
        for r in present
    ) or (_closest_miss(scores, policy, margin),)
    urgency = max(r.severity * _sigmoid(margin[r.name]) for r in policy.rules)
    return Assessment(priority, min(100.0, max(0.0, 100.0 * urgency)), reasons)


def _describe(name: str, scores: FindingScores, policy: Policy, relation: str) -> str:
    """``pneumothorax 0.31 ≥ 0.20`` (zero-shot) or the trained head's calibrated score.

    A trained head's output is calibrated to its training set's class balance, not to this
    site's prevalence, so the reason calls it a score, never a probability ("p=").
    """
    threshold = policy.threshold_for(name, scores)
    if scores.is_trained(name):
        return (f"{name} {scores[name]:.2f} {relation} {threshold:.2f} ({TRAINED_SCORE_NOTE})")
    return f"{name} {scores[name]:.2f} {relation} {threshold:.2f}"


def _unvalidated(rule: FindingRule, implied: Priority) -> str:
    """The reason's note for a rule nobody has validated yet, naming a withheld priority."""
    if implied != rule.priority:
        return f" (unvalidated rule: {rule.priority.value} once validated)"
    return " (unvalidated rule)"


def _closest_miss(scores: FindingScores, policy: Policy, margin: Mapping[str, float]) -> str:
    """Reason text when nothing reaches its threshold: the nearest miss (in scale units)."""
    r = max(policy.rules, key=lambda r: margin[r.name])
    return f"no finding at threshold (closest: {_describe(r.name, scores, policy, '<')})"


def _sigmoid(x: float) -> float:
    """Logistic function, overflow-safe for large |x|."""
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    e = math.exp(x)
    return e / (1.0 + e)


def _require_table(where: str, value: Any) -> None:
    if not isinstance(value, dict):
        raise TypeError(f"{where} must be a table, got {type(value).__name__}")


def _no_unknown_keys(where: str, table: Mapping[str, Any], allowed: set[str]) -> None:
    # Catches typos such as "treshold", which would otherwise silently use no threshold.
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise ValueError(f"{where} has unknown key(s) {', '.join(unknown)}; allowed: {', '.join(sorted(allowed))}")


def _typed(table: Mapping[str, Any], key: str, kind: type | tuple[type, ...]) -> Any:
    value = table[key]
    # bool is an int in Python; `threshold = true` is a mistake, not 1.0.
    if isinstance(value, bool) or not isinstance(value, kind):
        raise TypeError(f"'{key}' has the wrong type ({type(value).__name__})")
    return value


def _boolean(table: Mapping[str, Any], key: str) -> bool:
    value = table[key]
    if not isinstance(value, bool):
        raise TypeError(f"'{key}' has the wrong type ({type(value).__name__}); write true or false")
    return value


def _priority(value: Any) -> Priority:
    try:
        return Priority(str(value).upper())
    except ValueError:
        allowed = ", ".join(p.value for p in Priority)
        raise ValueError(f"priority must be one of {allowed}, got {value!r}") from None
