"""Worker heartbeats, sent by a small sidecar process so that a worker busy holding the GIL
(a model loading for seconds) is never mistaken for a dead one.

The sidecar beats for its parent (``host:parent-pid``) until the parent exits, then removes
the parent's row, so the sweep can re-drive what the parent had claimed.
"""

from __future__ import annotations

import argparse
import logging
import os
import socket
import subprocess
import sys
import time

log = logging.getLogger(__name__)

_URL_ENV = "RADTRIAGE_HEARTBEAT_DATABASE_URL"


def worker_name(pid: int | None = None) -> str:
    """How a worker process is known in heartbeats and claims: ``host:pid``."""
    return f"{socket.gethostname()}:{pid or os.getpid()}"


def start(database_url: str, *, queues: str, lost_after: float) -> subprocess.Popen:
    """Start the sidecar for this process; it beats three times per ``lost_after``."""
    interval = max(0.5, min(5.0, lost_after / 3))
    env = {**os.environ, _URL_ENV: database_url}  # not on the command line: it may hold a password
    return subprocess.Popen(
        [sys.executable, "-m", "worker.heartbeat", "--name", worker_name(), "--queues", queues,
         "--interval", str(interval), "--parent", str(os.getpid())],
        env=env,
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--name", required=True)
    parser.add_argument("--queues", required=True)
    parser.add_argument("--interval", type=float, required=True)
    parser.add_argument("--parent", type=int, required=True)
    args = parser.parse_args(argv)

    from db import heartbeats
    from db.session import make_engine, make_session_factory

    sessions = make_session_factory(make_engine(os.environ[_URL_ENV]))
    while os.getppid() == args.parent:
        try:
            with sessions() as session:
                heartbeats.beat(session, name=args.name, queues=args.queues)
        except Exception as exc:  # the database being away must not end the sidecar
            log.warning("heartbeat failed (%s)", type(exc).__name__)
        time.sleep(args.interval)
    try:
        with sessions() as session:
            heartbeats.forget(session, name=args.name)
    except Exception:
        pass


if __name__ == "__main__":
    main()
