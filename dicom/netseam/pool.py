"""Several listener processes behind one port: one process accepts, members serve associations.

Associations served by threads of one Python process share its GIL: with four senders at
once the listener used about one core however many it had, at a third of DCMTK
``storescp --fork``'s rate (``benchmarks/ingest.py``). Here the parent only accepts: each
connection's socket is passed (``SCM_RIGHTS``) to the member process with the fewest open
connections, which runs the whole association exactly as ``dicom.listener`` would in
process: access policy, TLS, storage, statuses.

The parent keeps the association limit for all members (a connection over it is passed
with a flag, and its member rejects the association as a transient local limit), and the cap
on connections per calling host (one past it is closed at once; members report each closed
connection with its host). A member
that dies is restarted; a connection it held is lost before any Success was sent for the
instance in flight, so the sender retries it and nothing acknowledged is lost.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import logging
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Callable
from typing import Protocol

from dicom.netseam.transport import HandedOverServer
from dicom.peer_log import limit_per_peer

log = limit_per_peer(logging.getLogger(__name__))


class PoolConfig(Protocol):
    """What the pool reads of ``dicom.listener.ListenerConfig``."""

    host: str
    port: int
    max_associations: int
    per_host_limit: int
    ssl_context: ssl.SSLContext | None

    def check_exposure(self) -> None: ...


class PoolMember(Protocol):
    """What a member process uses of its ``dicom.listener.Listener``."""

    def handed_over_server(self, on_closed: Callable[[str], None]) -> HandedOverServer: ...

    def refuse_next_from(self, address: tuple[str, int]) -> None: ...

    def active_associations(self) -> int: ...

    def stop(self) -> None: ...

# A member's messages: ready, and "closed <host>" when one of its connections is done.
READY, CLOSED = b"ready", b"closed"


@dataclasses.dataclass(eq=False)
class _Member:
    index: int
    proc: subprocess.Popen | None = None
    channel: socket.socket | None = None
    ready: bool = False
    open: int = 0
    hosts: collections.Counter = dataclasses.field(default_factory=collections.Counter)  # open, by host
    served: int = 0
    restarts: int = 0


class ListenerPool:
    """Accepts on ``config.host:config.port`` and hands each connection to a member process.

    Parameters
    ----------
    config : dicom.listener.ListenerConfig
        The same configuration the members build for themselves.
    processes : int
        Member processes (2 or more; one process is ``dicom.listener.Listener`` itself).
    member_command : callable
        ``member_command(fd)``: the command line of a member whose channel to this process
        is file descriptor ``fd``; it must end in ``serve_member``.
    start_timeout : float
        Seconds the members have to report ready at start.
    """

    def __init__(self, config: PoolConfig, *, processes: int, member_command: Callable[[int], list[str]],
                 start_timeout: float = 60.0) -> None:
        if processes < 2:
            raise ValueError("a listener pool needs at least 2 processes")
        self.config = config
        self.address = (config.host, config.port)
        self._command = member_command
        self._start_timeout = start_timeout
        self._members = [_Member(index) for index in range(processes)]
        self._lock = threading.Condition()
        self._stopping = threading.Event()
        self._sock: socket.socket | None = None
        self._acceptor: threading.Thread | None = None

    def start(self) -> None:
        """Bind, start the members and wait until each is ready.

        Raises
        ------
        AccessConfigError
            A non-loopback address without an allow-list and without ``allow_any``.
        OSError
            The address cannot be bound, or a member did not start.
        """
        self.config.check_exposure()
        family = socket.AF_INET6 if ":" in self.config.host else socket.AF_INET
        self._sock = socket.create_server(self.address, family=family, backlog=128)
        self._sock.settimeout(0.5)  # the accept loop checks for stop this often
        self.address = self._sock.getsockname()[:2]
        for member in self._members:
            self._spawn(member)
        if not self._wait_ready(time.monotonic() + self._start_timeout):
            self.stop()
            raise OSError("a DICOM listener process did not start (see its log above)")
        self._acceptor = threading.Thread(target=self._accept_loop, name="dicom-accept", daemon=True)
        self._acceptor.start()
        log.info("DICOM listener on %s:%d%s, %d processes", *self.address,
                 " (TLS)" if self.config.ssl_context else "", len(self._members))

    def _wait_ready(self, deadline: float) -> bool:
        with self._lock:
            while not all(m.ready for m in self._members):
                if any(m.proc.poll() is not None for m in self._members) or time.monotonic() > deadline:
                    return False
                self._lock.wait(0.2)
        return True

    @property
    def running(self) -> bool:
        return (self._acceptor is not None and self._acceptor.is_alive()
                and any(m.ready for m in self._members))

    @property
    def processes(self) -> list[dict]:
        """Per member: pid, alive, open and served connections, restarts (``/healthz``)."""
        with self._lock:
            return [{"pid": m.proc.pid if m.proc else None, "alive": m.ready, "open": m.open,
                     "served": m.served, "restarts": m.restarts} for m in self._members]

    def _spawn(self, member: _Member) -> None:
        """Start ``member``'s process (raises ``OSError`` when it cannot be started)."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            with theirs:
                member.proc = subprocess.Popen(self._command(theirs.fileno()), pass_fds=[theirs.fileno()])
        except BaseException:
            ours.close()
            raise
        member.channel, member.ready, member.open = ours, False, 0
        member.hosts.clear()
        threading.Thread(target=self._watch, args=(member, ours, member.proc), name=f"dicom-member-{member.index}",
                         daemon=True).start()

    def _watch(self, member: _Member, channel: socket.socket, proc: subprocess.Popen) -> None:
        """Follow one member's messages; restart it when it goes away."""
        started = time.monotonic()
        while True:
            try:
                message = channel.recv(64)
            except OSError:
                message = b""
            if not message:
                break
            with self._lock:
                if message == READY:
                    member.ready = True
                    self._lock.notify_all()
                elif message.startswith(CLOSED):
                    member.open = max(0, member.open - 1)
                    host = message[len(CLOSED) + 1:].decode(errors="replace")
                    if member.hosts[host] > 0:
                        member.hosts[host] -= 1
        code = proc.wait()
        channel.close()
        with self._lock:
            member.ready, member.open = False, 0
            member.hosts.clear()
            self._lock.notify_all()
        # A member that ran a while is replaced at once; one failing at start backs off.
        delay = 0.0 if time.monotonic() - started > 60 else min(2.0 ** member.restarts, 30.0)
        if not self._stopping.is_set():
            log.warning("DICOM listener process %d exited with %s; restarting in %.0f s", member.index, code, delay)
        while not self._stopping.wait(delay):
            with self._lock:  # stop() sets _stopping under this lock: no member starts after it
                if self._stopping.is_set():
                    return
                member.restarts += 1
                try:
                    self._spawn(member)
                    return
                except OSError as exc:
                    delay = min(max(delay, 1.0) * 2, 30.0)
                    log.error("cannot restart DICOM listener process %d (%s); retrying in %.0f s", member.index,
                              type(exc).__name__, delay)

    def _accept_loop(self) -> None:
        while not self._stopping.is_set():
            try:
                conn, address = self._sock.accept()
            except TimeoutError:
                continue
            except OSError as exc:
                if self._stopping.is_set():
                    return
                log.warning("accepting a DICOM connection failed (%s)", type(exc).__name__)
                continue
            with conn:
                self._hand_over(conn, address[:2])

    def _hand_over(self, conn: socket.socket, address: tuple[str, int]) -> None:
        host = str(address[0])
        with self._lock:
            ready = sorted((m for m in self._members if m.ready), key=lambda m: m.open)
            over_limit = sum(m.open for m in self._members) >= self.config.max_associations
            from_host = sum(m.hosts[host] for m in self._members)
        if self.config.per_host_limit and from_host >= self.config.per_host_limit:
            # Closed at once: one host (a hung modality, a scanner) cannot hold every slot.
            log.warning("DICOM connection from %s closed: that host holds %d already, the most one host may",
                        host, from_host, extra={"peer": host})
            return
        message = json.dumps({"address": list(address), "over_limit": over_limit}).encode()
        for member in ready:  # the least busy first; a dead or stuck one is passed over
            with self._lock:  # counted before it is sent: the member may report it closed at once
                member.open += 1
                member.hosts[host] += 1
            try:
                # Never blocks: a member that stopped reading must not stall the accept loop.
                socket.send_fds(member.channel, [message], [conn.fileno()], socket.MSG_DONTWAIT)
            except OSError as exc:
                log.warning("could not hand a connection to listener process %d (%s)", member.index,
                            type(exc).__name__)
                with self._lock:
                    member.open = max(0, member.open - 1)
                    member.hosts[host] -= 1
                continue
            with self._lock:
                member.served += 1
            return
        log.warning("no DICOM listener process took the connection from %s; closed", address[0])

    def stop(self, timeout: float = 30.0) -> None:
        """Stop accepting; members finish their associations (up to ``timeout``) and exit."""
        with self._lock:
            self._stopping.set()
        if self._sock is not None:
            self._sock.close()
        if self._acceptor is not None:
            self._acceptor.join(5)
        for member in self._members:
            if member.channel is not None:
                try:
                    member.channel.shutdown(socket.SHUT_WR)  # end of connections: the member drains
                except OSError:
                    pass
        deadline = time.monotonic() + timeout
        for member in self._members:
            if member.proc is None:
                continue
            try:
                member.proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                member.proc.kill()
                member.proc.wait()


def serve_member(listener: PoolMember, channel: socket.socket, *, drain_seconds: float = 30.0) -> None:
    """Run a pool member: serve the connections the parent passes until it stops or dies.

    Then the associations still open get up to ``drain_seconds`` to finish.
    """

    def closed(host: str) -> None:
        try:
            channel.send(CLOSED + b" " + host.encode())
        except OSError:
            pass  # the parent is gone; nobody counts any more

    server = listener.handed_over_server(on_closed=closed)
    channel.send(READY)
    while True:
        try:
            message, fds, _flags, _address = socket.recv_fds(channel, 1024, 1)
        except OSError:
            break
        if not message:
            break
        handed = json.loads(message)
        address = (str(handed["address"][0]), int(handed["address"][1]))
        if handed["over_limit"]:
            listener.refuse_next_from(address)
        server.process_request(socket.socket(fileno=fds[0]), address)
    deadline = time.monotonic() + drain_seconds
    while listener.active_associations() and time.monotonic() < deadline:
        time.sleep(0.1)
    listener.stop()
