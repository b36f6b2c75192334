"""The assembler hands a completed study to the outbox relay at once, not on the relay's next tick."""

from __future__ import annotations

import threading
import time

from tests.factories import radiograph
from tests.integration.worker_support import ingest, worker_context
from worker.loops import Assembler, OutboxRelay
from worker.loops.periodic import Wakeup, run_every
from worker.tasks import create_app

AN_HOUR = 3600.0


def _wait_until(predicate, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return False


def _messages(ctx) -> int:
    return len(list((ctx.config.broker.folder / "queue").glob("*.msg")))


def test_a_completed_study_reaches_the_broker_without_waiting_for_the_relays_timer(tmp_path):
    ctx = worker_context(tmp_path)
    pa = radiograph(view="PA", seed=1)
    ingest(ctx, pa)
    ingest(ctx, radiograph(view="LL", seed=2, study_uid=str(pa.StudyInstanceUID)))
    relay = OutboxRelay(app=create_app(ctx.config.broker), sessions=ctx.sessions)
    wakeup, stop = Wakeup(), threading.Event()
    loop = threading.Thread(target=run_every, args=("outbox-relay", AN_HOUR, relay.run_once),
                            kwargs={"stop": stop, "wakeup": wakeup}, daemon=True)
    loop.start()
    try:
        assert _wait_until(lambda: relay.broker_ok is True)  # its first round found nothing; next tick in an hour
        assert _messages(ctx) == 0
        # Frontal + lateral with no grace: complete now, and the relay is woken for it.
        assembler = Assembler(sessions=ctx.sessions, stable_seconds=AN_HOUR, grace_seconds=0.0, wake=wakeup)
        assert len(assembler.run_once()) == 1
        assert _wait_until(lambda: _messages(ctx) == 1), "the relay waited for its timer"
    finally:
        stop.set()
        wakeup()
        loop.join(10)
    assert not loop.is_alive()


def test_a_failing_round_does_not_end_the_loop_and_wake_ups_merge():
    rounds: list[int] = []
    ran_again = threading.Event()

    def step() -> None:
        rounds.append(len(rounds))
        if len(rounds) == 1:
            raise RuntimeError("broken round")
        ran_again.set()

    wakeup, stop = Wakeup(), threading.Event()
    loop = threading.Thread(target=run_every, args=("test", AN_HOUR, step), kwargs={"stop": stop, "wakeup": wakeup},
                            daemon=True)
    loop.start()
    assert _wait_until(lambda: len(rounds) == 1)
    wakeup()
    wakeup()  # two wake-ups before the round: one round
    assert ran_again.wait(30)
    time.sleep(0.2)
    assert len(rounds) == 2
    stop.set()
    wakeup()
    loop.join(10)
    assert not loop.is_alive()
