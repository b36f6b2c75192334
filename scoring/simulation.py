"""A discrete-event simulation of a chest X-ray reading room: studies arrive, the scorer raises
some, readers take the next study in the worklist's reading order (``common.reading_order``,
the same function the worklist uses) and read it. Pure: numbers in, arrays out.

Time is in minutes from the start of day 0. The patients (arrivals, findings, the scorer's call,
reading times) are drawn once per trial by :func:`draw_patients` and replayed under every policy,
so policies are compared on the same patients (common random numbers).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import heapq

import numpy as np

from common.priority import Priority
from common.reading_order import Waits, effective_priority, reading_key
from scoring.simulation_patients import Department, Patients

__all__ = ["NO_ESCALATION", "Outcome", "ReadingPolicy", "run"]

NO_ESCALATION = Waits(None, None)
_EPOCH = dt.datetime(2000, 1, 3)  # any fixed instant: the order only compares received times
_MINUTE = dt.timedelta(minutes=1)
_WAITING, _READING, _DONE = 1, 2, 3
_ARRIVE, _ESCALATE, _FINISH, _SHIFT, _SAMPLE = range(5)  # at equal times, in this order


class ReadingPolicy(enum.StrEnum):
    """How readers choose the next study."""

    FIFO = "fifo"  # in order of arrival, priorities ignored
    TRIAGE = "triage"  # the reading order, without escalation for waiting
    ESCALATION = "escalation"  # the reading order with maximum-wait escalation


@dataclasses.dataclass(frozen=True, slots=True)
class Outcome:
    """What happened to each patient under one policy (arrays indexed like :class:`Patients`)."""

    arrival: np.ndarray  # minute the study arrived
    start: np.ndarray  # minute a reader first opened the study
    finish: np.ndarray  # minute its read was complete
    shown_rank: np.ndarray  # rank of the effective priority shown when it was first opened
    escalated: np.ndarray  # True: waiting had raised it when it was first opened
    read_order: np.ndarray  # patient indices in the order they were first opened
    listed: int  # studies on the list, summed over the samples taken in working hours
    listed_stat: int  # of those, shown STAT because the priority is STAT
    listed_stat_escalated: int  # of those, shown STAT only because waiting escalated them

    @property
    def wait(self) -> np.ndarray:
        """Minutes from arrival until a reader first opened the study."""
        return self.start - self.arrival

    @property
    def turnaround(self) -> np.ndarray:
        """Minutes from arrival until the read was complete."""
        return self.finish - self.arrival


def run(patients: Patients, department: Department, policy: ReadingPolicy | str,
        waits: Waits = NO_ESCALATION, *, sample_minutes: float = 15.0) -> Outcome:
    """Simulate one policy on ``patients`` until every study is read.

    ``waits`` applies to :attr:`ReadingPolicy.ESCALATION` only. With ``department.preemptive``,
    a study whose effective priority is strictly higher than one being read interrupts it (the
    interrupted read resumes later where it stopped); a study never interrupts one of its own
    class, and FIFO never interrupts.
    """
    return _Room(patients, department, ReadingPolicy(policy), waits, sample_minutes).run()


class _Room:
    def __init__(self, patients: Patients, department: Department, policy: ReadingPolicy, waits: Waits,
                 sample_minutes: float) -> None:
        self.p, self.d, self.policy = patients, department, policy
        self.waits = waits if policy is ReadingPolicy.ESCALATION else NO_ESCALATION
        self.sample_minutes = sample_minutes
        n = len(patients.arrival)
        self.base = [Priority.of_rank(int(r)) for r in patients.priority_rank]
        self.arrival = patients.arrival.tolist()
        self.score = patients.score.tolist()
        self.remaining = patients.reading.tolist()
        self.received = [_EPOCH + a * _MINUTE for a in self.arrival]
        self.state = [0] * n
        self.version = [0] * n
        self.start = np.full(n, np.nan)
        self.finish = np.full(n, np.nan)
        self.shown_rank = np.zeros(n, dtype=np.int8)
        self.escalated = np.zeros(n, dtype=bool)
        self.order: list[int] = []
        self.queue: list[tuple] = []
        self.events: list[tuple] = []
        self.seq = 0
        # per reader: None when idle, else [study, minute started, version of its finish event]
        self.readers: list[list | None] = [None] * department.readers
        self.reader_version = [0] * department.readers
        self.listed: set[int] = set()
        self.samples = [0, 0, 0]
        self.done = 0

    # -- events ---------------------------------------------------------------------------
    def push(self, time: float, kind: int, payload: int = 0, version: int = 0) -> None:
        self.seq += 1
        heapq.heappush(self.events, (time, kind, self.seq, payload, version))

    def run(self) -> Outcome:
        n = len(self.arrival)
        for i, a in enumerate(self.arrival):
            self.push(a, _ARRIVE, i)
        self.push(self.d.next_shift_start(0.0), _SHIFT)
        self.push(0.0, _SAMPLE)
        while self.done < n:
            now, kind, _, payload, version = heapq.heappop(self.events)
            if kind == _ARRIVE:
                self.arrive(now, payload)
            elif kind == _ESCALATE:
                if self.state[payload] == _WAITING:
                    self.enqueue(now, payload)
                    self.preempt(now)
            elif kind == _FINISH:
                self.finished(now, payload, version)
            elif kind == _SHIFT:
                self.dispatch(now)
                self.push(self.d.next_shift_start(now + 1.0), _SHIFT)
            else:
                self.sample(now)
                self.push(now + self.sample_minutes, _SAMPLE)
        return Outcome(self.p.arrival, self.start, self.finish, self.shown_rank, self.escalated, np.array(self.order, dtype=np.int64),
                       *self.samples)

    def arrive(self, now: float, i: int) -> None:
        self.listed.add(i)
        for boundary, _ in self.waits.boundaries(self.base[i]):
            self.push(self.arrival[i] + boundary / _MINUTE, _ESCALATE, i)
        self.enqueue(now, i)
        self.dispatch(now)
        self.preempt(now)

    def finished(self, now: float, reader: int, version: int) -> None:
        if version != self.reader_version[reader]:
            return  # this read was interrupted; its finish was moved
        i = self.readers[reader][0]
        self.readers[reader] = None
        self.state[i] = _DONE
        self.finish[i] = now
        self.listed.discard(i)
        self.done += 1
        self.dispatch(now)

    # -- the worklist -----------------------------------------------------------------------
    def shown(self, now: float, i: int):
        return effective_priority(self.base[i], (now - self.arrival[i]) * _MINUTE, self.waits)

    def enqueue(self, now: float, i: int) -> None:
        self.state[i] = _WAITING
        self.version[i] += 1
        if self.policy is ReadingPolicy.FIFO:
            key = (self.arrival[i], i)
        else:
            key = reading_key(self.shown(now, i).priority, self.score[i], self.received[i], i)
        heapq.heappush(self.queue, (key, self.version[i], i))

    def head(self) -> tuple | None:
        while self.queue:
            _, version, i = self.queue[0]
            if self.state[i] == _WAITING and version == self.version[i]:
                return self.queue[0]
            heapq.heappop(self.queue)  # left the queue, or re-filed under a newer key
        return None

    def dispatch(self, now: float) -> None:
        if not self.d.reading_at(now):
            return
        for reader, busy in enumerate(self.readers):
            if busy is None and self.head() is not None:
                self.begin(now, reader, heapq.heappop(self.queue)[2])

    def begin(self, now: float, reader: int, i: int) -> None:
        if np.isnan(self.start[i]):
            shown = self.shown(now, i)
            self.start[i] = now
            self.shown_rank[i] = shown.priority.rank
            self.escalated[i] = shown.escalated
            self.order.append(i)
        self.state[i] = _READING
        self.reader_version[reader] += 1
        self.readers[reader] = [i, now, self.reader_version[reader]]
        self.push(now + self.remaining[i], _FINISH, reader, self.reader_version[reader])

    def preempt(self, now: float) -> None:
        if not self.d.preemptive or self.policy is ReadingPolicy.FIFO or not self.d.reading_at(now):
            return
        while (head := self.head()) is not None:
            head_rank = -head[0][0]  # reading_key starts with the negated rank
            busy = [(self.shown(now, r[0]).priority.rank, -r[1], k) for k, r in enumerate(self.readers) if r]
            if len(busy) < len(self.readers):
                return  # an idle reader outside dispatch: nothing to interrupt
            rank, _, reader = min(busy)  # the least urgent read; among equals the latest started
            if head_rank <= rank:
                return
            i, started, _ = self.readers[reader]
            self.remaining[i] -= now - started
            self.reader_version[reader] += 1  # its pending finish no longer counts
            self.readers[reader] = None
            self.enqueue(now, i)
            self.begin(now, reader, heapq.heappop(self.queue)[2])

    def sample(self, now: float) -> None:
        if not self.d.reading_at(now) or now < self.d.warmup_minutes:
            return
        for i in self.listed:
            shown = self.shown(now, i)
            self.samples[0] += 1
            if shown.priority is Priority.STAT:
                self.samples[2 if shown.escalated else 1] += 1
