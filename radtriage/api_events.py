"""``GET /api/events``: a server-sent event stream of worklist changes for live pages (see
``api_feed`` for how changes are found and streams resume)."""

# No `from __future__ import annotations`: FastAPI resolves the routes' local Annotated aliases.

from fastapi import APIRouter, Depends, Header, HTTPException
from fastapi.responses import StreamingResponse

from radtriage.api_deps import Context
from radtriage.api_models import Problem
from radtriage.auth import Authenticator


def routes(auth: Authenticator) -> APIRouter:
    """``GET /api/events`` for signed-in readers."""
    router = APIRouter(tags=["events"], dependencies=[Depends(auth.require_reader)])

    @router.get(
        "/api/events",
        response_class=StreamingResponse,
        responses={200: {"content": {"text/event-stream": {}}, "description": "Server-sent events, one per change"},
                   400: {"model": Problem, "description": "Last-Event-ID is not an event id"}},
    )
    async def get_events(context: Context,
                         last_event_id: str | None = Header(None, description="resume after this event id")):
        """Worklist changes as server-sent events: ``id:`` the event id, ``data:`` a JSON object with
        ``study_instance_uid``, ``stage`` and ``at``; a comment every 15 s keeps the stream alive."""
        after = None
        given = (last_event_id or "").strip()
        if given:
            if not given.isdigit() or len(given) > 18:
                raise HTTPException(400, "Last-Event-ID must be the id of an event this stream sent (digits)")
            after = int(given)
        await context.events.start()  # the database away: a 503 now rather than a stream that breaks
        return StreamingResponse(context.events.stream(after), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})

    return router
