"""The audit trail: a row per action, committed with it or not at all, printed by ``radtriage audit``."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json

import pytest
from click.testing import CliRunner

from db.audit import AuditAction, entries_since, record
from db.models import utcnow
from radtriage.cli import main
from radtriage.cli_audit import parse_since


def test_a_row_commits_with_its_action_or_not_at_all(sessions):
    with sessions.begin() as session:
        record(session, user="alice", action=AuditAction.CLAIM, study_id=7, address="10.1.2.3")
    with pytest.raises(RuntimeError), sessions.begin() as session:
        record(session, user="alice", action="read", study_id=7, address="10.1.2.3")
        raise RuntimeError("the action failed")
    with sessions() as session:
        rows = entries_since(session, since=utcnow() - dt.timedelta(minutes=1))
    assert [(r.user, r.action, r.study_id, r.address) for r in rows] == [("alice", AuditAction.CLAIM, 7, "10.1.2.3")]


def test_unknown_action_or_nobody_is_refused(sqlite_sessions):
    with sqlite_sessions() as session:
        with pytest.raises(ValueError):
            record(session, user="alice", action="delete")
        with pytest.raises(ValueError, match="who"):
            record(session, user="", action=AuditAction.VIEW)


def test_radtriage_audit_prints_csv_and_json_since(database_url, sessions, monkeypatch):
    now = utcnow()
    with sessions.begin() as session:
        record(session, user="old", action=AuditAction.VIEW, study_id=1, now=now - dt.timedelta(days=3))
        record(session, user="alice", action=AuditAction.VIEW, study_id=2, address="10.0.0.5", now=now)
        record(session, user="bob", action=AuditAction.EXPORT, study_id=2, detail="csv", now=now)
    monkeypatch.setenv("RADTRIAGE_DATABASE_URL", database_url)
    runner = CliRunner()

    as_csv = runner.invoke(main, ["audit", "--since", "1d"])
    assert as_csv.exit_code == 0, as_csv.output
    rows = list(csv.DictReader(io.StringIO(as_csv.stdout)))
    assert [(r["user"], r["action"], r["study_id"], r["address"], r["detail"]) for r in rows] == [
        ("alice", "view", "2", "10.0.0.5", ""), ("bob", "export", "2", "", "csv")]
    assert dt.datetime.fromisoformat(rows[0]["at"]).tzinfo is not None

    as_json = runner.invoke(main, ["audit", "--since", (now - dt.timedelta(days=4)).isoformat(), "--format", "json"])
    assert as_json.exit_code == 0, as_json.output
    assert [(r["user"], r["study_id"]) for r in json.loads(as_json.stdout)] == [("old", 1), ("alice", 2), ("bob", 2)]

    bad = runner.invoke(main, ["audit", "--since", "last tuesday"])
    assert bad.exit_code == 2 and "1h" in bad.output


def test_since_accepts_ages_and_iso_times():
    now = dt.datetime(2025, 1, 10, 12, tzinfo=dt.UTC)
    assert parse_since("1h", now) == now - dt.timedelta(hours=1)
    assert parse_since("7d", now) == now - dt.timedelta(days=7)
    assert parse_since("2025-01-01T00:00:00", now) == dt.datetime(2025, 1, 1, tzinfo=dt.UTC)
    assert parse_since("2025-01-01T01:00:00+01:00", now) == dt.datetime(2025, 1, 1, tzinfo=dt.UTC)
