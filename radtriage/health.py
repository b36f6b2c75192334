"""``/healthz``: each component's state; anything not ok makes the whole "degraded"."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import Engine

from db.session import ping
from radtriage.settings import Settings, embedder_config
from scoring.backends import missing_for

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
    """The triage embedder's weights (CXR Foundation or MedSigLIP), checked without loading."""
    config = embedder_config(settings)
    where = (str(settings.cxr_foundation_dir.resolve()) if config.embedder == "cxr_foundation"
             else settings.medsiglip_model)

    def check() -> dict[str, Any]:
        missing = missing_for(config)
        if missing:
            return {
                "status": "missing",
                "embedder": config.embedder,
                "path": where,
                "missing": missing,
                "detail": "AI unavailable: priorities come from the order; see README 'Model weights'",
            }
        return {"status": "ok", "embedder": config.embedder, "path": where}

    return check


def report(checks: dict[str, Check]) -> dict[str, Any]:
    """Run every check: "ok" when all are ok, else "degraded"."""
    components = {name: _run(check) for name, check in checks.items()}
    overall = "ok" if all(c.get("status") == "ok" for c in components.values()) else "degraded"
    return {"status": overall, "components": components}


def _run(check: Check) -> dict[str, Any]:
    """A check that fails (its database read, say) reports an error instead of failing /healthz."""
    try:
        return check()
    except Exception as exc:  # noqa: BLE001  any failure is this component's state
        return {"status": "error", "detail": type(exc).__name__}
