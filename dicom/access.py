"""Who may talk to the listener: called/calling AE titles, sender hosts, exposure and TLS.

The policy is decided once from the settings and checked for every association request
(A-ASSOCIATE-RQ) before any presentation context is negotiated.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import socket
import ssl
from collections.abc import Iterable
from pathlib import Path

from dicom.errors import AccessConfigError

__all__ = [
    "AccessPolicy", "AllowedPeer", "Refusal", "check_exposure", "client_tls_context", "is_loopback",
    "parse_allowed", "server_tls_context",
]


class Refusal:
    """Why an association was rejected; fixed strings, used as metric labels."""

    CALLED_AE = "called_ae"  # A-ASSOCIATE-RJ permanent, user, called AE title not recognised
    CALLING_AE = "calling_ae"  # A-ASSOCIATE-RJ permanent, user, calling AE title not recognised
    HOST = "host"  # same diagnostic: the title is known but not from this address


@dataclasses.dataclass(frozen=True, slots=True)
class AllowedPeer:
    """One entry of the calling-AE allow-list: ``TITLE``, ``TITLE@HOST`` or ``TITLE@NETWORK/BITS``."""

    ae_title: str
    host: str | None = None

    def __post_init__(self) -> None:
        if not 1 <= len(self.ae_title) <= 16 or "\\" in self.ae_title:
            raise AccessConfigError("an allowed AE title is 1-16 characters without a backslash")


@dataclasses.dataclass(frozen=True, slots=True)
class AccessPolicy:
    """The called AE title we answer to, and which callers we accept (empty: anyone)."""

    ae_title: str
    allowed: tuple[AllowedPeer, ...] = ()

    def refusal(self, *, called_ae: str, calling_ae: str, address: str) -> str | None:
        """None to accept, else the :class:`Refusal` reason.

        Parameters
        ----------
        called_ae, calling_ae : str
            From the A-ASSOCIATE-RQ, trailing spaces ignored.
        address : str
            The peer's IP address.
        """
        if called_ae.strip() != self.ae_title.strip():
            return Refusal.CALLED_AE
        if not self.allowed:
            return None
        titled = [p for p in self.allowed if p.ae_title == calling_ae.strip()]
        if not titled:
            return Refusal.CALLING_AE
        if any(p.host is None or _same_host(p.host, address) for p in titled):
            return None
        return Refusal.HOST


def parse_allowed(text: str | Iterable[str]) -> tuple[AllowedPeer, ...]:
    """Parse ``"PACS1@10.0.0.5, ORTHANC, MODALITY@ct1.example.org"`` into allow-list entries.

    Raises
    ------
    AccessConfigError
        An entry is not a valid AE title (1-16 characters, no backslash).
    """
    entries = text.split(",") if isinstance(text, str) else list(text)
    peers = []
    for entry in (e.strip() for e in entries):
        if not entry:
            continue
        title, _, host = entry.rpartition("@") if "@" in entry else (entry, "", "")
        peers.append(AllowedPeer(title.strip(), host.strip() or None))
    return tuple(peers)


def is_loopback(host: str) -> bool:
    """True when every address ``host`` resolves to is a loopback address."""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None)
    except OSError:
        return False
    return bool(infos) and all(ipaddress.ip_address(i[4][0]).is_loopback for i in infos)


def check_exposure(host: str, policy: AccessPolicy, *, allow_any: bool) -> None:
    """Refuse a listener that anyone on the network could push images to.

    Raises
    ------
    AccessConfigError
        ``host`` is not loopback, no calling AE allow-list is set and ``allow_any`` is off.
    """
    if is_loopback(host) or policy.allowed or allow_any:
        return
    raise AccessConfigError(
        f"the DICOM listener would accept any sender on {host}: set RADTRIAGE_DICOM_ALLOWED_AES "
        "(e.g. PACS@10.0.0.5) or, to accept anyone, RADTRIAGE_DICOM_ALLOW_ANY=1"
    )


def server_tls_context(*, cert: Path, key: Path, ca: Path | None = None,
                       require_client_cert: bool = False, stall_timeout: float | None = 60.0) -> ssl.SSLContext:
    """A TLS context for the listener (TLS 1.2 or newer).

    The handshake is deferred to the association's own thread, so a client that connects
    and stays silent cannot hold up the accept loop; a read that stalls for
    ``stall_timeout`` seconds ends the connection.

    Raises
    ------
    AccessConfigError
        A file is unreadable or not a certificate/key, or client certificates are
        required without a CA to check them against.
    """
    if require_client_cert and ca is None:
        raise AccessConfigError("requiring client certificates needs a CA file (RADTRIAGE_DICOM_TLS_CA)")
    context = _DeferredHandshakeContext(ssl.PROTOCOL_TLS_SERVER)
    context.stall_timeout = stall_timeout
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(certfile=cert, keyfile=key)
        if ca is not None:
            context.load_verify_locations(cafile=ca)
    except (OSError, ssl.SSLError) as exc:
        raise AccessConfigError(f"cannot load the listener's TLS files ({type(exc).__name__})") from exc
    if require_client_cert:
        context.verify_mode = ssl.CERT_REQUIRED
    elif ca is not None:
        context.verify_mode = ssl.CERT_OPTIONAL
    return context


def client_tls_context(*, ca: Path | None = None, cert: Path | None = None, key: Path | None = None,
                       check_hostname: bool = False) -> ssl.SSLContext:
    """A TLS context for an SCU: verifies the server against ``ca``; ``cert`` authenticates us.

    Without ``ca`` the system's trust store is used. Hostname checking is off by default
    because PACS certificates rarely name the address DICOM nodes are configured with.

    Raises
    ------
    AccessConfigError
        A file is unreadable or not a certificate/key.
    """
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(ca) if ca else None)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.check_hostname = check_hostname
    if cert is not None:
        try:
            context.load_cert_chain(certfile=cert, keyfile=key)
        except (OSError, ssl.SSLError) as exc:
            raise AccessConfigError(f"cannot load the client's TLS files ({type(exc).__name__})") from exc
    return context


class _DeferredHandshakeContext(ssl.SSLContext):
    # pynetdicom wraps each accepted socket in its accept loop; handshaking there would let
    # one silent client block every other sender. The first read, in the association's
    # thread, performs the handshake instead, and a peer stalling mid-record times out.
    stall_timeout: float | None = 60.0

    def wrap_socket(self, sock, server_side=False, do_handshake_on_connect=True, *args, **kwargs):
        sock.settimeout(self.stall_timeout)
        return super().wrap_socket(sock, server_side, False, *args, **kwargs)


def _same_host(allowed: str, address: str) -> bool:
    """``allowed`` is an address, a network (``10.0.0.0/24``) or a host name."""
    if allowed == address:
        return True
    try:
        if "/" in allowed:
            return ipaddress.ip_address(address) in ipaddress.ip_network(allowed, strict=False)
        return ipaddress.ip_address(address) in {
            ipaddress.ip_address(i[4][0]) for i in socket.getaddrinfo(allowed, None)
        }
    except (OSError, ValueError):
        return False
