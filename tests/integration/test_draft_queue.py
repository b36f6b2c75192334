"""The draft queue in the database: STAT, then URGENT, then the oldest; concurrent claims never
share a study.
"""

from __future__ import annotations

import random
import threading

from sqlalchemy import select, text

from common import DraftStatus, Priority
from db.assembly import complete_quiet_studies
from db.drafts import claim_batch
from db.ingest import record_instance
from db.models import Study, utcnow
from db.session import make_engine, make_session_factory, migrate
from db.triage import claim, record_result
from tests.integration.worker_support import (
    STABLE,
    draft_queued,
    new_instance,
    seconds,
    stages,
)


def test_draft_queue_serves_stat_then_urgent_then_the_oldest(sessions) -> None:
    base = utcnow() - seconds(6 * 3600)
    minutes = random.Random(5).sample(range(20), 20)  # arrival order differs from id order
    with sessions() as session:
        routine = {}
        for minute in minutes:
            routine[minute] = record_instance(session, new=new_instance(), now=base + seconds(60 * minute)).study_id
        for minute in sorted(minutes):  # each study's quiet timer runs out in its turn
            at = base + seconds(60 * minute + STABLE + 1)
            assert complete_quiet_studies(session, stable_seconds=STABLE, now=at) == [routine[minute]]
        for minute, study_id in routine.items():
            assert claim(session, study_id=study_id, revision=1, worker="t:1") is not None
            assert record_result(session, study_id=study_id, revision=1, priority=Priority.ROUTINE,
                                 urgency_score=0.5, reasons=[], scores=[], draft=True,
                                 now=base + seconds(3600 + minute))
        urgent = draft_queued(session, at=base + seconds(2 * 3600), priority=Priority.URGENT)
        stat = draft_queued(session, at=base + seconds(3 * 3600), priority=Priority.STAT)  # the newest

        order = [job.study_id for job in claim_batch(session, limit=1, worker="gpu:1")]
        order += [job.study_id for job in claim_batch(session, limit=1, worker="gpu:1")]
        order += [job.study_id for job in claim_batch(session, limit=5, worker="gpu:1")]
        order += [job.study_id for job in claim_batch(session, limit=100, worker="gpu:1")]
        assert claim_batch(session, limit=100, worker="gpu:1") == []
    oldest_first = [routine[minute] for minute in sorted(minutes)]
    assert order == [stat, urgent, *oldest_first]
    with sessions() as session:
        claimed = session.execute(select(Study.draft_status, Study.draft_claimed_by).where(Study.id.in_(order))).all()
    assert set(claimed) == {(DraftStatus.DRAFTING, "gpu:1")}
    assert all(len(stages(sessions, study_id, "drafting")) == 1 for study_id in (stat, urgent, oldest_first[0]))


def test_concurrent_draft_claims_never_share_a_study(postgres_url) -> None:
    engine = make_engine(postgres_url)
    migrate(engine)
    sessions = make_session_factory(engine)
    base = utcnow() - seconds(3600)
    with sessions() as session:
        queued = [draft_queued(session, at=base + seconds(i)) for i in range(15)]

    # A claim in flight holds the three oldest: another claim takes the next ones, without waiting.
    with sessions() as holder, sessions() as other:
        held = holder.scalars(select(Study.id).where(Study.draft_status == DraftStatus.QUEUED)
                              .order_by(Study.completed_at, Study.id).limit(3).with_for_update()).all()
        assert held == queued[:3]
        other.execute(text("SET LOCAL lock_timeout = '5s'"))  # fail, not hang, if it waits for the lock
        taken = [job.study_id for job in claim_batch(other, limit=3, worker="b:1")]
        holder.rollback()
    assert taken == queued[3:6]

    # Racing workers: every remaining study is claimed by exactly one of them.
    barrier, claimed, errors = threading.Barrier(4), [], []

    def worker(name: str) -> None:
        try:
            with sessions() as session:
                barrier.wait(timeout=10)
                while jobs := claim_batch(session, limit=2, worker=name):
                    claimed.extend(job.study_id for job in jobs)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(f"w:{n}",)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert errors == []
    assert sorted(claimed) == sorted(queued[:3] + queued[6:])
    engine.dispose()

