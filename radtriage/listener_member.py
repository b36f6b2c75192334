"""One member process of the DICOM listener pool (``dicom.netseam.pool``), started by ``radtriage serve``.

    python -m radtriage.listener_member --channel-fd FD [--config FILE]

It reads the same settings as ``serve`` and serves the connections ``serve`` passes over
``FD`` until ``serve`` stops or goes away.
"""

from __future__ import annotations

import argparse
import signal
import socket

from db.session import make_engine, make_session_factory
from dicom.netseam import serve_member
from radtriage import logs
from radtriage.listening import build_listener
from radtriage.settings import load_settings


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--channel-fd", type=int, required=True)
    parser.add_argument("--config", default=None)
    args = parser.parse_args(argv)
    # Ctrl-C reaches the whole process group; serve alone decides when members stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    settings = load_settings(args.config)
    logs.configure(settings.log_level, settings.log_format)
    engine = make_engine(settings.effective_database_url)
    try:
        serve_member(build_listener(settings, make_session_factory(engine)), socket.socket(fileno=args.channel_fd))
    finally:
        engine.dispose()


if __name__ == "__main__":
    main()
