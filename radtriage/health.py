"""``/healthz``: each component's state; anything not ok makes the whole "degraded"."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import Engine

from db.session import ping
from radtriage.settings import Settings
from scoring.cxr_foundation import missing_parts

Check = Callable[[], dict[str, Any]]


def database_check(engine: Engine) -> Check:
    def check() -> dict[str, Any]:
        try:
            ping(engine)
            return {"status": "ok", "dialect": engine.dialect.name}
        except Exception as exc:
            return {"status": "error", "detail": type(exc).__name__}

    return check


def model_check(settings: Settings) -> Check:
    def check() -> dict[str, Any]:
        missing = missing_parts(settings.cxr_foundation_dir, settings.vocab_path)
        if missing:
            return {
                "status": "missing",
                "path": str(settings.cxr_foundation_dir.resolve()),
                "missing": missing,
                "detail": "AI unavailable: priorities come from the order; see README 'Model weights'",
            }
        return {"status": "ok", "path": str(settings.cxr_foundation_dir.resolve())}

    return check


def report(checks: dict[str, Check]) -> dict[str, Any]:
    """Run every check: "ok" when all are ok, else "degraded"."""
    components = {name: check() for name, check in checks.items()}
    overall = "ok" if all(c.get("status") == "ok" for c in components.values()) else "degraded"
    return {"status": overall, "components": components}
