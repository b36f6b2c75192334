"""Upgrading from the SR export loop to deliveries: a draft whose SR was still waiting is sent
by the DICOM SR destination the sr_destination settings make, once."""

from __future__ import annotations

import datetime

from sqlalchemy import select, text

from common import Backoff
from db.models import Delivery
from db.session import make_engine, make_session_factory, migrate
from tests.factories import radiograph, write
from tests.integration.test_sr_send import Pacs
from worker.deliveries.dicom_sr import DicomSrConfig, DicomSrSender
from worker.deliveries.dispatcher import DispatchConfig, Dispatcher


def test_an_sr_export_pending_at_the_upgrade_is_delivered_once(tmp_path, database_url) -> None:
    engine = make_engine(database_url)
    migrate(engine, "0007")
    data_dir = tmp_path / "data"
    ds = radiograph(seed=41)
    path = write(ds, data_dir / "objects")
    now = datetime.datetime.now(datetime.UTC)
    with engine.begin() as connection:  # a study drafted under the old export loop, its SR not yet sent
        study_id = connection.execute(text(
            "INSERT INTO studies (study_instance_uid, accession_number, ordered_priority, priority, priority_rank, "
            "status, reasons, revision, received_at, last_instance_at, state_changed_at, attempts) VALUES "
            "(:uid, 'ACC1', 'ROUTINE', 'URGENT', 1, 'triaged', '[]', 1, :now, :now, :now, 1) RETURNING id"),
            {"uid": str(ds.StudyInstanceUID), "now": now}).scalar_one()
        connection.execute(text(
            "INSERT INTO instances (study_id, series_instance_uid, sop_instance_uid, sop_class_uid, "
            "transfer_syntax_uid, path, content_hash, size_bytes, received_at, view) VALUES (:study, :series, :sop, "
            ":cls, :ts, :path, 'blake3:00', 1, :now, 'frontal')"),
            {"study": study_id, "series": str(ds.SeriesInstanceUID), "sop": str(ds.SOPInstanceUID),
             "cls": str(ds.SOPClassUID), "ts": str(ds.file_meta.TransferSyntaxUID),
             "path": str(path.relative_to(data_dir)), "now": now})
        connection.execute(text(
            "INSERT INTO drafts (study_id, revision, model_id, model_version, prompt_version, disclaimer, findings, "
            "impression, raw_text, prompt_tokens, new_tokens, seconds, batch_size, created_at, sr_status, "
            "sr_attempts) VALUES (:study, 1, 'medgemma', '1', 'v1', 'UNVERIFIED', 'No pneumothorax.', 'Normal.', "
            "'', 1, 1, 0.1, 1, :now, 'pending', 2)"), {"study": study_id, "now": now})
    migrate(engine)
    sessions = make_session_factory(engine)
    pacs = Pacs()
    try:
        sender = DicomSrSender(DicomSrConfig(host="127.0.0.1", port=pacs.port, called_ae="PACS",
                                             calling_ae="RADTRIAGE", data_dir=data_dir, timeout=5.0),
                               sessions=sessions)
        config = DispatchConfig(name="pacs-sr", backoff=Backoff(1.0, 2.0), data_dir=data_dir)
        dispatcher = Dispatcher(sessions=sessions, config=config, sender=sender)
        assert dispatcher.run_once() == 1
        assert dispatcher.run_once() == 0
        [sr] = pacs.received
    finally:
        pacs.close()
    assert sr.StudyInstanceUID == ds.StudyInstanceUID and sr.VerificationFlag == "UNVERIFIED"
    with sessions() as session:
        assert session.scalars(select(Delivery.status)).all() == ["sent"]
    engine.dispose()
