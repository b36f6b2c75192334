"""Notices for the sender tests: one full notice with recognisable patient data, so a test can
check that none of it leaks into an outcome's detail."""

from __future__ import annotations

import dataclasses
import datetime as dt

from common import DISCLAIMER, Priority
from common.delivery import Content
from db.scores import FindingScore
from worker.deliveries.notice import Notice

PATIENT_NAME, PATIENT_ID, ACCESSION = "DOE^JANE", "MRN-778899", "ACC-4711"
PATIENT_DATA = (PATIENT_NAME, "DOE", "JANE", PATIENT_ID, "19700101", ACCESSION)


def notice(content: Content = Content.PRIORITY, **changes) -> Notice:
    """A STAT notice (ordered ROUTINE) for study ``1.2.826.0.1.3680043.8.498.1`` with two scored findings."""
    base = Notice(
        delivery_id=41, control_id="rt-41-ab12", content=content, destination="ris", study_id=7,
        study_instance_uid="1.2.826.0.1.3680043.8.498.1", accession_number=ACCESSION, placer_order_number="PL-1",
        filler_order_number="FI-2", requested_procedure_id="RP-3", patient_id=PATIENT_ID, patient_name=PATIENT_NAME,
        patient_birth_date="19700101", patient_sex="F",
        study_datetime=dt.datetime(2026, 11, 30, 9, 15, tzinfo=dt.UTC),
        ordered_priority=Priority.ROUTINE, priority=Priority.STAT, previous_priority=Priority.ROUTINE,
        escalated_from=None, urgency_score=91.5, reasons=("pneumothorax score 0.83 at or above 0.60",),
        findings=(FindingScore("pneumothorax", 0.83, kind="zero-shot", threshold=0.6, validated=True),
                  FindingScore("pleural effusion", 0.12, kind="trained", threshold=0.5, validated=None)),
        draft_findings=None, draft_impression=None, draft_model=None, disclaimer=DISCLAIMER,
        created_at=dt.datetime(2026, 11, 30, 9, 20, tzinfo=dt.UTC),
    )
    if content is Content.DRAFT:
        base = dataclasses.replace(base, draft_findings="Right apical pneumothorax.",
                                   draft_impression="Right pneumothorax.", draft_model="medgemma-4b-it")
    return dataclasses.replace(base, **changes)
