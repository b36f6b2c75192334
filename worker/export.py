"""Sending drafts back to the PACS as UNVERIFIED DICOM SR, retried with backoff.

Runs in ``serve`` on its own timer: a destination that is down delays only the exports,
never triage, drafts or the worklist.
"""

from __future__ import annotations

import datetime as dt
import logging

import pydicom
from sqlalchemy.orm import Session, sessionmaker

from common import Backoff, ExportStatus
from db import exports
from db.models import utcnow
from dicom.errors import DestinationUnavailable
from dicom.scu import send_sr
from dicom.sr import build_draft_sr, draft_sr_uids
from radtriage import metrics
from radtriage.settings import Settings
from worker.failures import where

log = logging.getLogger(__name__)


class SrExporter:
    def __init__(self, *, sessions: sessionmaker[Session], settings: Settings) -> None:
        host, _, port = (settings.sr_destination or "").rpartition(":")
        if not host or not port.isdigit():
            raise ValueError("sr_destination must be HOST:PORT")
        self._host, self._port = host, int(port)
        self._sessions = sessions
        self._settings = settings
        self._data_dir = settings.data_dir.resolve()

    def run_once(self) -> int:
        """Try every due export; stop at the first unreachable destination. Returns sends."""
        with self._sessions() as session:
            jobs = exports.due(session)
        sent = 0
        for job in jobs:
            try:
                send_sr(self._build(job), host=self._host, port=self._port,
                        called_ae=self._settings.sr_destination_ae_title, calling_ae=self._settings.ae_title)
            except DestinationUnavailable as exc:
                cap = self._settings.sr_retry_max_seconds
                wait = Backoff(first=min(5.0, cap), cap=cap).seconds(job.attempts)
                self._mark(job, ExportStatus.PENDING, f"destination unavailable; retry in {wait:.0f} s",
                           utcnow() + dt.timedelta(seconds=wait))
                metrics.SR_EXPORTS.labels(result="retry").inc()
                log.warning("SR destination unavailable (%s); draft #%d retries in %.0f s",
                            type(exc).__name__, job.draft_id, wait)
                break  # the others would wait on the same destination
            except Exception as exc:  # refused, or a report that cannot be built: this one only
                self._mark(job, ExportStatus.FAILED, type(exc).__name__)
                metrics.SR_EXPORTS.labels(result="failed").inc()
                log.error("SR for draft #%d failed (%s)", job.draft_id, where(exc))
            else:
                self._mark(job, ExportStatus.SENT, "")
                metrics.SR_EXPORTS.labels(result="sent").inc()
                sent += 1
        return sent

    def _build(self, job: exports.ExportJob) -> pydicom.Dataset:
        sources = [pydicom.dcmread(self._data_dir / path, stop_before_pixels=True) for path in job.source_paths]
        # The same UIDs on every attempt: a re-send replaces the PACS copy, never adds one.
        series_uid, sop_uid = draft_sr_uids(job.study_instance_uid, f"draft-{job.draft_id}")
        return build_draft_sr(
            sources, draft=job, priority=job.priority, urgency_score=job.urgency_score,
            finding_scores=job.finding_scores, model_version=job.model_version, model_id=job.model_id,
            series_instance_uid=series_uid, sop_instance_uid=sop_uid,
        )

    def _mark(self, job: exports.ExportJob, status: ExportStatus, detail: str, retry_at=None) -> None:
        with self._sessions() as session:
            exports.mark(session, draft_id=job.draft_id, status=status, detail=detail, retry_at=retry_at)
