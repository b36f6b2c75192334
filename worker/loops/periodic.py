"""A loop's rounds on a timer, or at once when another loop hands it work.

``serve`` runs each loop in its own thread. A loop that is fed by another (the outbox relay
by the assembler) is woken as soon as there is work instead of finding it on its next tick,
so a completed study reaches the broker in milliseconds rather than up to a poll interval
later; the timer still runs every round that a wake-up could miss (rows written by another
process, a broker that was down).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from worker.tasks.failures import where

log = logging.getLogger(__name__)


class Wakeup:
    """A flag one loop raises for another: "there is work for you now"."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def __call__(self) -> None:
        """Wake the loop (idempotent; wake-ups before its next round merge into one)."""
        self._event.set()

    def wait(self, seconds: float) -> None:
        """Sleep up to ``seconds``, less when woken; a wake-up is consumed by the round it starts."""
        self._event.wait(seconds)
        self._event.clear()


def run_every(name: str, seconds: float, step: Callable[[], object], *, stop: threading.Event,
              wakeup: Wakeup | None = None) -> None:
    """Run ``step`` every ``seconds`` (or when ``wakeup`` fires) until ``stop``; a failed round
    is logged, not fatal. Meant as a thread's target."""
    while not stop.is_set():
        try:
            step()
        except Exception as exc:  # noqa: BLE001  one failed round must not end the loop
            log.error("%s round failed (%s)", name, where(exc))
        if wakeup is None:
            stop.wait(seconds)
        else:
            wakeup.wait(seconds)  # a stop is then seen within one interval
