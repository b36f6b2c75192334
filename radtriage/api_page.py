"""The worklist page at ``/`` and its assets, served from the package (no CDN: hospitals are offline).

The page and its assets hold no data, so they are served without credentials: the browser
cannot send a bearer on a navigation, and the page signs in itself (a pasted personal token,
or the bearer a reverse proxy adds) before it asks ``/api/*`` for anything.
"""

from __future__ import annotations

from importlib import resources

from fastapi import APIRouter, HTTPException, Response

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
    def page() -> Response:
        return Response(_asset("index.html"), media_type="text/html; charset=utf-8", headers=_HEADERS)

    @router.get("/static/{name}")
    def asset(name: str) -> Response:
        if name not in _ASSETS:
            raise HTTPException(404, "no such asset")
        return Response(_asset(name), media_type=_ASSETS[name], headers=_HEADERS)

    return router
