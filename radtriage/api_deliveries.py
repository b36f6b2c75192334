"""Deliveries for operators (admins only): ``GET /api/deliveries`` shows each destination's
state, backlog, last error and dead letters; ``POST /api/deliveries/{id}/retry|drop`` acts on
a dead letter, audited in the action's transaction. No patient data: a dead letter names its
study by internal id, and by accession only to a signed-in admin."""

# No `from __future__ import annotations`: FastAPI resolves the routes' local Annotated aliases.

from collections.abc import Callable
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.orm import Session

from common.delivery import Content, DeliveryStatus, DestinationKind
from db import delivery_admin
from db.audit import AuditAction, record
from db.models import utcnow
from radtriage.api_deps import Context
from radtriage.api_models import Problem, UtcTime
from radtriage.auth import ANONYMOUS, Authenticator, User, client_address


class _Response(BaseModel):
    model_config = ConfigDict(from_attributes=True, extra="forbid", frozen=True)


class DestinationState(_Response):
    """One destination: every configured one, and one removed from the settings while it has deliveries."""

    destination: str = Field(description="the destination's name in the settings")
    kind: DestinationKind | None = Field(description="null: not in the settings when the daemon last started")
    receives: list[Content]
    active: bool = Field(description="false: no longer in the settings; its deliveries stay visible")
    state: Literal["ok", "failing", "idle"] = Field(description="how its newest attempt went; idle: none yet")
    backlog: int = Field(description="deliveries waiting to be sent (pending)")
    oldest_pending_at: UtcTime | None = Field(description="when the oldest waiting delivery was created")
    oldest_pending_seconds: float | None = Field(description="its age now; null with no backlog")
    sent: int
    dead: int = Field(description="dead letters: refused for good or out of attempts")
    dropped: int = Field(description="never sent: stale (a higher priority went first) or dropped by an admin")
    last_sent_at: UtcTime | None
    last_error: str | None = Field(description="of the newest attempt that failed (no patient data)")
    last_error_at: UtcTime | None


class DeadLetter(_Response):
    """A delivery that will not be sent unless an admin retries it."""

    id: int
    destination: str
    content: Content
    study_id: int = Field(description="radtriage's internal study id")
    accession_number: str | None = Field(description="shown to signed-in admins only; null otherwise")
    attempts: int
    last_error: str | None
    created_at: UtcTime
    dead_since: UtcTime | None = Field(description="when it became a dead letter")


class Deliveries(_Response):
    """The state of every destination and the newest dead letters."""

    destinations: list[DestinationState]
    dead_letters: list[DeadLetter] = Field(description="newest first, at most ``limit``")


class DeliveryChange(_Response):
    """A delivery after an admin's action."""

    id: int
    destination: str
    status: DeliveryStatus
    attempts: int


DeliveryId = Annotated[int, Path(ge=1, le=2**31 - 1, description="the delivery's id (from /api/deliveries)")]
_REFUSALS = {404: {"model": Problem, "description": "No delivery has that id"},
             409: {"model": Problem, "description": "The delivery is not a dead letter"}}


def routes(auth: Authenticator) -> APIRouter:
    """The deliveries view and the two actions on a dead letter, for admins."""
    router = APIRouter(tags=["deliveries"])
    Admin = Annotated[User, Depends(auth.require_admin)]

    @router.get("/api/deliveries")
    def get_deliveries(context: Context, user: Admin, limit: Annotated[
            int, Query(ge=1, le=1000, description="the most dead letters listed")] = 100) -> Deliveries:
        """Each destination's backlog, last error and counts, and the newest dead letters."""
        now = utcnow()
        with context.reads() as session:
            states = delivery_admin.destination_states(session)
            letters = delivery_admin.dead_letters(session, limit=limit)
        signed_in = user is not ANONYMOUS  # the accession is patient-identifying enough to need a name
        return Deliveries(
            destinations=[DestinationState(
                destination=s.destination, kind=s.kind, receives=list(s.receives), active=s.active,
                state=s.state, backlog=s.pending, oldest_pending_at=s.oldest_pending_at,
                oldest_pending_seconds=None if s.oldest_pending_at is None
                else max(0.0, (now - s.oldest_pending_at).total_seconds()),
                sent=s.sent, dead=s.dead, dropped=s.dropped, last_sent_at=s.last_sent_at, last_error=s.last_error,
                last_error_at=s.last_error_at) for s in states],
            dead_letters=[DeadLetter(
                id=d.id, destination=d.destination, content=d.content, study_id=d.study_id,
                accession_number=d.accession_number if signed_in else None, attempts=d.attempts,
                last_error=d.last_error, created_at=d.created_at, dead_since=d.closed_at) for d in letters],
        )

    def action(name: str, audit: AuditAction, run: Callable[..., delivery_admin.Changed], summary: str) -> None:
        @router.post(f"/api/deliveries/{{delivery_id}}/{name}", summary=summary, responses=_REFUSALS,
                     operation_id=f"{name}_delivery")
        def act(delivery_id: DeliveryId, request: Request, context: Context, user: Admin) -> DeliveryChange:
            return _act(context.sessions, delivery_id, user, audit, client_address(request), run)

    action("retry", AuditAction.DELIVERY_RETRY, delivery_admin.retry,
           "Send a dead letter again: back to pending with its attempts reset")
    action("drop", AuditAction.DELIVERY_DROP, delivery_admin.drop, "Drop a dead letter: it is never sent")
    return router


def _act(sessions: Callable[[], Session], delivery_id: int, user: User, audit: AuditAction, address: str | None,
         run: Callable[..., delivery_admin.Changed]) -> DeliveryChange:
    """Change one dead letter with its audit row in the same transaction (both or neither)."""
    try:
        with sessions() as session:
            changed = run(session, delivery_id=delivery_id)
            record(session, user=user.name, action=audit, study_id=changed.study_id, address=address,
                   detail=f"delivery {changed.id} to {changed.destination}")
            session.commit()
    except delivery_admin.DeliveryNotFound:
        raise HTTPException(404, "no delivery has that id") from None
    except delivery_admin.NotDeadLetter as exc:
        raise HTTPException(409, str(exc)) from None
    return DeliveryChange(id=changed.id, destination=changed.destination, status=changed.status,
                          attempts=changed.attempts)
