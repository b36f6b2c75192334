"""The DICOM listener as the settings ask for it: in this process, or a pool of processes.

Shared by ``radtriage serve`` (which starts it) and each pool member process
(``radtriage.listener_member``), so both build exactly the same listener.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

from sqlalchemy.orm import Session, sessionmaker

from dicom.access import parse_allowed, server_tls_context
from dicom.errors import AccessConfigError
from dicom.listener import Listener, ListenerConfig, StoreHandler
from dicom.netseam import ListenerPool
from radtriage import metrics
from radtriage.settings import Settings


def _no_timing(_seconds: float) -> None:
    pass


# More members than this only add memory: by then the disk and database set the pace.
MAX_AUTO_PROCESSES = 8


def listener_config(s: Settings) -> ListenerConfig:
    """The listener's settings, TLS context included (raises ``AccessConfigError``)."""
    tls = None
    if s.dicom_tls_cert or s.dicom_tls_key:
        if not (s.dicom_tls_cert and s.dicom_tls_key):
            raise AccessConfigError("TLS needs both RADTRIAGE_DICOM_TLS_CERT and RADTRIAGE_DICOM_TLS_KEY")
        tls = server_tls_context(cert=s.dicom_tls_cert, key=s.dicom_tls_key, ca=s.dicom_tls_ca,
                                 require_client_cert=s.dicom_tls_require_client_cert,
                                 stall_timeout=s.dicom_network_timeout)
    return ListenerConfig(
        ae_title=s.ae_title, host=s.dicom_host, port=s.dicom_port,
        accepted_sop_classes=tuple(s.dicom_accepted_sop_classes.split(",")),
        allowed=parse_allowed(s.dicom_allowed_aes), allow_any=s.dicom_allow_any, ssl_context=tls,
        max_associations=s.dicom_max_associations, max_associations_per_host=s.dicom_max_associations_per_host,
        acse_timeout=s.dicom_acse_timeout,
        dimse_timeout=s.dicom_dimse_timeout, network_timeout=s.dicom_network_timeout,
        plain_pynetdicom=s.dicom_plain_pynetdicom,
    )


def listener_processes(s: Settings) -> int:
    """``dicom_listener_processes``, with 0 meaning one per CPU core (at most 8); 1 for plain pynetdicom."""
    if s.dicom_plain_pynetdicom:
        return 1  # the pool hands connections over through the seam plain pynetdicom avoids
    if s.dicom_listener_processes:
        return s.dicom_listener_processes
    # The cores this process may run on (a container's CPU set), where the OS can tell.
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, min(cores, MAX_AUTO_PROCESSES))


def build_listener(s: Settings, sessions: sessionmaker[Session]) -> Listener:
    """A listener serving in this process, counting into the metrics."""
    handler = TimedStoreHandler(data_dir=Path(s.data_dir).resolve(), sessions=sessions, observe=metrics.record_store,
                                observe_seconds=metrics.DICOM_STORE_SECONDS.observe)
    return Listener(
        listener_config(s), handler=handler,
        on_association=lambda result: metrics.DICOM_ASSOCIATIONS.labels(result=result).inc(),
        on_refusal=lambda reason: metrics.DICOM_REFUSALS.labels(reason=reason).inc(),
    )


@dataclasses.dataclass
class TimedStoreHandler(StoreHandler):
    """The C-STORE handler that also reports how long each request took to answer (its latency)."""

    observe_seconds: Callable[[float], None] = _no_timing

    def __call__(self, event) -> int:
        started = time.perf_counter()
        try:
            return super().__call__(event)
        finally:
            self.observe_seconds(time.perf_counter() - started)


def build_for_serve(s: Settings, sessions: sessionmaker[Session], *, config_file: str | None) -> Listener | ListenerPool:
    """What ``serve`` starts: one in-process listener, or a pool of member processes."""
    processes = listener_processes(s)
    if processes == 1:
        return build_listener(s, sessions)

    def member_command(fd: int) -> list[str]:
        return [sys.executable, "-m", "radtriage.listener_member", "--channel-fd", str(fd),
                *(["--config", config_file] if config_file else [])]

    return ListenerPool(listener_config(s), processes=processes, member_command=member_command)
