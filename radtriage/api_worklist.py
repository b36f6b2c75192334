"""``GET /api/worklist`` (filters, keyset cursor pages) and ``GET /api/me``."""

# No `from __future__ import annotations`: FastAPI resolves the routes' local Annotated aliases.

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, HTTPException, Query

from common import Priority, StudyStatus
from db.worklist import DEFAULT_PAGE, MAX_PAGE, BadWorklistQuery, Filters, page
from radtriage.api_deps import Context
from radtriage.api_models import Me, Problem, Worklist
from radtriage.auth import Authenticator, User

_BAD = {400: {"model": Problem, "description": "A parameter that cannot be served (e.g. a cursor not from this server)"}}


def routes(auth: Authenticator) -> APIRouter:
    """The worklist and who is asking, for signed-in readers."""
    router = APIRouter(tags=["worklist"])
    Reader = Annotated[User, Depends(auth.require_reader)]

    @router.get("/api/worklist", responses=_BAD)
    def get_worklist(
        context: Context,
        user: Reader,
        status: Annotated[list[StudyStatus] | None, Query(description="only studies in these states")] = None,
        priority: Annotated[list[Priority] | None, Query(description="only these effective priorities")] = None,
        claimed: Annotated[Literal["any", "me", "unclaimed"], Query(
            description="claimed by me, unclaimed, or any")] = "any",
        q: Annotated[str | None, Query(min_length=1, max_length=16, pattern=r"^[\x20-\x7e]+$",
                                       description="accession number starts with")] = None,
        cursor: Annotated[str | None, Query(max_length=512, description="next_cursor of the page before")] = None,
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE, description="items per page")] = DEFAULT_PAGE,
    ) -> Worklist:
        """Unread studies in reading order (effective priority, urgency, longest waiting), one page at a time."""
        # Every unread study is listed however long ago it arrived: marking it read is what
        # takes it off, so a forgotten study can never silently drop out of sight.
        filters = Filters(status=tuple(status or ()), priority=tuple(priority or ()), claimed=claimed, user=user.name,
                          accession_prefix=q)
        try:
            with context.reads() as session:
                found = page(session, filters=filters, cursor=cursor, limit=limit)
        except BadWorklistQuery as exc:
            raise HTTPException(400, str(exc)) from None
        return Worklist(items=[context.item(row) for row in found.rows], next_cursor=found.next_cursor)

    @router.get("/api/me")
    def get_me(user: Annotated[User, Depends(auth.current_user)]) -> Me:
        """The signed-in user's name and role."""
        return Me(name=user.name, role=user.role.value)

    return router
