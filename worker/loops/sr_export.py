"""Sending drafts back to the PACS as UNVERIFIED DICOM SR, retried with backoff.

Runs in ``serve`` on its own timer: a destination that is down delays only the exports,
never triage, drafts or the worklist.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import ssl
from collections.abc import Callable
from pathlib import Path

import pydicom
from sqlalchemy.orm import Session, sessionmaker

from common import Backoff, ExportStatus
from db import exports
from db.models import utcnow
from dicom.errors import DestinationUnavailable
from dicom.scu import send_sr
from dicom.sr import FindingResult, build_draft_sr, draft_sr_uids, scored_images
from worker.tasks.failures import where

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True, slots=True)
class ExportConfig:
    """Where draft reports go and how long to wait between attempts.

    Parameters
    ----------
    host, port : str, int
        The PACS that receives the SRs.
    called_ae, calling_ae : str
        Its AE title and ours.
    data_dir : Path
        Absolute folder of the stored instances the SR copies patient and study data from.
    backoff : common.Backoff
        Waits between attempts while the destination is unavailable.
    tls : ssl.SSLContext, optional
        TLS client context for the destination; None: plain TCP.
    """

    host: str
    port: int
    called_ae: str
    calling_ae: str
    data_dir: Path
    backoff: Backoff
    tls: ssl.SSLContext | None = None


class SrExporter:
    """One round sends every due export; ``on_result`` hears "sent", "retry" or "failed" (metrics)."""

    def __init__(self, *, sessions: sessionmaker[Session], config: ExportConfig,
                 on_result: Callable[[str], None] | None = None) -> None:
        self._sessions = sessions
        self._config = config
        self._on_result = on_result or (lambda _result: None)

    def run_once(self) -> int:
        """Try every due export; stop at the first unreachable destination. Returns sends."""
        config = self._config
        with self._sessions() as session:
            jobs = exports.due(session)
        sent = 0
        for job in jobs:
            try:
                send_sr(self._build(job), host=config.host, port=config.port,
                        called_ae=config.called_ae, calling_ae=config.calling_ae, tls=config.tls)
            except DestinationUnavailable as exc:
                wait = config.backoff.seconds(job.attempts)
                self._mark(job, ExportStatus.PENDING, f"destination unavailable; retry in {wait:.0f} s",
                           utcnow() + dt.timedelta(seconds=wait))
                self._on_result("retry")
                log.warning("SR destination unavailable (%s); draft #%d retries in %.0f s",
                            type(exc).__name__, job.draft_id, wait)
                break  # the others would wait on the same destination
            except Exception as exc:  # refused, or a report that cannot be built: this one only
                self._mark(job, ExportStatus.FAILED, type(exc).__name__)
                self._on_result("failed")
                log.error("SR for draft #%d failed (%s)", job.draft_id, where(exc))
            else:
                self._mark(job, ExportStatus.SENT, "")
                self._on_result("sent")
                sent += 1
        return sent

    def _build(self, job: exports.ExportJob) -> pydicom.Dataset:
        sources = [pydicom.dcmread(self._config.data_dir / path, stop_before_pixels=True)
                   for path in job.source_paths]
        # The same UIDs on every attempt: a re-send replaces the PACS copy, never adds one.
        series_uid, sop_uid = draft_sr_uids(job.study_instance_uid, f"draft-{job.draft_id}")
        return build_draft_sr(
            scored_images(sources) or sources, draft=job, priority=job.priority, urgency_score=job.urgency_score,
            finding_scores=[FindingResult(f.name, f.score, kind=f.kind, threshold=f.threshold)
                            for f in job.finding_scores],
            model_version=job.model_version, model_id=job.model_id,
            series_instance_uid=series_uid, sop_instance_uid=sop_uid,
        )

    def _mark(self, job: exports.ExportJob, status: ExportStatus, detail: str, retry_at=None) -> None:
        with self._sessions() as session:
            exports.mark(session, draft_id=job.draft_id, status=status, detail=detail, retry_at=retry_at)
