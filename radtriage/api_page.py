"""The worklist page at ``/`` and its assets, served from the package (no CDN: hospitals are offline).

The page and its assets hold no data, so they are served without credentials: the browser
cannot send a bearer on a navigation, and the page signs in itself (a pasted personal token,
or the bearer a reverse proxy adds) before it asks ``/api/*`` for anything.

While the database is away the page answers 503 like every route that needs it, so a load
balancer or a monitor sees the outage at ``/`` too; a browser still gets the page (it shows
the API's reason and tries again), any other client the JSON reason.
"""

from __future__ import annotations

from importlib import resources

from fastapi import APIRouter, HTTPException, Request, Response
from sqlalchemy import text

from radtriage.api_deps import Context
from radtriage.api_unavailable import RETRY_AFTER_SECONDS, UNAVAILABLE

_ASSETS = {"app.js": "text/javascript; charset=utf-8", "app.css": "text/css; charset=utf-8"}
# The page loads nothing but its own assets and talks to nothing but this server.
_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' blob:; object-src 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


def _asset(name: str) -> bytes:
    return resources.files("radtriage").joinpath("static", name).read_bytes()


def routes() -> APIRouter:
    router = APIRouter(include_in_schema=False)

    @router.get("/")
    def page(request: Request, context: Context) -> Response:
        try:
            with context.reads() as session:
                session.execute(text("SELECT 1"))
        except UNAVAILABLE:
            if "text/html" not in request.headers.get("accept", ""):
                raise  # the JSON reason, as every other route gives it
            return Response(_asset("index.html"), status_code=503, media_type="text/html; charset=utf-8",
                            headers={**_HEADERS, "Retry-After": str(RETRY_AFTER_SECONDS)})
        return Response(_asset("index.html"), media_type="text/html; charset=utf-8", headers=_HEADERS)

    @router.get("/static/{name}")
    def asset(name: str) -> Response:
        if name not in _ASSETS:
            raise HTTPException(404, "no such asset")
        return Response(_asset(name), media_type=_ASSETS[name], headers=_HEADERS)

    return router
