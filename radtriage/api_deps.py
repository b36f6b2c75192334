"""What every API route shares: the app's context (sessions, data folder, viewer link, event
feed), reached from the request, and the small conversions from ``db/`` rows to response models."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Annotated
from urllib.parse import quote

from fastapi import Depends, Request
from sqlalchemy.orm import Session, sessionmaker

from common import DISCLAIMER
from radtriage.api_models import DraftPreview, FindingChip, WorklistItem

if TYPE_CHECKING:
    from db.worklist import WorklistRow
    from radtriage.api_feed import EventFeed

PREVIEW_CHARACTERS = 160


@dataclasses.dataclass(frozen=True, slots=True)
class ApiContext:
    """Built once by ``create_api``; ``reads`` never take SQLite's write lock."""

    sessions: sessionmaker[Session]
    reads: sessionmaker[Session]
    events: EventFeed
    data_dir: Path | None = None  # where stored images and preview thumbnails live
    viewer_url_template: str | None = None

    def viewer_url(self, row: WorklistRow) -> str | None:
        """The site viewer's link for ``row``: the template with its placeholders filled (URL-quoted)."""
        if not self.viewer_url_template:
            return None
        return (self.viewer_url_template
                .replace("{study_instance_uid}", quote(row.study_instance_uid, safe=""))
                .replace("{accession_number}", quote(row.accession_number or "", safe="")))

    def item(self, row: WorklistRow) -> WorklistItem:
        """The worklist item of one ``db.worklist`` row."""
        return WorklistItem(
            study_instance_uid=row.study_instance_uid, accession_number=row.accession_number,
            priority=row.priority, escalated=row.escalated, escalated_from=row.escalated_from,
            ordered_priority=row.ordered_priority, ai_priority=row.ai_priority, urgency_score=row.urgency_score,
            status=row.status, findings=[FindingChip(name=f.name, score=f.score) for f in row.findings],
            reasons=list(row.reasons), revision=row.revision, instances=row.instances,
            received_at=row.received_at, completed_at=row.completed_at, triaged_at=row.triaged_at,
            draft_status=row.draft_status, draft_preview=_preview(row),
            claimed_by=row.claimed_by, claimed_at=row.claimed_at, read_by=row.read_by, read_at=row.read_at,
            viewer_url=self.viewer_url(row),
        )


def _preview(row: WorklistRow) -> DraftPreview | None:
    draft = row.draft
    if draft is None:
        return None
    text = (draft.impression or draft.findings).strip()
    if len(text) > PREVIEW_CHARACTERS:
        text = text[:PREVIEW_CHARACTERS - 1].rstrip() + "…"
    # The stored disclaimer is the one the draft was made with; never shown without one.
    return DraftPreview(disclaimer=draft.disclaimer or DISCLAIMER, text=text)


def context(request: Request) -> ApiContext:
    return request.app.state.context


Context = Annotated[ApiContext, Depends(context)]
