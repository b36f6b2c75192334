"""Which stored files the database knows: the start-up check for files a crash left unrecorded."""

from __future__ import annotations

from collections.abc import Collection

from sqlalchemy import select
from sqlalchemy.orm import Session

from db.models import Instance


def recorded_paths(session: Session, paths: Collection[str]) -> set[str]:
    """Those of ``paths`` (relative to the data folder) that an instance row names."""
    if not paths:
        return set()
    return set(session.scalars(select(Instance.path).where(Instance.path.in_(list(paths)))))
