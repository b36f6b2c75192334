"""The worker side's configs, built from :class:`Settings` (``worker`` never reads settings)."""

from __future__ import annotations

from common import Backoff
from radtriage.settings import Settings, embedder_config
from worker.loops import ExportConfig, SweepConfig
from worker.tasks import BrokerConfig, WorkerConfig

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
        export_drafts=s.sr_destination is not None,
        task_max_retries=s.task_max_retries,
        task_time_limit_seconds=s.task_time_limit_seconds,
        accepted_sop_classes=frozenset(s.dicom_accepted_sop_classes.split(",")),
    )


def sweep_config(s: Settings) -> SweepConfig:
    return SweepConfig(running_timeout_seconds=s.running_timeout_seconds,
                       queued_timeout_seconds=s.queued_timeout_seconds, worker_lost_seconds=s.worker_lost_seconds,
                       queued_idle_seconds=s.queued_idle_seconds)


def export_config(s: Settings) -> ExportConfig:
    """Raises ``ValueError`` when ``sr_destination`` is not ``HOST:PORT``."""
    host, _, port = (s.sr_destination or "").rpartition(":")
    if not host or not port.isdigit():
        raise ValueError("sr_destination must be HOST:PORT")
    cap = s.sr_retry_max_seconds
    return ExportConfig(
        host=host, port=int(port), called_ae=s.sr_destination_ae_title, calling_ae=s.ae_title,
        data_dir=s.data_dir.resolve(),
        # A cap below the first wait means every wait is the cap.
        backoff=Backoff(first=min(SR_FIRST_RETRY_SECONDS, cap), cap=cap),
    )
