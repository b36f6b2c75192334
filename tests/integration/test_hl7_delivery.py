"""HL7 v2 deliveries end to end in process: studies stored and triaged with the real intake and
triage record, the dispatcher, and python-hl7's MLLP server as the RIS; every message it
receives is parsed and validated against the 2.5.1 structure by hl7apy."""

from __future__ import annotations

import dataclasses
import datetime as dt
import ssl

import pytest
from sqlalchemy import update

from common import DISCLAIMER, Priority, Waits
from common.delivery import Content, DeliveryStatus
from db.escalation import escalate_due
from db.models import Delivery, Study, utcnow
from dicom.access import client_tls_context
from tests.e2e.daemon import free_port
from tests.integration.hl7_support import (
    dispatcher,
    drafted,
    routes,
    rows,
    session_accession,
    stored_study,
    triage,
)
from tests.integration.mllp_receiver import MllpReceiver, field, validated
from tests.integration.notice_factory import notice
from worker.deliveries.hl7 import Hl7Config, Hl7Sender

ALL = frozenset(Content)
LATER = dt.timedelta(hours=1)  # "now" for a round after every backoff has run out


@pytest.fixture
def data_dir(tmp_path):
    folder = tmp_path / "data"
    folder.mkdir()
    return folder


def test_a_risen_priority_and_the_result_reach_the_ris_as_valid_hl7(sessions, data_dir) -> None:
    routes(sessions, ("ris", ALL))
    study_id, ds = stored_study(sessions, data_dir, seed=1)
    triage(sessions, study_id, Priority.STAT)
    with MllpReceiver() as ris:
        assert dispatcher(sessions, data_dir, ris.port).run_once() == 2
        omi, oru = ris.received
    queued = rows(sessions, study_id)
    assert [(r.content, r.status, r.attempts) for r in queued] == [
        ("priority", "sent", 1), ("result", "sent", 1)]
    # MSH-10 is the delivery's control id: what a receiver deduplicates on.
    assert [field(omi, "MSH", 10), field(oru, "MSH", 10)] == [r.control_id for r in queued]

    order = validated(omi)
    assert order.msh.msh_9.value == "OMI^O23^OMI_O23"
    assert field(omi, "ORC", 1) == "XO"
    assert (field(omi, "ORC", 2), field(omi, "ORC", 3)) == ("PL-1", "FI-1")
    assert field(omi, "TQ1", 9) == "S" and field(omi, "OBR", 27) == "^^^^^S"
    assert [field(omi, "IPC", n) for n in (1, 2, 3)] == [ds.AccessionNumber, "RP-1", ds.StudyInstanceUID]
    assert field(omi, "PID", 3).split("^")[0] == ds.PatientID and field(omi, "PID", 5) == "DOE^JANE"
    assert "was ROUTINE" in field(omi, "NTE", 3)

    validated(oru)
    assert field(oru, "OBR", 25) == "P" and field(oru, "OBR", 18) == ds.AccessionNumber
    by_code = {field(oru, "OBX", 3, index=i): i for i in range(3)}
    pneumothorax = by_code["36118008^Pneumothorax^SCT"]
    assert float(field(oru, "OBX", 5, index=pneumothorax)) == pytest.approx(0.83)
    assert field(oru, "OBX", 8, index=pneumothorax) == "A"  # at or above its threshold
    assert {field(oru, "OBX", 11, index=i) for i in range(3)} == {"P"}


def test_orm_for_older_systems_and_the_draft_as_an_unverified_preliminary_result(sqlite_sessions, data_dir) -> None:
    sessions = sqlite_sessions
    routes(sessions, ("ris", ALL))
    study_id, _ds = stored_study(sessions, data_dir, seed=2)
    triage(sessions, study_id, Priority.URGENT, draft=True)
    drafted(sessions, study_id, "Right apical | pneumothorax.\nNo effusion.")
    with MllpReceiver() as ris:
        assert dispatcher(sessions, data_dir, ris.port, message_type="ORM^O01").run_once() == 3
        orm, result, draft = ris.received
    assert [r.content for r in rows(sessions, study_id)] == ["priority", "result", "draft"]
    validated(orm)
    assert field(orm, "MSH", 9) == "ORM^O01^ORM_O01"
    assert field(orm, "ORC", 7) == "^^^^^A" and field(orm, "OBR", 27) == "^^^^^A"
    validated(result)
    validated(draft)
    text = draft.split("\r")
    [obx] = [s for s in text if s.startswith("OBX|") and "AIDRAFT" in s]
    lines = field(draft, "OBX", 5, index=[s for s in text if s.startswith("OBX|")].index(obx)).split("~")
    assert lines[0] == DISCLAIMER and "UNVERIFIED" in lines[0]
    assert "Right apical | pneumothorax." in lines and "No effusion." in lines  # escaped on the wire, intact
    assert obx.split("|")[11] == "P"


