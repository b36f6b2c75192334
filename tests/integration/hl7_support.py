"""HL7 delivery test helpers: studies stored (with order numbers) and triaged with the real
intake and triage record, and a dispatcher on an HL7 sender."""

from __future__ import annotations

import datetime as dt
import io
from collections.abc import Callable

from pydicom import Dataset
from sqlalchemy import select

from common import DISCLAIMER, Backoff, Priority
from common.delivery import Content, DestinationKind
from db import drafts
from db.assembly import complete_quiet_studies
from db.deliveries import Route, sync_destinations
from db.models import Delivery, Study, utcnow
from db.triage import ScoreRecord, claim, record_result
from dicom.intake import identify, take_in
from tests.factories import radiograph
from worker.deliveries.dispatcher import DispatchConfig, Dispatcher, Finished
from worker.deliveries.hl7 import Hl7Config, Hl7Sender

SCORES = {"pneumothorax": 0.83, "pleural_effusion": 0.12}
CRITERIA = {"pneumothorax": {"kind": "zero-shot", "threshold": 0.6, "validated": True},
            "pleural_effusion": {"kind": "zero-shot", "threshold": 0.5, "validated": False}}


def routes(sessions, *pairs: tuple[str, frozenset[Content]]) -> None:
    with sessions() as session:
        sync_destinations(session, [Route(name, DestinationKind.HL7V2.value, receives) for name, receives in pairs])


def stored_study(sessions, data_dir, *, seed: int) -> tuple[int, Dataset]:
    """A study received (file stored, row committed) and complete, its order numbers in the
    Request Attributes Sequence as a modality copies them from the worklist."""
    ds = radiograph(seed=seed)
    ds.PatientName, ds.PatientBirthDate, ds.PatientSex = "DOE^JANE", "19700101", "F"
    ds.StudyDate, ds.StudyTime = "20261130", "091500"
    request = Dataset()
    request.RequestedProcedureID = f"RP-{seed}"
    request.PlacerOrderNumberImagingServiceRequest = f"PL-{seed}"
    request.FillerOrderNumberImagingServiceRequest = f"FI-{seed}"
    ds.RequestAttributesSequence = [request]
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    recorded = take_in(buffer.getvalue(), identify(ds, str(ds.file_meta.TransferSyntaxUID)), data_dir=data_dir,
                       sessions=sessions)
    with sessions() as session:
        complete_quiet_studies(session, stable_seconds=1, now=utcnow() + dt.timedelta(seconds=5))
    return recorded.study_id, ds


def triage(sessions, study_id: int, priority: Priority, *, draft: bool = False) -> None:
    with sessions() as session:
        assert claim(session, study_id=study_id, revision=1, worker="test:1") is not None
        assert record_result(session, study_id=study_id, revision=1, priority=priority, urgency_score=88.0,
                             reasons=["pneumothorax score 0.83 at or above 0.60"], draft=draft,
                             scores=[ScoreRecord("cxr-foundation", None, SCORES, criteria=CRITERIA)])


def drafted(sessions, study_id: int, findings: str) -> None:
    with sessions() as session:
        [job] = drafts.claim_batch(session, limit=1, worker="draft:1")
        assert job.study_id == study_id
        record = drafts.DraftRecord("google/medgemma-1.5-4b-it", "1", "v1", DISCLAIMER, findings, "Pneumothorax.",
                                    "", 10, 10, 0.1, 1)
        assert drafts.record_draft(session, study_id=study_id, revision=1, draft=record, export=False)


def dispatcher(sessions, data_dir, port: int, *, name: str = "ris", message_type: str = "OMI^O23",
               max_attempts: int | None = None, on_finished: Callable[[Finished], None] | None = None) -> Dispatcher:
    sender = Hl7Sender(Hl7Config(host="127.0.0.1", port=port, message_type=message_type, timeout=3.0,
                                 priority_map={"STAT": "S", "URGENT": "A", "ROUTINE": "R"}))
    config = DispatchConfig(name=name, backoff=Backoff(first=1.0, cap=2.0), data_dir=data_dir,
                            max_attempts=max_attempts)
    return Dispatcher(sessions=sessions, config=config, sender=sender, on_finished=on_finished)


def rows(sessions, study_id: int, destination: str = "ris") -> list[Delivery]:
    with sessions() as session:
        return list(session.scalars(select(Delivery).where(Delivery.study_id == study_id,
                                                           Delivery.destination == destination)
                                    .order_by(Delivery.seq)))


def session_accession(sessions, study_id: int) -> str:
    with sessions() as session:
        return session.get(Study, study_id).accession_number
