"""Redis stopped 30 s, then PostgreSQL stopped 30 s, while studies keep arriving (private servers
on spare ports): images are refused 0xA700 while the database is down and nothing is stored then;
afterwards every study is triaged exactly once, none lost, none doubled."""

from __future__ import annotations

import time

import pytest

from tests.e2e.daemon import Daemon
from tests.reliability.harness import report
from tests.reliability.outages import (
    OUT_OF_RESOURCES,
    SUCCESS,
    PrivatePostgres,
    PrivateRedis,
    Records,
    blocking_policy,
    release_policy,
    store_one,
    stored_files,
    study,
    temporary_files,
    wait_final,
)

pytestmark = pytest.mark.reliability

OUTAGE = 30.0
EVERY = 3.0  # a study arrives every 3 s during an outage


def test_broker_and_database_outages(tmp_path, request):
    postgres, redis = PrivatePostgres(), PrivateRedis(tmp_path)
    postgres.start()
    redis.start()
    try:
        policy = blocking_policy(tmp_path)
        with Daemon(tmp_path / "run", RADTRIAGE_DATABASE_URL=postgres.url, RADTRIAGE_BROKER_URL=redis.url,
                    RADTRIAGE_POLICY_FILE=str(policy)) as daemon:
            figures = _outages(daemon, Records(daemon, postgres.url), postgres, redis, policy)
    finally:
        redis.stop()
        postgres.close()
    report(request, **figures)
    assert figures["lost"] == 0 and figures["duplicated"] == 0
    assert figures["refused_while_db_down"] == figures["sent_while_db_down"]
    assert figures["stored_while_db_down"] == 0
    assert figures["final_after_redis_back_s"] <= 30 and figures["final_after_db_back_s"] <= 30


def _outages(daemon: Daemon, records: Records, postgres: PrivatePostgres, redis: PrivateRedis, policy) -> dict:
    seed = iter(range(1, 1000))
    acked: set[str] = set()

    def send(ds) -> int | None:
        status = store_one(daemon.dicom_port, ds)
        if status == SUCCESS:
            acked.add(str(ds.StudyInstanceUID))
        return status

    # The worker blocks in its first triage, so the next studies' messages wait in Redis, and
    # Redis stopped without persistence loses them (and the blocked one's unacknowledged message).
    for _ in range(3):
        assert send(study(next(seed), 1)[0]) == SUCCESS
    daemon.wait_for(lambda: "triaging" in records.statuses().values(), 60, "the worker blocked mid-triage")
    time.sleep(1.0)  # the others' messages reach Redis
    queued_in_redis = list(records.statuses().values()).count("queued")
    redis.stop()
    release_policy(policy)
    during_redis = _keep_sending(lambda: send(study(next(seed), 1)[0]))
    assert set(during_redis) == {SUCCESS}, "the listener must take images while the broker is away"
    redis.start()
    final_after_redis = wait_final(records, set(acked), 120)

    files_before = stored_files(daemon.data_dir)
    postgres.stop()
    refused_studies = []

    def refused() -> int | None:
        ds = study(next(seed), 1)[0]
        refused_studies.append(ds)
        return send(ds)

    during_db = _keep_sending(refused)
    stored_during = len(stored_files(daemon.data_dir) - files_before) + len(temporary_files(daemon.data_dir))
    postgres.start()
    back = time.monotonic()
    for ds in refused_studies:  # the PACS sends again what was refused
        assert send(ds) == SUCCESS
    wait_final(records, set(acked), 120)
    final_after_db = time.monotonic() - back
    time.sleep(1.0)  # a second delivery, if any, gets its chance to write

    triaged, revisions = records.triaged(), records.revisions()
    return {
        "studies": len(acked),
        "queued_when_redis_stopped": queued_in_redis,
        "sent_while_redis_down": len(during_redis),
        "final_after_redis_back_s": final_after_redis,
        "sent_while_db_down": len(during_db),
        "refused_while_db_down": sum(status == OUT_OF_RESOURCES for status in during_db),
        "stored_while_db_down": stored_during,
        "final_after_db_back_s": final_after_db,
        "lost": sum(triaged.get(uid, 0) == 0 for uid in acked),
        "duplicated": sum(triaged.get(uid, 0) > revisions.get(uid, 1) for uid in acked),
    }


def _keep_sending(send) -> list[int | None]:
    statuses = []
    deadline = time.monotonic() + OUTAGE
    while time.monotonic() < deadline:
        started = time.monotonic()
        statuses.append(send())
        time.sleep(max(0.0, EVERY - (time.monotonic() - started)))
    return statuses
