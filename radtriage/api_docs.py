"""``/docs`` without a CDN, and ``/openapi.json`` behind the API's sign-in.

Swagger UI's files come from the ``fastapi-offline`` package (Swagger UI 5, which reads the
OpenAPI 3.1 schema FastAPI writes); the page's own script (``static/docs.js``) sends the
token the worklist page keeps in the tab, so the schema and "Try it out" work as the signed-in
user. The page and its assets hold no data and are served to anyone; the schema needs a
user once sign-in is required.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib import resources

from fastapi import APIRouter, Depends, HTTPException, Response
from fastapi.responses import JSONResponse

from radtriage.auth import Authenticator

_SWAGGER = {"swagger-ui-bundle.js": "text/javascript; charset=utf-8", "swagger-ui.css": "text/css; charset=utf-8",
            "favicon.png": "image/png"}
_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>radtriage API</title>
<link rel="stylesheet" href="/docs/assets/swagger-ui.css">
<link rel="icon" href="/docs/assets/favicon.png">
</head>
<body>
<p style="font-family: sans-serif; margin: 1em 2em">Signed in on <a href="/">the worklist page</a> in this tab,
requests here carry your token; or use <b>Authorize</b>.</p>
<div id="swagger-ui"></div>
<script src="/docs/assets/swagger-ui-bundle.js"></script>
<script src="/docs/assets/docs.js"></script>
</body>
</html>
"""
# Swagger UI styles itself inline and draws icons as data: URLs; everything else is this server.
_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
                               "object-src 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


def _asset(name: str) -> bytes:
    if name == "docs.js":
        return resources.files("radtriage").joinpath("static", name).read_bytes()
    return resources.files("fastapi_offline").joinpath("static", name).read_bytes()


def routes(openapi: Callable[[], dict], auth: Authenticator) -> APIRouter:
    router = APIRouter(include_in_schema=False)

    @router.get("/openapi.json", dependencies=[Depends(auth.current_user)])
    def schema() -> JSONResponse:
        return JSONResponse(openapi())

    @router.get("/docs")
    def page() -> Response:
        return Response(_PAGE, media_type="text/html; charset=utf-8", headers=_HEADERS)

    @router.get("/docs/assets/{name}")
    def asset(name: str) -> Response:
        media_type = "text/javascript; charset=utf-8" if name == "docs.js" else _SWAGGER.get(name)
        if media_type is None:
            raise HTTPException(404, "no such asset")
        return Response(_asset(name), media_type=media_type, headers={**_HEADERS, "Cache-Control": "max-age=3600"})

    return router
