"""One study: ``GET /api/studies/{uid}`` (audited as a view), its preview image, and the reader's
actions ``POST /api/studies/{uid}/claim|release|read``, each audited in the action's transaction."""

# No `from __future__ import annotations`: FastAPI resolves the routes' local Annotated aliases.

from collections.abc import Callable
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Path, Request, Response
from sqlalchemy import select
from sqlalchemy.orm import Session

from db import reading
from db.audit import AuditAction, record
from db.models import Study
from db.study_detail import study_detail
from db.users import Role
from radtriage.api_deps import ApiContext, Context
from radtriage.api_images import NoImage, preview_png, read_header
from radtriage.api_models import (
    Draft,
    FindingScore,
    HistoryEntry,
    InstanceInfo,
    Problem,
    ReadingState,
    StudyDetail,
)
from radtriage.auth import ANONYMOUS, Authenticator, User, client_address

Uid = Annotated[str, Path(pattern=r"^[0-9]+(\.[0-9]+)*$", max_length=64, description="Study Instance UID")]
_NOT_FOUND = {404: {"model": Problem, "description": "No study has that Study Instance UID"}}


def routes(auth: Authenticator) -> APIRouter:
    """Study detail, preview and actions, for signed-in readers."""
    router = APIRouter(tags=["studies"])
    Reader = Annotated[User, Depends(auth.require_reader)]

    @router.get("/api/studies/{uid}", responses=_NOT_FOUND)
    def get_study(uid: Uid, request: Request, context: Context, user: Reader) -> StudyDetail:
        """The study in full: patient and study header (signed-in users only), scores, draft, images, history."""
        with context.reads() as session:
            found = study_detail(session, study_uid=uid)
        if found is None:
            raise HTTPException(404, "no study has that Study Instance UID")
        signed_in = user is not ANONYMOUS
        header = read_header(context.data_dir, found.instances) if signed_in and context.data_dir else None
        try:
            with context.sessions() as session:  # the view is on record before anything is shown
                record(session, user=user.name, action=AuditAction.VIEW, study_id=_study_id(session, uid),
                       address=client_address(request))
                session.commit()
        except reading.StudyNotFound:
            raise HTTPException(404, "no study has that Study Instance UID") from None
        return StudyDetail(
            study=context.item(found.row), header=header,
            findings=[FindingScore(name=f.name, score=f.score, kind=f.kind, threshold=f.threshold,
                                   positive=f.positive, validation=_validation(f)) for f in found.findings],
            reasons=list(found.reasons),
            draft=None if found.draft is None else Draft.model_validate(found.draft),
            instances=[InstanceInfo.model_validate(i) for i in found.instances],
            revisions=[InstanceInfo.model_validate(i) for i in found.revisions],
            history=[HistoryEntry.model_validate(h) for h in found.history],
        )

    @router.get("/api/studies/{uid}/preview.png", response_class=Response,
                responses={200: {"content": {"image/png": {}}, "description": "The frontal image, at most 256 px a side"},
                           **_NOT_FOUND})
    def get_preview(uid: Uid, context: Context, _user: Reader) -> Response:
        """A small preview of the study's frontal image, rendered from the stored instance and cached."""
        with context.reads() as session:
            found = study_detail(session, study_uid=uid)
        if found is None:
            raise HTTPException(404, "no study has that Study Instance UID")
        if context.data_dir is None:
            raise HTTPException(404, "this server keeps no images")
        try:
            png = preview_png(context.data_dir, found.instances)
        except NoImage as exc:
            raise HTTPException(404, str(exc)) from None
        return Response(png, media_type="image/png", headers={"Cache-Control": "private, max-age=3600"})

    def action(name: str, audit: AuditAction, run: Callable[[Session, User, str], reading.ReadingState], summary: str,
               refusals: dict) -> None:
        @router.post(f"/api/studies/{{uid}}/{name}", summary=summary, responses={**_NOT_FOUND, **refusals},
                     operation_id=f"{name}_study")
        def act(uid: Uid, request: Request, context: Context, user: Reader) -> ReadingState:
            return _act(context, uid, user, audit, request, run)

    action("claim", AuditAction.CLAIM, lambda s, u, uid: reading.claim(s, study_uid=uid, user=u.name),
           "Claim the study: it shows as yours to everyone else",
           {409: {"model": Problem, "description": "Another reader holds it (named), or it was read"}})
    action("release", AuditAction.RELEASE,
           lambda s, u, uid: reading.release(s, study_uid=uid, user=u.name, admin=u.allows(Role.ADMIN)),
           "Release your claim (an admin may release anyone's)",
           {403: {"model": Problem, "description": "Another reader holds it and you are not an admin"}})
    action("read", AuditAction.READ, lambda s, u, uid: reading.mark_read(s, study_uid=uid, user=u.name),
           "Mark the study read: it leaves the active worklist",
           {409: {"model": Problem, "description": "Another reader holds it (named), or it was already read"}})
    return router


def _act(context: ApiContext, uid: str, user: User, audit: AuditAction, request: Request, run) -> ReadingState:
    """Run one reading action with its audit row in the same transaction (both or neither)."""
    try:
        with context.sessions() as session:
            study_id = _study_id(session, uid)
            record(session, user=user.name, action=audit, study_id=study_id, address=client_address(request))
            state = run(session, user, uid)  # commits the action and its audit row together
    except reading.StudyNotFound:
        raise HTTPException(404, "no study has that Study Instance UID") from None
    except reading.ClaimConflict as exc:
        raise HTTPException(409, f"claimed by {exc.reader}") from None
    except reading.AlreadyRead:
        raise HTTPException(409, "the study was already marked read") from None
    except reading.NotClaimant as exc:
        raise HTTPException(403, str(exc)) from None
    return ReadingState(study_instance_uid=state.study_instance_uid, claimed_by=state.reader,
                        claimed_at=state.reader_claimed_at, read_by=state.read_by, read_at=state.read_at,
                        changed=state.changed)


def _study_id(session: Session, uid: str) -> int:
    # The audit trail records the study's row id (it outlives any purge of the study).
    study_id = session.scalar(select(Study.id).where(Study.study_instance_uid == uid))
    if study_id is None:
        raise reading.StudyNotFound("no study has that Study Instance UID")
    return study_id


def _validation(finding) -> str | None:
    """How the rule behind a finding is validated, in words a reader can act on."""
    if finding.validated is None:
        return None
    if finding.kind == "trained":
        return "trained head"
    return "validated" if finding.validated else "unvalidated: raises to URGENT at most until validated locally"
