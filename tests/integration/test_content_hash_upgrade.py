"""Upgrading a database whose instances were hashed with SHA-256: rows keep it, copies are still duplicates."""

from __future__ import annotations

import datetime
import hashlib

from sqlalchemy import select, text

from db.ingest import IngestOutcome
from db.models import Instance
from db.session import make_engine, make_session_factory, migrate
from dicom.intake import identify, take_in
from tests.factories import radiograph, write


def test_rows_hashed_with_sha256_survive_the_upgrade_and_a_resent_copy_is_a_duplicate(tmp_path, database_url):
    engine = make_engine(database_url)
    migrate(engine, "0003")
    ds = radiograph()
    raw = write(ds, tmp_path / "in").read_bytes()
    new = identify(ds, str(ds.file_meta.TransferSyntaxUID))
    old_digest = hashlib.sha256(raw).hexdigest()
    now = datetime.datetime.now(datetime.timezone.utc)
    with engine.begin() as connection:  # as a listener before BLAKE3 recorded it
        study_id = connection.execute(text(
            "INSERT INTO studies (study_instance_uid, ordered_priority, priority, priority_rank, status, reasons, "
            "revision, received_at, last_instance_at) VALUES (:study, 'ROUTINE', 'ROUTINE', 2, 'receiving', '[]', 1, "
            ":now, :now) RETURNING id"), {"study": new.study_instance_uid, "now": now}).scalar_one()
        connection.execute(text(
            "INSERT INTO instances (study_id, series_instance_uid, sop_instance_uid, sop_class_uid, "
            "transfer_syntax_uid, path, sha256, size_bytes, received_at) VALUES (:study_id, :series, :sop, :cls, "
            ":ts, :path, :sha, :size, :now)"),
            {"study_id": study_id, "series": new.series_instance_uid, "sop": new.sop_instance_uid,
             "cls": new.sop_class_uid, "ts": new.transfer_syntax_uid, "path": f"objects/{old_digest}.dcm",
             "sha": old_digest, "size": len(raw), "now": now})
    migrate(engine)
    sessions = make_session_factory(engine)
    with sessions() as session:
        assert session.scalar(select(Instance.content_hash)) == f"sha256:{old_digest}"

    again = take_in(raw, new, data_dir=tmp_path / "data", sessions=sessions)
    assert again.outcome is IngestOutcome.DUPLICATE
    assert not list((tmp_path / "data" / "objects").rglob("*.dcm")), "the duplicate's new copy was left behind"

    changed = take_in(raw + b"\x00\x00", new, data_dir=tmp_path / "data", sessions=sessions)
    assert changed.outcome is not IngestOutcome.DUPLICATE
    with sessions() as session:
        hashes = sorted(session.scalars(select(Instance.content_hash)))
    assert [h.partition(":")[0] for h in hashes] == ["blake3", "sha256"]
    engine.dispose()
