"""Shared fixtures: real services (skipped when absent, failed under CI), samples, stand-ins."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fixtures_models import cxr_foundation_dir, medgemma_dir  # noqa: F401  (fixtures)

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO.parent / "shared" / "dicom_samples"
REQUIRE_ENV = "RADTRIAGE_TEST_REQUIRE_SERVICES"
POSTGRES_URL = os.environ.get("RADTRIAGE_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("RADTRIAGE_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def need(available: bool, what: str) -> None:
    """Skip when ``what`` is unavailable on a user's machine; fail when CI requires it."""
    if available:
        return
    if os.environ.get(REQUIRE_ENV) == "1":
        pytest.fail(f"{what} is required ({REQUIRE_ENV}=1) but not available")
    pytest.skip(f"{what} not available")


@pytest.fixture(scope="session")
def samples() -> Path:
    need(SAMPLES.is_dir(), f"DICOM samples at {SAMPLES}")
    return SAMPLES


@pytest.fixture(scope="session")
def dcmtk() -> None:
    need(shutil.which("dcmsend") is not None and shutil.which("storescu") is not None, "DCMTK (dcmsend, storescu)")


@pytest.fixture
def postgres_url():
    """A PostgreSQL URL whose connections use a schema of their own, dropped afterwards."""
    sqlalchemy = pytest.importorskip("sqlalchemy")
    engine = sqlalchemy.create_engine(POSTGRES_URL)
    try:
        with engine.connect():
            pass
    except Exception:
        need(False, f"PostgreSQL at {POSTGRES_URL}")
    schema = f"rt_{uuid.uuid4().hex[:12]}"
    with engine.begin() as connection:
        connection.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    separator = "&" if "?" in POSTGRES_URL else "?"
    yield f"{POSTGRES_URL}{separator}options=-csearch_path%3D{schema}"
    with engine.begin() as connection:
        connection.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
    engine.dispose()


def sqlite_url(folder: Path) -> str:
    """The URL of ``radtriage.sqlite3`` in ``folder``, where a daemon on that data folder keeps it."""
    return f"sqlite:///{folder / 'radtriage.sqlite3'}"


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path):
    """The test runs once on an SQLite file and once on a PostgreSQL schema of its own."""
    if request.param == "sqlite":
        return sqlite_url(tmp_path)
    return request.getfixturevalue("postgres_url")


@contextlib.contextmanager
def _migrated_sessions(url: str) -> Iterator:
    from db.session import make_engine, make_session_factory, migrate

    engine = make_engine(url)
    migrate(engine)
    try:
        yield make_session_factory(engine)
    finally:
        engine.dispose()


@pytest.fixture
def sessions(database_url):
    """Sessions on a migrated database, once SQLite and once PostgreSQL (see ``database_url``)."""
    with _migrated_sessions(database_url) as factory:
        yield factory


@pytest.fixture
def sqlite_sessions(tmp_path):
    """Sessions on a migrated SQLite database in the test's folder (``radtriage.sqlite3``)."""
    with _migrated_sessions(sqlite_url(tmp_path)) as factory:
        yield factory


@pytest.fixture
def redis_prefix():
    """``(url, key_prefix)`` on the real Redis; every key under the prefix is removed afterwards."""
    redis = pytest.importorskip("redis")
    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.ping()
    except Exception:
        need(False, f"Redis at {REDIS_URL}")
    prefix = f"rt-test-{uuid.uuid4().hex[:12]}:"
    yield REDIS_URL, prefix
    for key in client.scan_iter(match=f"{prefix}*"):
        client.delete(key)
    client.close()


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture(scope="session")
def pki(tmp_path_factory) -> Path:
    """A CA, and a server and a client certificate it signed (EC P-256, valid one day)."""
    need(shutil.which("openssl") is not None, "openssl")
    folder = tmp_path_factory.mktemp("pki")
    key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    _openssl("req", "-x509", *key, "-keyout", "ca.key", "-out", "ca.pem", "-days", "1", "-subj", "/CN=radtriage test CA",
             cwd=folder)
    for name, usage in (("server", "serverAuth"), ("client", "clientAuth")):
        (folder / f"{name}.ext").write_text(
            f"basicConstraints=CA:FALSE\nextendedKeyUsage={usage}\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n")
        _openssl("req", *key, "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN=radtriage {name}",
                 cwd=folder)
        _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
                 "-out", f"{name}.pem", "-days", "1", "-extfile", f"{name}.ext", cwd=folder)
    return folder
