"""The outbox relay keeps every message through a broker outage and publishes each once.
"""

from __future__ import annotations

import base64
import dataclasses
import json

from common import Queue
from db import outbox
from db.models import OutboxMessage
from tests.factories import radiograph
from tests.integration.worker_support import (
    complete_all,
    count,
    ingest,
    worker_context,
)
from worker.loops import OutboxRelay
from worker.tasks import BrokerConfig, create_app


def published(broker: BrokerConfig) -> list[tuple[str, list]]:
    """(task name, args) of each message the embedded broker holds."""
    found = []
    for path in sorted((broker.folder / "queue").glob("*.msg")):
        message = json.loads(path.read_text())
        args = json.loads(base64.b64decode(message["body"]))[0]
        found.append((message["headers"]["task"], args))
    return found


def test_relay_keeps_messages_through_a_broker_outage(tmp_path) -> None:
    ctx = worker_context(tmp_path)
    for seed in range(3):
        ingest(ctx, radiograph(seed=seed))
    study_ids = complete_all(ctx)
    assert len(study_ids) == 3

    down = create_app(dataclasses.replace(ctx.config.broker, url="redis://127.0.0.1:1/0"))
    relay = OutboxRelay(app=down, sessions=ctx.sessions)
    assert relay.run_once() == 0
    assert relay.broker_ok is False
    assert count(ctx.sessions, OutboxMessage, OutboxMessage.sent_at.is_not(None)) == 0
    assert count(ctx.sessions, OutboxMessage) == 3

    batches: list[int] = []
    relay = OutboxRelay(app=create_app(ctx.config.broker), sessions=ctx.sessions, on_published=batches.append)
    assert relay.run_once() == 3
    assert relay.broker_ok is True
    with ctx.sessions() as session:
        assert outbox.count_pending(session) == 0
    assert sorted(published(ctx.config.broker)) == sorted((Queue.TRIAGE.task_name, [study_id, 1]) for study_id in study_ids)

    assert relay.run_once() == 0  # nothing new: nothing published twice
    assert len(published(ctx.config.broker)) == 3
    assert batches == [3]