def test_ae_and_ar_are_retried_then_the_message_is_delivered_exactly_once(sessions, data_dir) -> None:
    routes(sessions, ("ris", ALL))
    study_id, _ds = stored_study(sessions, data_dir, seed=3)
    triage(sessions, study_id, Priority.STAT)
    with MllpReceiver(["AE", "AR"]) as ris:
        ris_dispatcher = dispatcher(sessions, data_dir, ris.port)
        assert ris_dispatcher.run_once() == 0  # AE: the round stops, the row waits out its backoff
        assert ris_dispatcher.run_once() == 0  # not due yet: nothing sent
        assert ris_dispatcher.run_once(now=utcnow() + LATER) == 0  # AR
        assert ris_dispatcher.run_once(now=utcnow() + 2 * LATER) == 2
        received, acked = list(ris.received), list(ris.acked)
    priority, result = rows(sessions, study_id)
    assert (priority.status, priority.attempts, result.attempts) == ("sent", 3, 1)
    assert priority.last_error is None
    # Three tries of the same bytes (same control id), acknowledged once; then the result.
    assert received[0] == received[1] == received[2] and len(received) == 4
    assert acked == [priority.control_id, result.control_id]


def test_a_ris_that_is_down_delays_only_itself_and_gets_everything_when_back(sessions, data_dir) -> None:
    port = free_port()
    routes(sessions, ("ris", ALL), ("ris2", frozenset({Content.PRIORITY})))
    first, _ = stored_study(sessions, data_dir, seed=4)
    triage(sessions, first, Priority.STAT)
    with MllpReceiver() as other:
        down = dispatcher(sessions, data_dir, port)
        assert down.run_once() == 0
        assert dispatcher(sessions, data_dir, other.port, name="ris2").run_once() == 1  # not held up
        assert len(other.received) == 1
    head = rows(sessions, first)[0]
    assert head.status == "pending" and head.attempts == 1 and "ConnectionRefusedError" in head.last_error

    # Triage goes on while the RIS is away; its deliveries queue up behind.
    second, _ = stored_study(sessions, data_dir, seed=5)
    triage(sessions, second, Priority.URGENT)
    assert [r.status for r in rows(sessions, second)] == ["pending", "pending"]

    with MllpReceiver(port=port) as ris:
        assert down.run_once(now=utcnow() + LATER) == 4
        kinds = [(field(m, "MSH", 9).split("^")[0], field(m, "OBR", 18)) for m in ris.received]
    accession = {study_id: session_accession(sessions, study_id) for study_id in (first, second)}
    # Each study's messages in order (its priority before its result).
    for study_id in (first, second):
        assert [k for k, acc in kinds if acc == accession[study_id]] == ["OMI", "ORU"]
    assert {r.status for study_id in (first, second) for r in rows(sessions, study_id)} == {"sent"}


def test_escalation_by_waiting_time_sends_exactly_one_update_per_step(sessions, data_dir) -> None:
    routes(sessions, ("ris", frozenset({Content.ESCALATION})))
    study_id, _ = stored_study(sessions, data_dir, seed=6)
    triage(sessions, study_id, Priority.ROUTINE)
    assert rows(sessions, study_id) == []  # nothing rose, and results do not go to this RIS
    with sessions() as session:
        received_at = session.get(Study, study_id).received_at
    waits = Waits(dt.timedelta(minutes=60), dt.timedelta(minutes=240))
    for minutes in (61, 61, 90, 60 + 241, 60 + 241, 600):
        with sessions() as session:
            escalate_due(session, waits=waits, now=received_at + dt.timedelta(minutes=minutes))
    with MllpReceiver() as ris:  # the dispatcher's clock at the last round
        assert dispatcher(sessions, data_dir, ris.port).run_once(now=received_at + dt.timedelta(minutes=600)) == 2
        received = list(ris.received)
    assert [field(m, "TQ1", 9) for m in received] == ["A", "S"]
    for message in received:
        validated(message)
        assert "escalated from ROUTINE by waiting time" in field(message, "NTE", 3)
    assert [(r.content, r.priority_rank) for r in rows(sessions, study_id)] == [
        ("escalation", Priority.URGENT.rank), ("escalation", Priority.STAT.rank)]


