"""Log lines about what network peers did, rate-limited so no peer can fill the disk through the log.

A peer's protocol error (a malformed PDU, a connection cut mid-PDU, a refused connection) is one
line without a traceback. Each address gets ``burst`` lines per ``window`` seconds; past that its
lines are counted, and one summary line says how many were left out. pynetdicom's own loggers
get the same treatment (:func:`quiet_pynetdicom`): its tracebacks for a peer's garbage become
one line naming the exception class, and a message it repeats is held to ``burst`` a window.
"""

from __future__ import annotations

import logging
import threading
import time

_MAX_TRACKED = 10_000  # addresses remembered at once; a scan from many addresses must not grow this


class PeerLog:
    """``warning(address, message, *args)`` as ``logging.Logger.warning``, at most ``burst`` per address and window."""

    def __init__(self, logger: logging.Logger, *, burst: int = 10, window: float = 60.0) -> None:
        self._log = logger
        self.burst = burst
        self.window = window
        self._seen: dict[str, list] = {}  # key -> [window start, lines in this window, left out]
        self._lock = threading.Lock()

    def warning(self, address: str, message: str, *args) -> None:
        self.log(logging.WARNING, address, message, *args)

    def log(self, level: int, key: str, message: str, *args) -> None:
        if self.admit(key):
            self._log.log(level, message, *args)

    def admit(self, key: str) -> bool:
        """Count one line about ``key``; whether it may be written (summary lines are written here)."""
        now = time.monotonic()
        with self._lock:
            entry = self._seen.get(key)
            left_out = None
            if entry is None or now - entry[0] >= self.window:
                if entry is not None and entry[2]:
                    left_out = (entry[2], now - entry[0])
                if entry is None and len(self._seen) >= _MAX_TRACKED:
                    self._forget(now)
                entry = self._seen[key] = [now, 0, 0]
            entry[1] += 1
            count = entry[1]
            if count > self.burst:
                entry[2] += 1
        if left_out is not None:
            self._log.warning("%d more log lines about %s were left out in the last %.0f s", left_out[0], key,
                              left_out[1])
        if count == self.burst + 1:
            self._log.warning("more than %d log lines about %s within %.0f s: further ones are counted, not written",
                              self.burst, key, self.window)
        return count <= self.burst

    def _forget(self, now: float) -> None:
        stale = [key for key, entry in self._seen.items() if now - entry[0] >= self.window]
        for key in stale or list(self._seen)[: len(self._seen) // 2]:
            del self._seen[key]


class PerPeer(logging.Filter):
    """Rate-limits a logger's records that name their peer (``extra={"peer": address}``)."""

    def __init__(self, limiter: PeerLog) -> None:
        super().__init__()
        self._limiter = limiter

    def filter(self, record: logging.LogRecord) -> bool:
        peer = getattr(record, "peer", None)
        return peer is None or self._limiter.admit(str(peer))


def limit_per_peer(logger: logging.Logger, *, burst: int = 10, window: float = 60.0) -> logging.Logger:
    """Attach a ``PerPeer`` filter to ``logger``; its summary lines go to ``logger`` too."""
    logger.addFilter(PerPeer(PeerLog(logger, burst=burst, window=window)))
    return logger


class _OneLine(logging.Filter):
    """Turns a pynetdicom record's traceback into its exception class, and rate-limits by message."""

    def __init__(self, limiter: PeerLog) -> None:
        super().__init__()
        self._limiter = limiter

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info:
            exc = record.exc_info[1]
            record.msg = f"{record.msg} ({type(exc).__name__})"
            record.exc_info = None
            record.exc_text = None
        if record.levelno < logging.WARNING:
            return True
        # Counted by the message as written, before its arguments (which may carry values).
        return self._limiter.admit(f"{record.name}: {record.msg}")


_quiet_lock = threading.Lock()
_quieted = False


def quiet_pynetdicom() -> None:
    """Attach the one-line, rate-limited filter to every pynetdicom logger (once per process)."""
    global _quieted
    with _quiet_lock:
        if _quieted:
            return
        import pynetdicom  # noqa: F401  (its modules create their loggers on import)

        one_line = _OneLine(PeerLog(logging.getLogger(__name__), burst=20))
        for name in list(logging.Logger.manager.loggerDict):
            if name == "pynetdicom" or name.startswith("pynetdicom."):
                logging.getLogger(name).addFilter(one_line)
        _quieted = True
