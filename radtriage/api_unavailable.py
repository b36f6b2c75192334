"""503 with a JSON reason, not 500, while the database cannot be reached.

Every route that reads or writes the worklist (and the sign-in, whose tokens live in the
database) meets the database being away as SQLAlchemy's connection errors; answered as a
503 with ``Retry-After``, a load balancer or the page waits and tries again, and nothing
about the fault (host, credentials, SQL) is told to the caller. Other database errors are
bugs and stay 500s.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DisconnectionError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

log = logging.getLogger(__name__)

REASON = "database unavailable"
RETRY_AFTER_SECONDS = 5

# OperationalError: refused, reset, shut down, SQLite's disk full or locked file; InterfaceError:
# a connection closed under us; the pool's timeout: every connection stuck on a dead server.
UNAVAILABLE = (OperationalError, InterfaceError, DisconnectionError, PoolTimeoutError)


def install(app: FastAPI) -> None:
    """Answer ``UNAVAILABLE`` errors on every route of ``app`` with 503 ``{"detail": REASON}``."""

    async def unavailable(request: Request, exc: Exception) -> JSONResponse:
        log.warning("%s %s: database unavailable (%s)", request.method, request.url.path, type(exc).__name__)
        return JSONResponse({"detail": REASON}, status_code=503,
                            headers={"Retry-After": str(RETRY_AFTER_SECONDS)})

    for error in UNAVAILABLE:
        app.add_exception_handler(error, unavailable)
