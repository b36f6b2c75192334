"""The HTTP API: worklist, health and Prometheus metrics."""

from __future__ import annotations

import html
import secrets
from collections.abc import Callable
from typing import Any

from fastapi import Depends, FastAPI, HTTPException, Response
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session, sessionmaker

from db.worklist import Escalation, worklist

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
    token: str | None = None,
) -> FastAPI:
    """The API; with ``token``, the worklist (which shows accession numbers) needs
    ``Authorization: Bearer <token>``, while /healthz and /metrics stay open for probes."""
    app = FastAPI(title="radtriage", description="Chest X-ray worklist triage (research use, not a diagnosis)")
    bearer = HTTPBearer(auto_error=False)

    def authorised(credentials: HTTPAuthorizationCredentials | None = Depends(bearer)) -> None:
        if token is None:
            return
        given = credentials.credentials if credentials else ""
        if not secrets.compare_digest(given.encode(), token.encode()):
            raise HTTPException(status_code=401, detail="a valid bearer token is required",
                                headers={"WWW-Authenticate": "Bearer"})

    @app.get("/api/worklist", dependencies=[Depends(authorised)])
    def get_worklist(limit: int = 1000) -> dict[str, list[dict[str, Any]]]:
        with sessions() as session:
            return {"items": worklist(session, limit=limit, escalation=escalation)}

    @app.get("/healthz")
    def get_health() -> JSONResponse:
        report = health()
        # Without its database the daemon cannot take images: tell load balancers so.
        database_down = report["components"].get("database", {}).get("status") == "error"
        return JSONResponse(report, status_code=503 if database_down else 200)

    @app.get("/metrics")
    def get_metrics() -> Response:
        body, content_type = metrics()
        return Response(body, media_type=content_type)

    @app.get("/", response_class=HTMLResponse, dependencies=[Depends(authorised)])
    def page() -> str:
        with sessions() as session:
            items = worklist(session, limit=500, escalation=escalation)
        rows = "".join(_row(item) for item in items)
        return _PAGE.format(rows=rows)

    return app


def _row(item: dict[str, Any]) -> str:
    score = "" if item["urgency_score"] is None else f"{item['urgency_score']:.0f}"
    cells = [item["priority"], item["ordered_priority"], score, item["status"], item["accession_number"] or "",
             item["received_at"] or "", "; ".join(item["reasons"])]
    tds = "".join(f"<td>{html.escape(str(c))}</td>" for c in cells)
    return f'<tr class="{html.escape(item["priority"])}">{tds}</tr>'
