"""The worker side's configs, built from :class:`Settings` (``worker`` never reads settings)."""

from __future__ import annotations

import datetime as dt
import ssl
from typing import TYPE_CHECKING

from sqlalchemy.orm import Session, sessionmaker

from common import Backoff
from common.delivery import Content, DestinationKind
from db.deliveries import Route
from dicom.access import client_tls_context
from radtriage.destinations import (
    DicomSrDestination,
    FhirDestination,
    Hl7Destination,
    RetryPolicy,
    WebhookDestination,
)
from radtriage.settings import Settings, embedder_config
from worker.deliveries.dispatcher import DispatchConfig
from worker.deliveries.notice import Sender
from worker.loops import SweepConfig
from worker.tasks import BrokerConfig, WorkerConfig

if TYPE_CHECKING:  # each sender's module is imported where a destination of its kind is built:
    # a worker or a daemon without that kind of destination never loads highdicom, fhir.resources, httpx
    from worker.deliveries.dicom_sr import DicomSrConfig
    from worker.deliveries.fhir import FhirConfig
    from worker.deliveries.hl7 import Hl7Config
    from worker.deliveries.webhook import WebhookConfig

# The first wait after the SR destination turned out unavailable; doubled per attempt up to
# sr_retry_max_seconds.
SR_FIRST_RETRY_SECONDS = 5.0


def broker_config(s: Settings) -> BrokerConfig:
    return BrokerConfig(url=s.broker_url, folder=s.data_dir.resolve() / "broker", key_prefix=s.broker_key_prefix)


def worker_config(s: Settings) -> WorkerConfig:
    return WorkerConfig(
        database_url=s.effective_database_url,
        data_dir=s.data_dir.resolve(),
        broker=broker_config(s),
        embedder=embedder_config(s),
        policy_file=s.policy_file,
        medgemma_model=s.medgemma_model,
        medgemma_max_new_tokens=s.medgemma_max_new_tokens,
        draft_batch=s.draft_batch,
        export_drafts=any(d.kind is DestinationKind.DICOM_SR for d in destinations(s)),
        task_max_retries=s.task_max_retries,
        task_time_limit_seconds=s.task_time_limit_seconds,
        accepted_sop_classes=frozenset(s.dicom_accepted_sop_classes.split(",")),
        hide_non_chest=s.worklist_non_chest == "hide",
    )


def sweep_config(s: Settings) -> SweepConfig:
    return SweepConfig(running_timeout_seconds=s.running_timeout_seconds,
                       queued_timeout_seconds=s.queued_timeout_seconds, worker_lost_seconds=s.worker_lost_seconds,
                       queued_idle_seconds=s.queued_idle_seconds)


# The destination the legacy sr_destination settings make (a [[destinations]] entry of this name wins).
IMPLICIT_SR = "pacs-sr"


def destinations(s: Settings) -> list:
    """The configured destinations, with the DICOM SR one that ``sr_destination`` implies."""
    found = list(s.destinations)
    if s.sr_destination and all(d.name != IMPLICIT_SR for d in found):
        host, _, port = s.sr_destination.rpartition(":")
        cap = s.sr_retry_max_seconds
        # As before: retried while the PACS is unavailable, however long; a cap below the first
        # wait means every wait is the cap.
        retry = RetryPolicy(backoff_first_seconds=min(SR_FIRST_RETRY_SECONDS, cap), backoff_max_seconds=cap,
                            max_attempts=None, max_age_hours=None)
        found.append(DicomSrDestination(name=IMPLICIT_SR, kind=DestinationKind.DICOM_SR, host=host, port=int(port),
                                        ae_title=s.sr_destination_ae_title, receives=[Content.DRAFT], retry=retry))
    return found


def routes(s: Settings) -> list[Route]:
    """What each destination receives, as the database keeps it for every process."""
    return [Route(d.name, d.kind.value, frozenset(d.receives)) for d in destinations(s)]


