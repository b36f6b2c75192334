"""Runs ``radtriage serve`` as a user would: a subprocess in a temp folder, driven over HTTP/DICOM."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pydicom

from tests.factories import dataset_bytes


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Daemon:
    def __init__(self, folder: Path, **env: str) -> None:
        self.folder = folder
        self.data_dir = folder / "data"
        self.dicom_port = free_port()
        self.http_port = free_port()
        self.env = {
            **os.environ,
            "RADTRIAGE_DATA_DIR": str(self.data_dir),
            "RADTRIAGE_DICOM_PORT": str(self.dicom_port),
            "RADTRIAGE_HTTP_PORT": str(self.http_port),
            "RADTRIAGE_STABLE_SECONDS": "1",
            "RADTRIAGE_CXR_FOUNDATION_DIR": str(folder / "no-models"),
            "TF_CPP_MIN_LOG_LEVEL": "2",
            **env,
        }
        self.log_path = folder / "serve.log"
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> "Daemon":
        self.folder.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "radtriage", "serve"], cwd=self.folder, env=self.env,
            stdout=self._log, stderr=subprocess.STDOUT,
        )
        self.wait_for(lambda: self.health() is not None, 60, "daemon to answer /healthz")
        self.wait_for(lambda: self.health()["components"]["workers"]["status"] == "ok", 60, "workers")
        return self

    def __exit__(self, *exc) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def get(self, path: str):
        with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}{path}", timeout=10) as response:
            body = response.read()
        return json.loads(body) if path != "/metrics" else body.decode()

    def health(self):
        try:
            return self.get("/healthz")
        except OSError:
            assert self.proc.poll() is None, f"daemon exited:\n{self.log()}"
            return None

    def worklist(self) -> list[dict]:
        """The whole worklist in reading order, page after page."""
        items, cursor = [], None
        while True:
            page = self.get("/api/worklist?limit=200" + (f"&cursor={cursor}" if cursor else ""))
            items += page["items"]
            cursor = page["next_cursor"]
            if cursor is None:
                return items

    def wait_for(self, predicate, timeout: float, what: str):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = predicate()
            if value:
                return value
            time.sleep(0.2)
        raise AssertionError(f"timed out waiting for {what}\n--- serve.log ---\n{self.log()[-6000:]}")

    def wait_triaged(self, count: int, timeout: float = 120) -> list[dict]:
        def done():
            items = self.worklist()
            final = [i for i in items if i["status"] in ("triaged", "failed")]
            return items if len(final) == count and len(items) == count else None

        return self.wait_for(done, timeout, f"{count} triaged studies")

    def stored(self) -> dict[str, tuple[str, bytes]]:
        """SOP Instance UID → (transfer syntax, dataset bytes without meta) of every stored file."""
        found = {}
        for path in (self.data_dir / "objects").rglob("*.dcm"):
            meta = pydicom.dcmread(path, stop_before_pixels=True)
            found[str(meta.SOPInstanceUID)] = (str(meta.file_meta.TransferSyntaxUID), dataset_bytes(path))
        return found

    def dcmsend(self, *files: Path) -> list[Path]:
        subprocess.run(
            ["dcmsend", "--decompress-never", "-aec", "RADTRIAGE", "127.0.0.1", str(self.dicom_port), *map(str, files)],
            check=True, capture_output=True, timeout=120,
        )
        return list(files)

    def storescu(self, *files: Path, implicit_only: bool = True) -> None:
        args = ["storescu", "-aec", "RADTRIAGE"] + (["-xi"] if implicit_only else [])
        subprocess.run([*args, "127.0.0.1", str(self.dicom_port), *map(str, files)],
                       check=True, capture_output=True, timeout=120)
        return list(files)


_DCMCONV_SYNTAX = {
    "1.2.840.10008.1.2": "+ti",
    "1.2.840.10008.1.2.1": "+te",
    "1.2.840.10008.1.2.2": "+tb",
}


def as_sent_by_dcmtk(path: Path, transfer_syntax: str, folder: Path) -> bytes:
    """The dataset bytes DCMTK puts on the wire for ``path`` in ``transfer_syntax``.

    DCMTK's network encoder writes sequences and items with explicit lengths, drops
    (FFFC,FFFC) Data Set Trailing Padding and converts between uncompressed syntaxes;
    ``dcmconv +e -p`` applies the same encoder.
    """
    out = folder / f"wire-{path.name}"
    syntax = _DCMCONV_SYNTAX.get(transfer_syntax, "+t=")
    subprocess.run(["dcmconv", "+e", "-p", syntax, str(path), str(out)], check=True, capture_output=True)
    return dataset_bytes(out)


def c_store(port: int, datasets, *, ae_title: str = "RADTRIAGE") -> list[int]:
    """Send pydicom datasets in one association with pynetdicom; returns each status."""
    from pynetdicom import AE

    ae = AE(ae_title="TESTSCU")
    for sop_class in {ds.SOPClassUID for ds in datasets}:
        ae.add_requested_context(sop_class, [ds.file_meta.TransferSyntaxUID for ds in datasets][0])
    assoc = ae.associate("127.0.0.1", port, ae_title=ae_title)
    assert assoc.is_established, "association rejected"
    try:
        return [assoc.send_c_store(ds).Status for ds in datasets]
    finally:
        assoc.release()


def events(database_url: str, stage: str) -> dict[str, int]:
    """Study Instance UID → how many events of ``stage`` the database recorded."""
    from sqlalchemy import create_engine, text

    engine = create_engine(database_url)
    try:
        with engine.connect() as connection:
            rows = connection.execute(
                text("SELECT s.study_instance_uid, COUNT(e.id) FROM studies s LEFT JOIN events e "
                     "ON e.study_id = s.id AND e.stage = :stage GROUP BY s.study_instance_uid"),
                {"stage": stage},
            ).all()
    finally:
        engine.dispose()
    return {uid: n for uid, n in rows}


def sqlite_events_in_order(daemon: Daemon, stages: tuple[str, ...]) -> list[tuple[str, str]]:
    """(Study Instance UID, stage) of every event of ``stages``, in the order they happened."""
    import sqlite3

    with sqlite3.connect(daemon.data_dir / "radtriage.sqlite3") as connection:
        marks = ",".join("?" * len(stages))
        rows = connection.execute(
            f"SELECT s.study_instance_uid, e.stage FROM events e JOIN studies s ON s.id = e.study_id "
            f"WHERE e.stage IN ({marks}) ORDER BY e.id", stages,
        ).fetchall()
    return [(uid, stage) for uid, stage in rows]
