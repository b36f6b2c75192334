"""The worklist database: models, migrations, sessions and the queries the flow needs."""

from db.session import make_engine, make_session_factory, migrate, ping

__all__ = ["make_engine", "make_session_factory", "migrate", "ping"]
