"""``radtriage deliveries list|test``: the configured destinations, and a test message to one of
them with the peer's answer printed (the daemon need not run; nothing is written to the database).

The test message is a real message of the destination's kind about a made-up study (patient
``RADTRIAGE^TEST``, accession ``RTTEST``): a RIS in production should route it to a test
queue or answer it with an error, which is printed too. A DICOM SR destination is sent a C-ECHO
(an SR needs a stored study).
"""

from __future__ import annotations

import datetime as dt

import click
from pydicom.uid import generate_uid

from common import DISCLAIMER, Priority
from common.delivery import Content, DestinationKind
from db.deliveries import new_control_id
from db.scores import FindingScore
from radtriage.cli_options import config_option, load_cli_settings
from worker.deliveries.notice import Notice

__all__ = ["deliveries", "test_notice"]

TEST_ACCESSION = "RTTEST"


@click.group()
def deliveries() -> None:
    """Destinations that receive priorities, escalations, results and drafts."""


@deliveries.command("list")
@config_option
def list_destinations(config_file: str | None) -> None:
    """List the configured destinations and what each receives."""
    from radtriage.wiring import destinations

    for d in destinations(load_cli_settings(config_file)):
        click.echo(f"{d.name}\t{d.kind.value}\t{', '.join(c.value for c in d.receives)}")


@deliveries.command("test")
@config_option
@click.argument("name")
@click.option("--content", type=click.Choice([c.value for c in Content]), default=None,
              help="What the test message reports (default: the first content the destination receives)")
def test(config_file: str | None, name: str, content: str | None) -> None:
    """Send a test message to destination NAME and print the peer's answer; exit 1 unless delivered."""
    from radtriage.wiring import destinations, make_sender, sender_config

    settings = load_cli_settings(config_file)
    found = {d.name: d for d in destinations(settings)}
    if name not in found:
        raise click.ClickException(f"no destination {name!r}; configured: {', '.join(found) or 'none'}")
    destination = found[name]
    if destination.kind is DestinationKind.DICOM_SR:
        _echo_pacs(sender_config(settings, destination))
        return
    chosen = Content(content) if content else destination.receives[0]
    sender = make_sender(settings, destination, sessions=None)
    try:
        outcome = sender.send(test_notice(name, chosen))
    finally:
        sender.close()
    click.echo(f"{name}: {outcome.result} ({outcome.detail})")
    if outcome.peer_reply:
        click.echo(outcome.peer_reply.replace("\r", "\n").rstrip())
    if outcome.result != "delivered":
        raise SystemExit(1)


def _echo_pacs(config) -> None:
    from dicom.errors import AssociationFailed
    from dicom.scu import echo

    try:
        status = echo(config.host, config.port, called_ae=config.called_ae, calling_ae=config.calling_ae,
                      timeout=config.timeout, tls=config.tls)
    except AssociationFailed as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"C-ECHO {config.called_ae}@{config.host}:{config.port}: status 0x{status:04X}")
    if status != 0:
        raise SystemExit(1)


def test_notice(destination: str, content: Content) -> Notice:
    """A notice about a made-up STAT study, for ``deliveries test``."""
    now = dt.datetime.now(dt.UTC)
    draft = content is Content.DRAFT
    return Notice(
        delivery_id=0, control_id=new_control_id(), content=content, destination=destination, study_id=0,
        study_instance_uid=generate_uid(), accession_number=TEST_ACCESSION, placer_order_number=TEST_ACCESSION,
        filler_order_number=TEST_ACCESSION, requested_procedure_id=TEST_ACCESSION, patient_id="RADTRIAGE-TEST",
        patient_name="RADTRIAGE^TEST", patient_birth_date=None, patient_sex="O", study_datetime=now,
        ordered_priority=Priority.ROUTINE, priority=Priority.STAT, previous_priority=Priority.ROUTINE,
        escalated_from=Priority.ROUTINE if content is Content.ESCALATION else None, urgency_score=50.0,
        reasons=("radtriage deliveries test: not a real study",),
        findings=(FindingScore("pneumothorax", 0.5, kind="zero-shot", threshold=0.6, validated=None),),
        draft_findings="Test message from radtriage; not a report." if draft else None,
        draft_impression="Test." if draft else None, draft_model="radtriage-test" if draft else None,
        disclaimer=DISCLAIMER, created_at=now,
    )
