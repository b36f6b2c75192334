"""Keyset paging of the worklist, its filters and bad parameters, and read-only sessions that
never hold SQLite's write lock."""

from __future__ import annotations

import datetime as dt
import random
import threading
import time

import pytest
from sqlalchemy import text

from common import Priority, StudyStatus
from db.session import make_engine, make_session_factory, migrate
from db.worklist import BadCursor, BadWorklistQuery, Filters, page
from tests.conftest import sqlite_url
from tests.integration.reading_support import NOW, add

M = dt.timedelta(minutes=1)


def test_paging_over_1000_studies_lists_each_once_while_new_ones_arrive(sessions):
    rng = random.Random(7)
    with sessions() as session:
        original = [add(session, ordered=rng.choice(list(Priority)), ai=rng.choice([None, *Priority]),
                            urgency=rng.choice([None, 10.0, 50.0, round(rng.uniform(0, 100), 1)]),
                            waited=rng.randrange(0, 600) * M) for _ in range(1000)]
        session.commit()
        original = {s.study_instance_uid for s in original}
    seen, cursor, arrived = [], None, 0
    while True:
        with sessions() as session:
            result = page(session, now=NOW, cursor=cursor, limit=97)
            seen += [r.study_instance_uid for r in result.rows]
            for _ in range(10):  # new studies land anywhere in the order while a reader pages
                add(session, ordered=rng.choice(list(Priority)), urgency=rng.uniform(0, 100),
                    waited=rng.randrange(0, 600) * M)
                arrived += 1
            session.commit()
        cursor = result.next_cursor
        if cursor is None:
            break
    assert len(seen) == len(set(seen))  # nothing twice
    assert original <= set(seen)  # nothing that was there is skipped
    assert len(seen) <= 1000 + arrived


def test_filters_status_priority_and_accession_prefix(sessions):
    with sessions() as session:
        add(session, ordered=Priority.STAT, accession="CT100")
        add(session, ordered=Priority.ROUTINE, accession="CT200")
        add(session, ordered=Priority.ROUTINE, accession="XR100").status = StudyStatus.RECEIVING
        add(session, ordered=Priority.URGENT, accession="CT10")
        session.commit()

        def accessions(**kw):
            return [r.accession_number for r in page(session, now=NOW, filters=Filters(**kw)).rows]

        assert accessions(accession_prefix="CT1") == ["CT100", "CT10"]
        assert accessions(accession_prefix="CT10") == ["CT100", "CT10"]
        assert accessions(accession_prefix="ct") == []  # accession numbers match as stored
        assert accessions(priority=(Priority.ROUTINE,)) == ["CT200", "XR100"]
        assert accessions(status=(StudyStatus.RECEIVING,)) == ["XR100"]
        assert accessions(priority=(Priority.STAT, Priority.URGENT), accession_prefix="CT") == ["CT100", "CT10"]


@pytest.mark.parametrize("cursor", ["", "not base64!", "W10", "WyJhIiwxLDIsM10", "eyJhIjoxfQ"])
def test_a_bad_cursor_is_a_clear_error(sessions, cursor):
    with sessions() as session, pytest.raises(BadCursor, match="cursor"):
        page(session, now=NOW, cursor=cursor)


@pytest.mark.parametrize("kw, match", [({"limit": 0}, "limit"), ({"limit": 201}, "limit"),
                                       ({"filters": Filters(claimed="me")}, "user"),
                                       ({"filters": Filters(claimed="them")}, "claimed")])
def test_bad_parameters_are_clear_errors(sessions, kw, match):
    with sessions() as session, pytest.raises(BadWorklistQuery, match=match):
        page(session, now=NOW, **kw)


def test_a_read_only_session_does_not_block_a_writer_on_sqlite(tmp_path):
    engine = make_engine(sqlite_url(tmp_path))
    migrate(engine)
    writes, reads = make_session_factory(engine), make_session_factory(engine, readonly=True)
    try:
        with reads() as reader:
            page(reader, now=NOW)  # a read transaction is open from here on
            done = threading.Event()

            def write():
                with writes() as session:
                    session.execute(text("PRAGMA busy_timeout=2000"))
                    add(session)
                    session.commit()
                done.set()

            started = time.monotonic()
            writer = threading.Thread(target=write)
            writer.start()
            writer.join(10)
            assert done.is_set() and time.monotonic() - started < 1.5
            assert page(reader, now=NOW).rows == []  # the reader keeps its snapshot
        with reads() as reader:
            assert len(page(reader, now=NOW).rows) == 1
            add(reader)
            with pytest.raises(RuntimeError, match="read-only"):
                reader.flush()
    finally:
        engine.dispose()