def dispatch_config(s: Settings, d) -> DispatchConfig:
    retry = d.retry
    return DispatchConfig(
        name=d.name, data_dir=s.data_dir.resolve(),
        backoff=Backoff(first=retry.backoff_first_seconds, cap=retry.backoff_max_seconds),
        max_attempts=retry.max_attempts,
        max_age=None if retry.max_age_hours is None else dt.timedelta(hours=retry.max_age_hours),
    )


def _tls(d) -> ssl.SSLContext | None:
    if not d.tls:
        return None
    return client_tls_context(ca=d.tls_ca, cert=d.tls_cert, key=d.tls_key)


def _path(value) -> str | None:
    return None if value is None else str(value)


def sender_config(s: Settings, d) -> Hl7Config | FhirConfig | WebhookConfig | DicomSrConfig:
    """The sender's config of one destination.

    Raises
    ------
    ValueError
        A value the sender refuses (e.g. a priority code outside FHIR's vocabulary).
    dicom.errors.AccessConfigError
        A TLS file cannot be read.
    """
    if isinstance(d, Hl7Destination):
        from worker.deliveries.hl7 import DEFAULT_PRIORITY_MAP as HL7_PRIORITY_MAP
        from worker.deliveries.hl7 import Hl7Config

        return Hl7Config(host=d.host, port=d.port, message_type=d.message_type,
                         sending_application=d.sending_application, sending_facility=d.sending_facility,
                         receiving_application=d.receiving_application, receiving_facility=d.receiving_facility,
                         processing_id=d.processing_id, priority_map=d.codes or dict(HL7_PRIORITY_MAP),
                         timeout=d.timeout_seconds, tls=_tls(d))
    if isinstance(d, FhirDestination):
        from worker.deliveries.fhir import FhirConfig

        extra = {"priority_map": d.codes} if d.codes else {}
        return FhirConfig(base_url=d.url, mode=d.mode,
                          bearer_token=None if d.bearer_token is None else d.bearer_token.get_secret_value(),
                          client_cert=_path(d.tls_cert), client_key=_path(d.tls_key), ca_bundle=_path(d.tls_ca),
                          timeout=d.timeout_seconds, accession_system=d.accession_system,
                          patient_id_system=d.patient_id_system, **extra)
    if isinstance(d, WebhookDestination):
        from worker.deliveries.webhook import WebhookConfig

        return WebhookConfig(url=d.url, secret=d.secret.get_secret_value(), timeout=d.timeout_seconds,
                             headers={k: v.get_secret_value() for k, v in d.headers.items()},
                             priority_map=d.codes, ca_bundle=_path(d.tls_ca), client_cert=_path(d.tls_cert),
                             client_key=_path(d.tls_key))
    if isinstance(d, DicomSrDestination):
        from worker.deliveries.dicom_sr import DicomSrConfig

        return DicomSrConfig(host=d.host, port=d.port, called_ae=d.ae_title, calling_ae=s.ae_title,
                             data_dir=s.data_dir.resolve(), timeout=d.timeout_seconds, tls=_tls(d))
    raise ValueError(f"unknown destination kind {d.kind!r}")


def make_sender(s: Settings, d, sessions: sessionmaker[Session]) -> Sender:
    """The sender of one destination (DICOM SR reads the draft through ``sessions``)."""
    config = sender_config(s, d)  # imports the module of its kind
    if isinstance(d, Hl7Destination):
        from worker.deliveries.hl7 import Hl7Sender

        return Hl7Sender(config)
    if isinstance(d, FhirDestination):
        from worker.deliveries.fhir import FhirSender

        return FhirSender(config)
    if isinstance(d, WebhookDestination):
        from worker.deliveries.webhook import WebhookSender

        return WebhookSender(config)
    from worker.deliveries.dicom_sr import DicomSrSender

    return DicomSrSender(config, sessions=sessions)
