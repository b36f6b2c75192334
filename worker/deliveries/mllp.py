"""A minimal MLLP client: one HL7 v2 message out, its acknowledgement back, over TCP or TLS.

MLLP (HL7 v2 Minimal Lower Layer Protocol) frames each message as ``<VT> message <FS><CR>``.
One connection per message: a RIS that drops idle connections never costs a lost send, and
the dispatcher sends one message at a time per destination anyway.
"""

from __future__ import annotations

import socket
import ssl

START, END = b"\x0b", b"\x1c\x0d"
MAX_REPLY = 1 << 20  # an acknowledgement is a few hundred bytes; refuse to buffer a flood


class MllpError(OSError):
    """The peer closed the connection or broke the framing before a whole answer came."""


def frame(message: str, encoding: str = "utf-8") -> bytes:
    """The message (segments separated by CR) in its MLLP envelope."""
    return START + message.encode(encoding) + END


def exchange(message: str, *, host: str, port: int, timeout: float, tls: ssl.SSLContext | None = None,
             encoding: str = "utf-8") -> str:
    """Send ``message`` and return the peer's answer (the acknowledgement), unframed.

    Raises
    ------
    OSError
        Connection refused or reset, TLS refused (``ssl.SSLError``), a timeout
        (``TimeoutError``), or :class:`MllpError`.
    """
    with socket.create_connection((host, port), timeout=timeout) as raw:
        sock = tls.wrap_socket(raw, server_hostname=host) if tls is not None else raw
        try:
            sock.settimeout(timeout)
            sock.sendall(frame(message, encoding))
            return _read_frame(sock).decode(encoding, errors="replace")
        finally:
            if sock is not raw:
                sock.close()


def _read_frame(sock: socket.socket) -> bytes:
    buffer = b""
    while END not in buffer:
        chunk = sock.recv(65536)
        if not chunk:
            raise MllpError("the peer closed the connection before acknowledging")
        buffer += chunk
        if len(buffer) > MAX_REPLY:
            raise MllpError("the peer's answer exceeds 1 MiB")
    start = buffer.find(START)
    if start < 0:
        raise MllpError("the peer's answer is not MLLP-framed")
    return buffer[start + 1:buffer.index(END, start)]
