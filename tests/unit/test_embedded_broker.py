"""The embedded broker never shows a polling worker a half-written message."""

from __future__ import annotations

import threading

import pytest
from kombu.transport import filesystem

import worker.tasks.embedded_broker as embedded
from worker.tasks import BrokerConfig, create_app


def embedded_app(folder):
    return create_app(BrokerConfig(url=None, folder=folder / "broker", key_prefix=""))


def publish(app, payload) -> None:
    with app.connection_for_write() as connection:
        app.amqp.Producer(connection).publish(payload, routing_key="triage", exchange="")


@pytest.fixture
def paused_encoding(monkeypatch):
    """Holds a publisher inside the encoding of its message until released."""
    entered, release = threading.Event(), threading.Event()
    real = embedded.str_to_bytes

    def slow(value):
        entered.set()
        release.wait(10)
        return real(value)

    monkeypatch.setattr(embedded, "str_to_bytes", slow)
    monkeypatch.setattr(filesystem, "str_to_bytes", slow)
    return entered, release


def test_a_message_appears_in_the_queue_only_when_whole(tmp_path, paused_encoding):
    entered, release = paused_encoding
    app = embedded_app(tmp_path)
    queue_dir = tmp_path / "broker" / "queue"
    publisher = threading.Thread(target=publish, args=(app, {"study": 1}))
    publisher.start()
    try:
        assert entered.wait(10)
        # kombu's own transport has created the (empty) file by now; ours has not.
        assert list(queue_dir.glob("*.msg")) == []
    finally:
        release.set()
        publisher.join()
    assert len(list(queue_dir.glob("*.msg"))) == 1
    assert not list((tmp_path / "broker" / "staging").iterdir())


def test_messages_are_consumed_whole_and_all(tmp_path):
    app = embedded_app(tmp_path)
    for i in range(50):
        publish(app, {"n": i, "pad": "x" * 20000})
    with app.connection_for_read() as connection:
        queue = connection.SimpleQueue("triage", no_ack=True)
        received = [queue.get(timeout=1).payload["n"] for _ in range(50)]
        queue.close()
    assert sorted(received) == list(range(50))
