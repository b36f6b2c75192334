"""DICOM SR destinations: the study's newest draft as an UNVERIFIED TID 1500 SR, stored on a PACS
by C-STORE (``dicom.sr`` builds it, ``dicom.scu.send_sr`` sends it).

The SR's UIDs derive from the study and the draft, so a retry (or a re-send after a crash
before the mark) replaces the PACS's copy instead of adding a second report. The draft's
``sr_status`` (shown with the draft) follows the deliveries: :func:`record_sr_state`.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import ssl
from pathlib import Path

import pydicom
from sqlalchemy.orm import Session, sessionmaker

from common import ExportStatus
from common.delivery import Content, DeliveryStatus
from db import exports
from dicom.errors import DestinationUnavailable, SendError
from dicom.scu import send_sr
from dicom.sr import FindingResult, build_draft_sr, draft_sr_uids, scored_images
from worker.deliveries.notice import Notice, Outcome

__all__ = ["DicomSrConfig", "DicomSrSender", "record_sr_state"]


@dataclasses.dataclass(frozen=True, slots=True)
class DicomSrConfig:
    """One PACS that stores the drafts.

    Parameters
    ----------
    host, port : str, int
        The PACS.
    called_ae, calling_ae : str
        Its AE title and ours.
    data_dir : Path
        Absolute folder of the stored instances the SR copies patient and study data from.
    timeout : float
        Seconds for the connection and each DIMSE exchange.
    tls : ssl.SSLContext, optional
        TLS client context; None: plain TCP.
    """

    host: str
    port: int
    called_ae: str
    calling_ae: str
    data_dir: Path
    timeout: float = 30.0
    tls: ssl.SSLContext | None = None


class DicomSrSender:
    """C-STOREs the study's draft SR; reads the draft from the database (drafts never change)."""

    def __init__(self, config: DicomSrConfig, *, sessions: sessionmaker[Session]) -> None:
        self.config = config
        self._sessions = sessions

    def send(self, notice: Notice) -> Outcome:
        if notice.content is not Content.DRAFT:
            return Outcome("refused", f"a DICOM SR destination takes drafts, not {notice.content.value}")
        with self._sessions() as session:
            job = exports.latest_draft_job(session, study_id=notice.study_id)
        if job is None:
            return Outcome("refused", "the study has no draft")
        try:
            dataset = self.build(job)
        except OSError as exc:  # a stored file unreadable right now (disk trouble): later
            return Outcome("retry", f"SR not built: {type(exc).__name__}")
        except Exception as exc:  # noqa: BLE001  a report that cannot be built never will be
            return Outcome("refused", f"SR not built: {type(exc).__name__}")
        config = self.config
        try:
            status = send_sr(dataset, host=config.host, port=config.port, called_ae=config.called_ae,
                             calling_ae=config.calling_ae, timeout=config.timeout, tls=config.tls)
        except DestinationUnavailable as exc:
            return Outcome("retry", f"C-STORE: {type(exc).__name__}", str(exc))
        except SendError as exc:
            return Outcome("retry" if exc.retryable else "refused", f"C-STORE: {type(exc).__name__}", str(exc))
        return Outcome("delivered", f"C-STORE: 0x{status:04X}", f"C-STORE status 0x{status:04X}")

    def build(self, job: exports.ExportJob) -> pydicom.Dataset:
        """The SR of one draft, built from the stored images triage scored."""
        sources = [pydicom.dcmread(self.config.data_dir / path, stop_before_pixels=True) for path in job.source_paths]
        # The same UIDs on every attempt: a re-send replaces the PACS copy, never adds one.
        series_uid, sop_uid = draft_sr_uids(job.study_instance_uid, f"draft-{job.draft_id}")
        return build_draft_sr(
            scored_images(sources) or sources, draft=job, priority=job.priority, urgency_score=job.urgency_score,
            finding_scores=[FindingResult(f.name, f.score, kind=f.kind, threshold=f.threshold)
                            for f in job.finding_scores],
            model_version=job.model_version, model_id=job.model_id,
            series_instance_uid=series_uid, sop_instance_uid=sop_uid,
        )

    def close(self) -> None:
        """Nothing held: one association per SR."""


_SR_STATES = {DeliveryStatus.SENT: ExportStatus.SENT, DeliveryStatus.PENDING: ExportStatus.PENDING,
              DeliveryStatus.DEAD: ExportStatus.FAILED}


def record_sr_state(session: Session, *, draft_id: int, status: DeliveryStatus, detail: str,
                    retry_at: dt.datetime | None) -> None:
    """Keep the draft's ``sr_status`` (and its SR events) in step with a DICOM SR delivery."""
    if status in _SR_STATES:
        exports.mark(session, draft_id=draft_id, status=_SR_STATES[status], detail=detail, retry_at=retry_at)
