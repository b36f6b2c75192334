"""A study's finding scores: the highest of each finding over the images of one revision, with
how triage judged it. Read by the worklist, the study detail, the draft queue and the SR export."""

from __future__ import annotations

import dataclasses

from sqlalchemy import select
from sqlalchemy.orm import Session

from db.models import Score, Study


@dataclasses.dataclass(frozen=True, slots=True)
class FindingScore:
    """A finding's score: the highest over the images of the study's current revision, with how
    triage judged it (None where the score predates that record)."""

    name: str
    score: float
    kind: str | None = None  # "zero-shot" or "trained"
    threshold: float | None = None
    validated: bool | None = None

    @property
    def positive(self) -> bool | None:
        return None if self.threshold is None else self.score >= self.threshold


def finding_scores(session: Session, studies: list[Study]) -> dict[int, tuple[FindingScore, ...]]:
    """Per study, each finding's highest score over the images of its current revision."""
    return scores_at(session, {s.id: s.revision for s in studies})


def scores_at(session: Session, revision: dict[int, int]) -> dict[int, tuple[FindingScore, ...]]:
    """Per study id, each finding's highest score at the given revision, as triage judged it."""
    best: dict[int, dict[str, float]] = {}
    judged: dict[int, dict[str, dict]] = {}
    if not revision:
        return {}
    rows = session.execute(select(Score.study_id, Score.revision, Score.findings, Score.criteria)
                           .where(Score.study_id.in_(revision)))
    for study_id, score_revision, findings, criteria in rows:
        if score_revision != revision[study_id]:
            continue
        mine = best.setdefault(study_id, {})
        for name, value in (findings or {}).items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                mine[name] = max(float(value), mine.get(name, float("-inf")))
        # Every image of a revision is judged by the same policy and heads.
        judged.setdefault(study_id, {}).update(criteria or {})
    return {study_id: tuple(_judged(n, v, judged.get(study_id, {}).get(n) or {})
                            for n, v in sorted(found.items(), key=lambda kv: (-kv[1], kv[0])))
            for study_id, found in best.items()}


def _judged(name: str, score: float, criteria: dict) -> FindingScore:
    threshold = criteria.get("threshold")
    return FindingScore(name, score, kind=criteria.get("kind"),
                        threshold=None if threshold is None else float(threshold),
                        validated=criteria.get("validated"))