def test_a_stale_lower_priority_is_never_sent(sessions, data_dir) -> None:
    routes(sessions, ("ris", frozenset({Content.PRIORITY, Content.ESCALATION})))
    study_id, _ = stored_study(sessions, data_dir, seed=7)
    triage(sessions, study_id, Priority.URGENT)
    with MllpReceiver(["AR"]) as ris:
        once = dispatcher(sessions, data_dir, ris.port, max_attempts=1)
        once.run_once()
        [urgent] = rows(sessions, study_id)
        assert urgent.status == "dead" and "gave up after 1 attempt(s): OMI^O23: AR" == urgent.last_error
        with sessions() as session:  # waiting raises it to STAT; that goes out
            received_at = session.get(Study, study_id).received_at
            later = received_at + dt.timedelta(minutes=31)
            escalate_due(session, waits=Waits(None, dt.timedelta(minutes=30)), now=later)
        assert once.run_once(now=later) == 1
        # Requeued later (as an admin's retry does), the URGENT update is stale: dropped, never sent.
        with sessions() as session:
            session.execute(update(Delivery).where(Delivery.id == urgent.id).values(status="pending"))
            session.commit()
        assert once.run_once(now=later) == 0
        sent = [field(m, "TQ1", 9) for m in ris.received]
    assert sent == ["A", "S"]  # the refused URGENT try, then STAT: never URGENT after STAT
    assert rows(sessions, study_id)[0].status == DeliveryStatus.DROPPED


def test_a_study_waits_behind_its_failing_head_while_other_studies_go_on(sessions, data_dir) -> None:
    routes(sessions, ("ris", ALL))
    first, _ = stored_study(sessions, data_dir, seed=8)
    triage(sessions, first, Priority.STAT)
    second, _ = stored_study(sessions, data_dir, seed=9)
    triage(sessions, second, Priority.ROUTINE)  # a result only
    with MllpReceiver(["AE"]) as ris:
        ris_dispatcher = dispatcher(sessions, data_dir, ris.port)
        ris_dispatcher.run_once()  # the STAT study's priority: AE
        assert ris_dispatcher.run_once() == 1  # the other study's result; the first study's result waits
        assert [r.status for r in rows(sessions, first)] == ["pending", "pending"]
        assert ris_dispatcher.run_once(now=utcnow() + LATER) == 2
        order = [(field(m, "OBR", 18), field(m, "MSH", 9).split("^")[0]) for m in ris.received]
    first_accession, second_accession = session_accession(sessions, first), session_accession(sessions, second)
    assert order == [(first_accession, "OMI"), (second_accession, "ORU"), (first_accession, "OMI"),
                     (first_accession, "ORU")]


def test_an_unbuildable_message_is_a_dead_letter_with_its_reason(sqlite_sessions, data_dir) -> None:
    sessions = sqlite_sessions
    routes(sessions, ("ris", frozenset({Content.RESULT})))
    study_id, _ = stored_study(sessions, data_dir, seed=10)
    triage(sessions, study_id, Priority.ROUTINE)
    with sessions() as session:  # nothing left to key the message on
        session.execute(update(Study).where(Study.id == study_id).values(accession_number=None))
        session.commit()
    ris_dispatcher = dispatcher(sessions, data_dir, free_port())
    row = dataclasses.replace(ris_dispatcher.notice(_due(sessions, study_id)), accession_number=None,
                              placer_order_number=None, filler_order_number=None)
    outcome = ris_dispatcher.sender.send(row)
    assert (outcome.result, outcome.detail) == ("refused", "message not built: ValueError")


def _due(sessions, study_id: int):
    from db.deliveries import due

    with sessions() as session:
        [row] = [d for d in due(session, destination="ris") if d.study_id == study_id]
    return row


def test_mllp_over_tls_with_a_client_certificate(pki) -> None:
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(pki / "ca.pem"))
    server.load_cert_chain(pki / "server.pem", pki / "server.key")
    server.verify_mode = ssl.CERT_REQUIRED
    with MllpReceiver(tls=server) as ris:
        mutual = client_tls_context(ca=pki / "ca.pem", cert=pki / "client.pem", key=pki / "client.key")
        delivered = Hl7Sender(Hl7Config(host="127.0.0.1", port=ris.port, timeout=3.0, tls=mutual)).send(
            notice(Content.RESULT))
        without_certificate = Hl7Sender(Hl7Config(host="127.0.0.1", port=ris.port, timeout=3.0,
                                                  tls=client_tls_context(ca=pki / "ca.pem"))).send(notice())
        plain = Hl7Sender(Hl7Config(host="127.0.0.1", port=ris.port, timeout=3.0)).send(notice())
        received = list(ris.received)
    assert (delivered.result, delivered.detail) == ("delivered", "ORU^R01: AA")
    assert without_certificate.result == "retry" and plain.result == "retry"
    assert len(received) == 1  # only the mutually authenticated connection got a message through
