"""Engines and sessions: SQLite (WAL, durable commits) by default, PostgreSQL by URL.

Writing sessions take SQLite's write lock when they begin; read-only sessions
(``make_session_factory(engine, readonly=True)``) begin a deferred transaction that reads a
snapshot and never blocks a writer, so polling the worklist does not slow ingest.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.orm import Session, sessionmaker

_MIGRATIONS = Path(__file__).with_name("migrations")


def make_engine(url: str) -> Engine:
    """An engine for ``url``; SQLite gets WAL, fsync on commit and a wait for the write lock."""
    if url.startswith("sqlite"):
        # isolation_level=None hands transaction control to the "begin" hook below.
        engine = create_engine(
            url, connect_args={"timeout": 30, "check_same_thread": False, "isolation_level": None}
        )
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "begin", _sqlite_begin_immediate)
        return engine
    return create_engine(url, pool_pre_ping=True)


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    # FULL: a commit is on disk before we answer the sender Success.
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


_READONLY = "radtriage_readonly"


def _sqlite_begin_immediate(connection) -> None:
    if connection.get_execution_options().get(_READONLY):
        # WAL: a read transaction sees a snapshot and lets writers commit meanwhile.
        connection.exec_driver_sql("BEGIN")
        return
    # A deferred transaction that reads and then writes fails at once with "database is
    # locked" when another process wrote in between; taking the write lock up front makes
    # SQLite wait (busy_timeout) instead.
    connection.exec_driver_sql("BEGIN IMMEDIATE")


def make_session_factory(engine: Engine, *, readonly: bool = False) -> sessionmaker[Session]:
    """Sessions on ``engine``; ``readonly`` ones never take the write lock and refuse to flush."""
    if not readonly:
        return sessionmaker(engine, expire_on_commit=False)
    options = {_READONLY: True}
    if engine.dialect.name == "postgresql":
        options["postgresql_readonly"] = True
    factory = sessionmaker(engine.execution_options(**options), expire_on_commit=False)
    event.listen(factory, "before_flush", _refuse_writes)
    return factory


def _refuse_writes(session, _context, _instances) -> None:
    if session.new or session.dirty or session.deleted:
        raise RuntimeError("a read-only session cannot write")


def migrate(engine: Engine, revision: str = "head") -> None:
    """Bring the schema to ``revision``, by default the newest (idempotent)."""
    # Imported here: only the process that migrates pays for alembic (listener members and
    # workers never do).
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(_MIGRATIONS))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)


def ping(engine: Engine) -> None:
    """Raise when the database cannot be reached."""
    with engine.execution_options(**{_READONLY: True}).connect() as connection:
        connection.execute(text("SELECT 1"))
