"""The HTTP API and the worklist page: ``create_api`` wires the routers (worklist, studies,
events, page) to the database, the authenticator, health and metrics."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI, Response
from sqlalchemy.orm import Session, sessionmaker

from db.event_feed import database_reads
from db.session import make_session_factory
from radtriage import api_deliveries, api_docs, api_events, api_page, api_studies, api_unavailable, api_worklist
from radtriage.api_deps import ApiContext
from radtriage.api_feed import EventFeed
from radtriage.api_models import Health
from radtriage.auth import Authenticator


def create_api(
    *,
    sessions: sessionmaker[Session],
    health: Callable[[], dict[str, Any]],
    metrics: Callable[[], tuple[bytes, str]],
    auth: Authenticator | None = None,
    data_dir: Path | None = None,
    viewer_url_template: str | None = None,
    events: EventFeed | None = None,
) -> FastAPI:
    """The API; every route but /healthz, the page and its assets needs a signed-in user once
    ``auth`` has any configured (see :mod:`radtriage.auth`); /metrics also takes its scrape token.
    Without the database every route that needs it answers 503 (see :mod:`radtriage.api_unavailable`).

    ``data_dir`` holds the stored images (study headers, previews); ``viewer_url_template``
    links each study to the site's viewer.
    """
    auth = auth or Authenticator(sessions)
    reads = make_session_factory(sessions.kw["bind"], readonly=True)
    if events is None:
        read_after, read_last = database_reads(reads)
        events = EventFeed(read_after=read_after, read_last=read_last)

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI):
        yield
        events.close()  # open event streams end, so the server can stop

    app = FastAPI(title="radtriage", description="Chest X-ray worklist triage (research use, not a diagnosis)",
                  lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    api_unavailable.install(app)  # the database away: 503 with a reason, never 500
    app.state.context = ApiContext(sessions=sessions, reads=reads, events=events, data_dir=data_dir,
                                   viewer_url_template=viewer_url_template)
    for module in (api_worklist, api_studies, api_events, api_deliveries):
        app.include_router(module.routes(auth))
    app.include_router(api_page.routes())
    app.include_router(api_docs.routes(app.openapi, auth))  # /docs offline, the schema behind sign-in

    @app.get("/healthz", responses={503: {"model": Health, "description": "The database is down"}})
    def get_health(response: Response) -> Health:
        report = Health.model_validate(health())
        # Without its database the daemon cannot take images: tell load balancers so.
        database = report.components.get("database")
        if database is not None and database.status == "error":
            response.status_code = 503
        return report

    @app.get("/metrics", dependencies=[Depends(auth.metrics_access)])
    def get_metrics() -> Response:
        body, content_type = metrics()
        return Response(body, media_type=content_type)

    return app
