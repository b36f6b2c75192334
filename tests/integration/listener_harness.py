"""A real listener on an ephemeral loopback port, in this process, with what it recorded."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from db.models import Instance
from db.session import make_engine, make_session_factory, migrate
from dicom.listener import Listener, ListenerConfig, StoreHandler

AE_TITLE = "RADTRIAGE"


@dataclasses.dataclass
class Harness:
    listener: Listener
    data_dir: Path
    sessions: sessionmaker[Session]
    stores: list[tuple[str, int]]  # (result, status) per C-STORE
    refusals: list[str]
    associations: list[str]

    @property
    def port(self) -> int:
        return self.listener.address[1]

    def files(self) -> list[Path]:
        """Every stored object, finished or not."""
        objects = self.data_dir / "objects"
        return sorted(p for p in objects.rglob("*") if p.is_file()) if objects.exists() else []

    def partial_files(self) -> list[Path]:
        return [p for p in self.files() if p.name.startswith(".incoming-")]

    def rows(self) -> int:
        with self.sessions() as session:
            return session.scalar(select(func.count()).select_from(Instance)) or 0


@contextlib.contextmanager
def running_listener(folder: Path, *, database_url: str | None = None, data_dir: Path | None = None,
                     sessions: sessionmaker[Session] | None = None, **config) -> Iterator[Harness]:
    """Start a listener storing under ``data_dir`` (default ``folder/data``) and stop it afterwards.

    ``config`` overrides :class:`ListenerConfig` fields; ``sessions`` replaces the database.
    """
    data_dir = data_dir or folder / "data"
    data_dir.mkdir(parents=True, exist_ok=True)
    engine = None
    if sessions is None:
        engine = make_engine(database_url or f"sqlite:///{folder / 'radtriage.sqlite3'}")
        migrate(engine)
        sessions = make_session_factory(engine)
    stores: list[tuple[str, int]] = []
    refusals: list[str] = []
    associations: list[str] = []
    handler = StoreHandler(data_dir=data_dir, sessions=sessions, observe=lambda r, c: stores.append((r, c)))
    listener = Listener(ListenerConfig(ae_title=AE_TITLE, host="127.0.0.1", port=0, **config), handler=handler,
                        on_refusal=refusals.append, on_association=associations.append)
    listener.start()
    try:
        yield Harness(listener, data_dir, sessions, stores, refusals, associations)
    finally:
        listener.stop()
        if engine is not None:
            engine.dispose()
