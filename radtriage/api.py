"""The HTTP API: worklist, health and Prometheus metrics; the JSON shapes are in ``api_models``."""

from __future__ import annotations

import html
from collections.abc import Callable
from typing import Any

from fastapi import Depends, FastAPI, Response
from fastapi.responses import HTMLResponse
from sqlalchemy.orm import Session, sessionmaker

from db.worklist import Escalation, worklist
from radtriage.api_models import Health, Worklist, WorklistItem, iso_utc
from radtriage.auth import Authenticator

_PAGE = """<!doctype html><html><head><meta charset="utf-8"><meta http-equiv="refresh" content="10">
<title>radtriage worklist</title><style>body{{font-family:sans-serif}}td,th{{padding:4px 8px;text-align:left}}
.STAT{{background:#fdd}}.URGENT{{background:#ffd}}</style></head><body>
<h1>radtriage worklist</h1><p><b>Research triage aid, not a diagnosis.</b> AI may only raise a priority.</p>
<table><tr><th>Priority</th><th>Ordered</th><th>Urgency</th><th>Status</th><th>Accession</th><th>Received</th><th>Reasons</th></tr>
{rows}</table></body></html>"""


def create_api(
    *,
    sessions: sessionmaker[Session],
    health: Callable[[], dict[str, Any]],
    metrics: Callable[[], tuple[bytes, str]],
    escalation: Escalation = Escalation(),
    auth: Authenticator | None = None,
) -> FastAPI:
    """The API; every route but /healthz needs a signed-in user once ``auth`` has any
    configured (see :mod:`radtriage.auth`); /metrics also takes its scrape token."""
    app = FastAPI(title="radtriage", description="Chest X-ray worklist triage (research use, not a diagnosis)")
    auth = auth or Authenticator(sessions)

    def items(limit: int) -> list[WorklistItem]:
        with sessions() as session:
            rows = worklist(session, limit=limit, escalation=escalation)
        return [WorklistItem.model_validate(row) for row in rows]

    @app.get("/api/worklist", dependencies=[Depends(auth.require_reader)])
    def get_worklist(limit: int = 1000) -> Worklist:
        return Worklist(items=items(limit))

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

    @app.get("/", response_class=HTMLResponse, dependencies=[Depends(auth.require_reader)])
    def page() -> str:
        return _PAGE.format(rows="".join(_row(item) for item in items(500)))

    return app


def _row(item: WorklistItem) -> str:
    score = "" if item.urgency_score is None else f"{item.urgency_score:.0f}"
    cells = [item.priority, item.ordered_priority, score, item.status, item.accession_number or "",
             iso_utc(item.received_at), "; ".join(item.reasons)]
    tds = "".join(f"<td>{html.escape(str(c))}</td>" for c in cells)
    return f'<tr class="{html.escape(item.priority)}">{tds}</tr>'
