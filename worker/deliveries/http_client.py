"""What the HTTP destinations (FHIR, webhook) share: one httpx client per destination with its
TLS (CA bundle, client certificate for mutual TLS), how an HTTP answer or a network error
becomes a delivery :class:`~worker.deliveries.notice.Outcome`, and the check of a priority map.

Retried: timeouts, connection errors, 408, 409, 412, 425, 429 and every 5xx (the peer may
accept the same request later). Refused for good (dead letter): every other answer that is
not 2xx, e.g. 400, 401, 403, 404, 422, a redirect (configure the final URL). Details name the
status and the request's kind, never a body: a peer may echo patient data back.
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping

import httpx

from common import Priority
from worker.deliveries.notice import Outcome

__all__ = [
    "REPLY_CHARACTERS", "RETRIED_STATUSES", "HttpSender", "check_priority_map", "error_outcome", "make_client",
    "reply_text", "status_outcome",
]

# Conflicts and throttling pass; so does anything the server says went wrong on its side (5xx).
RETRIED_STATUSES = frozenset({408, 409, 412, 425, 429})
REPLY_CHARACTERS = 2000  # of a peer's answer kept for `radtriage deliveries test` (never logged)


def make_client(*, timeout: float, ca_bundle: str | None = None, client_cert: str | None = None,
                client_key: str | None = None, headers: Mapping[str, str] | None = None) -> httpx.Client:
    """An httpx client verifying the server against ``ca_bundle`` (else the system's CAs) and
    presenting ``client_cert``/``client_key`` when given (mutual TLS).

    Raises
    ------
    OSError, ssl.SSLError
        A certificate, key or CA file cannot be read.
    """
    context = ssl.create_default_context(cafile=ca_bundle)
    if client_cert:
        context.load_cert_chain(client_cert, client_key)
    # No redirects: a delivery goes where it is configured to, or is refused and shown.
    return httpx.Client(timeout=timeout, verify=context, headers=dict(headers or {}), follow_redirects=False)


class HttpSender:
    """What the HTTP senders share: their client, opened at the first send and kept (its
    connection pool) until :meth:`close`."""

    def __init__(self, *, timeout: float, ca_bundle: str | None, client_cert: str | None, client_key: str | None,
                 headers: Mapping[str, str], client: httpx.Client | None = None) -> None:
        self._client = client
        self._options = {"timeout": timeout, "ca_bundle": ca_bundle, "client_cert": client_cert,
                         "client_key": client_key, "headers": headers}

    def _http(self) -> httpx.Client:
        if self._client is None:
            self._client = make_client(**self._options)
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None


def reply_text(response: httpx.Response) -> str:
    """The start of the peer's answer, for the operator's eyes only."""
    return f"HTTP {response.status_code} {response.reason_phrase}\n{response.text[:REPLY_CHARACTERS]}".rstrip()


def status_outcome(response: httpx.Response, what: str) -> Outcome:
    """The outcome of ``response`` to the request ``what`` (e.g. "POST Task")."""
    status = response.status_code
    detail = f"{what}: HTTP {status}"
    if 200 <= status < 300:
        return Outcome("delivered", detail, reply_text(response))
    if status in RETRIED_STATUSES or status >= 500:
        return Outcome("retry", detail, reply_text(response))
    return Outcome("refused", detail, reply_text(response))


def error_outcome(error: httpx.HTTPError, what: str) -> Outcome:
    """A timeout or connection error: tried again later; the detail is the error's class only."""
    return Outcome("retry", f"{what}: {type(error).__name__}", str(error)[:REPLY_CHARACTERS] or None)


def check_priority_map(mapping: Mapping[str, str], *, allowed: tuple[str, ...] | None, what: str) -> None:
    """Keys must be ``common.Priority`` values; codes must be in ``allowed`` (any non-empty text when None).

    Raises
    ------
    ValueError
        A key or code is outside its vocabulary.
    """
    for key, code in mapping.items():
        if key not in {p.value for p in Priority}:
            raise ValueError(f"priority_map key {key!r} is not one of {', '.join(p.value for p in Priority)}")
        if not code or (allowed is not None and code not in allowed):
            raise ValueError(f"priority_map[{key!r}] = {code!r} is not a {what}"
                             + (f" ({', '.join(allowed)})" if allowed else ""))
