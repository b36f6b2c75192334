"""Webhook destinations: a signed JSON POST per delivery, for sites that glue their own systems.

The signature follows Stripe's scheme, so receivers can reuse what they know: header
``X-Radtriage-Signature: t=<unix seconds>,v1=<hex>`` where ``v1`` is
``HMAC-SHA256(secret, "<t>.<body>")`` over the exact body bytes. A receiver recomputes it,
compares in constant time and rejects a ``t`` older than a few minutes (replays). Each attempt
is signed afresh; ``X-Radtriage-Delivery`` (the control id) stays the same across retries so
receivers can deduplicate. The body carries no patient demographics: the study is named by
its Study Instance UID, accession and order numbers. See docs/integration.md.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import hmac
import json
import time
from collections.abc import Callable, Mapping
from typing import Any

import httpx

from common import DISCLAIMER, Priority
from worker.deliveries.http_client import HttpSender, check_priority_map, error_outcome, status_outcome
from worker.deliveries.notice import Notice, Outcome

__all__ = ["DELIVERY_HEADER", "SCHEMA", "SIGNATURE_HEADER", "WebhookConfig", "WebhookSender", "payload", "sign"]

SIGNATURE_HEADER = "X-Radtriage-Signature"
DELIVERY_HEADER = "X-Radtriage-Delivery"
SCHEMA = "radtriage.delivery.v1"  # the body's shape; a change that breaks receivers gets a new name
_RESERVED = {SIGNATURE_HEADER.lower(), DELIVERY_HEADER.lower(), "content-type", "content-length", "host"}


@dataclasses.dataclass(frozen=True, slots=True)
class WebhookConfig:
    """One webhook destination.

    Parameters
    ----------
    url : str
        Where the JSON is POSTed (http or https).
    secret : str
        The shared HMAC key; the receiver holds the same.
    timeout : float
        Seconds for connecting and for the answer; past it the delivery is retried.
    headers : mapping
        Extra headers sent with every request (e.g. an API key the receiver's gateway wants).
    priority_map : mapping
        ``common.Priority`` value → the site's code, sent as ``priority.code``; default: the value itself.
    ca_bundle, client_cert, client_key : str, optional
        PEM files: CAs the server's certificate must chain to; a client certificate and key (mutual TLS).

    Raises
    ------
    ValueError
        A non-http(s) URL, an empty secret, a header we set ourselves, or a mapping key that
        is not a priority.
    """

    url: str
    secret: str = dataclasses.field(repr=False)
    timeout: float = 10.0
    headers: Mapping[str, str] = dataclasses.field(default_factory=dict)
    priority_map: Mapping[str, str] = dataclasses.field(default_factory=dict)
    ca_bundle: str | None = None
    client_cert: str | None = None
    client_key: str | None = None

    def __post_init__(self) -> None:
        if not self.url.startswith(("https://", "http://")):
            raise ValueError("a webhook url must be an http(s) URL")
        if not self.secret:
            raise ValueError("a webhook needs a secret to sign with")
        if taken := sorted(h for h in self.headers if h.lower() in _RESERVED):
            raise ValueError(f"webhook headers may not set {', '.join(taken)}")
        if bool(self.client_cert) != bool(self.client_key):
            raise ValueError("mutual TLS needs both client_cert and client_key")
        if self.timeout <= 0:
            raise ValueError("a webhook timeout must be positive")
        check_priority_map(self.priority_map, allowed=None, what="priority code")

    def code(self, priority: Priority | None) -> str | None:
        return None if priority is None else self.priority_map.get(priority.value, priority.value)


def sign(secret: str, body: bytes, timestamp: int) -> str:
    """The ``X-Radtriage-Signature`` value for ``body`` sent at ``timestamp`` (unix seconds)."""
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def _time(value: dt.datetime | None) -> str | None:
    if value is None:
        return None
    return (value if value.tzinfo else value.replace(tzinfo=dt.UTC)).isoformat()


def payload(notice: Notice, config: WebhookConfig) -> dict[str, Any]:
    """The JSON object sent for ``notice`` (see docs/integration.md for each field)."""
    draft = None
    if notice.draft_findings is not None or notice.draft_impression is not None:
        draft = {"unverified": True, "disclaimer": notice.disclaimer or DISCLAIMER,
                 "findings": notice.draft_findings, "impression": notice.draft_impression, "model": notice.draft_model}
    return {
        "schema": SCHEMA,
        "control_id": notice.control_id,
        "content": notice.content.value,
        "created_at": _time(notice.created_at),
        "study": {
            "id": notice.study_id,
            "study_instance_uid": notice.study_instance_uid,
            "accession_number": notice.accession_number,
            "placer_order_number": notice.placer_order_number,
            "filler_order_number": notice.filler_order_number,
            "requested_procedure_id": notice.requested_procedure_id,
            "study_datetime": _time(notice.study_datetime),
        },
        "priority": {
            "value": notice.priority.value,
            "code": config.code(notice.priority),
            "ordered": notice.ordered_priority.value,
            "previous": notice.previous_priority.value if notice.previous_priority else None,
            "escalated_from": notice.escalated_from.value if notice.escalated_from else None,
        },
        "urgency_score": notice.urgency_score,
        "reasons": list(notice.reasons),
        "findings": [{"name": f.name, "score": f.score, "kind": f.kind, "threshold": f.threshold,
                      "positive": f.positive} for f in notice.findings],
        "draft": draft,
        "disclaimer": notice.disclaimer or DISCLAIMER,
    }


class WebhookSender(HttpSender):
    """POSTs notices to one webhook; never raises for the network or the peer."""

    def __init__(self, config: WebhookConfig, *, client: httpx.Client | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        super().__init__(timeout=config.timeout, ca_bundle=config.ca_bundle, client_cert=config.client_cert,
                         client_key=config.client_key, headers=config.headers, client=client)
        self.config = config
        self._clock = clock

    def send(self, notice: Notice) -> Outcome:
        body = json.dumps(payload(notice, self.config), separators=(",", ":"), ensure_ascii=False).encode()
        headers = {"Content-Type": "application/json", DELIVERY_HEADER: notice.control_id,
                   SIGNATURE_HEADER: sign(self.config.secret, body, int(self._clock()))}
        try:
            response = self._http().post(self.config.url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            return error_outcome(exc, "POST webhook")
        except OSError as exc:  # certificate files unreadable: the operator must fix the configuration
            return Outcome("retry", f"POST webhook: TLS files unreadable ({type(exc).__name__})")
        return status_outcome(response, "POST webhook")
