"""SQLAlchemy models: studies, their instances, scores, the outbox and the event log."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    false,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship, validates

from common import DraftStatus, Priority, StudyStatus

NO_SCORE_KEY = -1.0  # ``Study.urgency_key`` of an unscored study: after every scored one (scores are 0..100)

UID = String(64)


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def as_utc(value: dt.datetime) -> dt.datetime:
    """A stored time as an aware UTC datetime (SQLite hands back naive ones; all are UTC)."""
    return value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)


class Base(DeclarativeBase):
    pass


_UNREAD = text("read_at IS NULL")


class Study(Base):
    __tablename__ = "studies"
    # The indexes of migration 0005, so a schema built from the models has them too.
    __table_args__ = (
        # The keyset order of the active worklist (common.reading_order).
        Index("ix_studies_reading_order", text("effective_rank DESC"), text("urgency_key DESC"), "received_at", "id",
              sqlite_where=_UNREAD, postgresql_where=_UNREAD),
        # The escalation loop: unread studies of one effective class received before a time.
        Index("ix_studies_escalation_due", "effective_rank", "received_at", sqlite_where=_UNREAD,
              postgresql_where=_UNREAD),
        Index("ix_studies_reader", "reader", "reader_active_at", sqlite_where=text("reader IS NOT NULL"),
              postgresql_where=text("reader IS NOT NULL")),
        # Accession prefix search (the PostgreSQL migration builds it with COLLATE "C": byte order).
        Index("ix_studies_accession", "accession_number"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    study_instance_uid: Mapped[str] = mapped_column(UID, unique=True)  # (0020,000D)
    accession_number: Mapped[str | None] = mapped_column(String(16))  # (0008,0050)
    ordered_priority: Mapped[str] = mapped_column(String(8))  # from (0040,1003) / (0032,000C)
    priority: Mapped[str] = mapped_column(String(8))  # never below ordered_priority
    priority_rank: Mapped[int] = mapped_column(Integer, index=True)
    urgency_score: Mapped[float | None] = mapped_column(Float)
    status: Mapped[str] = mapped_column(String(16), index=True)
    reasons: Mapped[list[str]] = mapped_column(JSON, default=list)
    revision: Mapped[int] = mapped_column(Integer, default=1)
    received_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    last_instance_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    completed_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    triaged_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    # When ``status`` last changed: the reconciliation sweep re-drives studies stuck too long.
    state_changed_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow, index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)  # triage attempts of this revision
    draft_status: Mapped[str | None] = mapped_column(String(16), index=True)
    draft_changed_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    # The worker process (host:pid) running the triage / the draft, for the sweep to tell a
    # dead worker from a slow one by its heartbeat.
    claimed_by: Mapped[str | None] = mapped_column(String(128))
    draft_claimed_by: Mapped[str | None] = mapped_column(String(128))
    # Completeness by views (common.completion), kept in step by db.ingest in the same
    # transaction as each instance, so a restart loses nothing.
    instance_count: Mapped[int] = mapped_column(Integer, default=0, server_default="0")  # distinct SOP Instance UIDs
    expected_instances: Mapped[int | None] = mapped_column(Integer)  # largest (0020,1208) received
    has_frontal: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    has_lateral: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    views_complete: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())

    # The reading state (common.reading_order), kept on the row so the worklist reads in index
    # order: the priority after waiting-time escalation (set_priority and the escalation loop),
    # the class waiting raised it from, and the urgency score as a sort key (unscored: -1).
    effective_rank: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    escalated_from: Mapped[str | None] = mapped_column(String(8))
    urgency_key: Mapped[float] = mapped_column(Float, default=NO_SCORE_KEY, server_default="-1")
    # A radiologist's claim (not a worker's: that is ``claimed_by``) and when they last acted on it.
    reader: Mapped[str | None] = mapped_column(String(128))
    reader_claimed_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    reader_active_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    # Marked read: off the active worklist.
    read_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    read_by: Mapped[str | None] = mapped_column(String(128))

    instances: Mapped[list[Instance]] = relationship(back_populates="study", order_by="Instance.id")

    def set_priority(self, priority: Priority | str) -> Priority:
        """Set the priority and the ranks the worklist and the queues order by, together.

        The effective rank never drops: a study that waiting already raised above its new
        priority stays there (escalated from the new priority); the escalation loop raises it
        further if the new priority's waits say so.
        """
        priority = Priority(priority)
        self.priority, self.priority_rank = priority.value, priority.rank
        if self.effective_rank is None or priority.rank >= self.effective_rank:
            self.effective_rank, self.escalated_from = priority.rank, None
        else:
            self.escalated_from = priority.value
        return priority

    @validates("urgency_score")
    def _keep_urgency_key(self, _key: str, score: float | None) -> float | None:
        self.urgency_key = NO_SCORE_KEY if score is None else float(score)
        return score

    def move_to(self, status: StudyStatus, now: dt.datetime | None = None) -> None:
        """Change ``status`` and stamp when, for the reconciliation sweep."""
        self.status = status
        self.state_changed_at = now or utcnow()

    def move_draft_to(self, status: DraftStatus | None, now: dt.datetime | None = None) -> None:
        self.draft_status = status
        self.draft_changed_at = now or utcnow()


class Instance(Base):
    __tablename__ = "instances"
    __table_args__ = (
        UniqueConstraint("sop_instance_uid", "content_hash", name="uq_instance_revision"),
        # One row per distinct dataset of a SOP instance (migration 0009); older rows have none.
        UniqueConstraint("sop_instance_uid", "dataset_hash", name="uq_instance_dataset"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id"), index=True)
    series_instance_uid: Mapped[str] = mapped_column(UID)  # (0020,000E)
    sop_instance_uid: Mapped[str] = mapped_column(UID, index=True)  # (0008,0018)
    sop_class_uid: Mapped[str] = mapped_column(UID)  # (0008,0016)
    transfer_syntax_uid: Mapped[str] = mapped_column(UID)  # (0002,0010)
    modality: Mapped[str | None] = mapped_column(String(16))  # (0008,0060)
    body_part: Mapped[str | None] = mapped_column(String(16))  # (0018,0015)
    view_position: Mapped[str | None] = mapped_column(String(16))  # (0018,5101)
    view: Mapped[str | None] = mapped_column(String(8))  # frontal/lateral from (0018,5101), (0054,0220), (0020,0020)
    expected_instances: Mapped[int | None] = mapped_column(Integer)  # (0020,1208)
    path: Mapped[str] = mapped_column(Text)  # relative to the data folder
    content_hash: Mapped[str] = mapped_column(String(80))  # "blake3:<hex>" (older rows: "sha256:<hex>")
    # Duplicates by content (dicom.identity): the dataset without its file meta, and the image
    # (encoding-independent header and decoded pixels), the latter computed only when needed.
    dataset_hash: Mapped[str | None] = mapped_column(String(80))
    image_hash: Mapped[str | None] = mapped_column(String(80))
    size_bytes: Mapped[int] = mapped_column(Integer)
    received_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    # When retention (db.retention) removed the stored file; the row stays for the study's record.
    purged_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))

    study: Mapped[Study] = relationship(back_populates="instances")


class Score(Base):
    """What a model said about one revision of a study; kept so heads can be re-run."""

    __tablename__ = "scores"
    __table_args__ = (UniqueConstraint("study_id", "revision", "model", "instance_id", name="uq_score_revision"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id"), index=True)
    revision: Mapped[int] = mapped_column(Integer)
    model: Mapped[str] = mapped_column(String(64))
    instance_id: Mapped[int | None] = mapped_column(ForeignKey("instances.id"))
    findings: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    embedding: Mapped[bytes | None] = mapped_column(LargeBinary)
    # How each finding was judged: {name: {"kind", "threshold", "validated"}} (None: not recorded).
    criteria: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class OutboxMessage(Base):
    """Work to hand to the broker; written in the same transaction as the state it follows."""

    __tablename__ = "outbox"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    task: Mapped[str] = mapped_column(String(32))
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id"), index=True)
    revision: Mapped[int] = mapped_column(Integer)
    priority_rank: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    sent_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), index=True)


class Event(Base):
    """An audit trail of state changes per study (stage, detail), free of patient data."""

    __tablename__ = "events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id"), index=True)
    stage: Mapped[str] = mapped_column(String(32))
    detail: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Draft(Base):
    """An UNVERIFIED MedGemma draft of the findings for one study revision."""

    __tablename__ = "drafts"
    __table_args__ = (UniqueConstraint("study_id", "revision", name="uq_draft_revision"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id"), index=True)
    revision: Mapped[int] = mapped_column(Integer)
    model_id: Mapped[str] = mapped_column(String(128))
    model_version: Mapped[str] = mapped_column(String(64), default="unknown")
    prompt_version: Mapped[str] = mapped_column(String(32))
    # Stored with every draft, shown wherever it is: an UNVERIFIED AI draft for research use.
    disclaimer: Mapped[str] = mapped_column(Text)
    findings: Mapped[str] = mapped_column(Text, default="")
    impression: Mapped[str] = mapped_column(Text, default="")
    raw_text: Mapped[str] = mapped_column(Text, default="")
    prompt_tokens: Mapped[int] = mapped_column(Integer, default=0)
    new_tokens: Mapped[int] = mapped_column(Integer, default=0)
    seconds: Mapped[float] = mapped_column(Float, default=0.0)  # the whole batch's generation time
    batch_size: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    # Export of the draft as a DICOM SR to the configured destination.
    sr_status: Mapped[str | None] = mapped_column(String(16))  # an ExportStatus; None: no destination
    sr_attempts: Mapped[int] = mapped_column(Integer, default=0)
    sr_next_attempt_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))


class Delivery(Base):
    """One delivery of one change (a priority, an escalation, a result, a draft) of a study to one
    destination: an outbox row written in the same transaction as the change it reports.

    ``seq`` orders a study's deliveries to one destination (sent strictly in that order);
    ``payload`` is the snapshot of our values at the change (the DICOM header fields are read
    from the stored file when sending); ``control_id`` is stable across retries so a receiver
    can deduplicate what at-least-once delivery may repeat.
    """

    __tablename__ = "deliveries"
    __table_args__ = (
        UniqueConstraint("destination", "study_id", "seq", name="uq_delivery_order"),
        # Each destination's dispatcher: its pending rows, the due ones first.
        Index("ix_deliveries_due", "destination", "status", "next_attempt_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    destination: Mapped[str] = mapped_column(String(64))  # the destination's name in the settings
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id"), index=True)
    revision: Mapped[int] = mapped_column(Integer)
    seq: Mapped[int] = mapped_column(Integer)  # 1, 2, … per destination and study
    content: Mapped[str] = mapped_column(String(16))  # a common.delivery.Content
    status: Mapped[str] = mapped_column(String(16))  # a common.delivery.DeliveryStatus
    # The effective priority announced (PRIORITY and ESCALATION only): a rank not above one
    # already sent to this destination for this study is stale and dropped unsent.
    priority_rank: Mapped[int | None] = mapped_column(Integer)
    payload: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    control_id: Mapped[str] = mapped_column(String(20), unique=True)  # fits HL7 MSH-10 (ST, 20)
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    next_attempt_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    last_attempt_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    last_error: Mapped[str | None] = mapped_column(Text)  # no PHI: codes, error classes; a dead letter's reason
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    sent_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    closed_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))  # dead or dropped


class DeliveryDestination(Base):
    """A configured destination as every process sees it: ``serve`` writes the settings' list
    here at start, and whoever commits a change reads what each destination receives."""

    __tablename__ = "delivery_destinations"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))  # a common.delivery.DestinationKind
    receives: Mapped[list[str]] = mapped_column(JSON, default=list)  # common.delivery.Content values
    active: Mapped[bool] = mapped_column(Boolean, default=True)  # False: no longer in the settings
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class WorkerHeartbeat(Base):
    """The last sign of life of each worker process, for /healthz."""

    __tablename__ = "worker_heartbeats"

    name: Mapped[str] = mapped_column(String(128), primary_key=True)
    queues: Mapped[str] = mapped_column(String(64))
    last_seen: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class UserAccount(Base):
    """A named person with a role; only the SHA-256 of their personal API token is kept."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    role: Mapped[str] = mapped_column(String(16))  # a db.users.Role
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)  # hex SHA-256 of the token
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    disabled_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))


class AuditEntry(Base):
    """Who did what to which study, when and from where (views, claims, reads, admin actions)."""

    __tablename__ = "audit"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow, index=True)
    user_name: Mapped[str] = mapped_column(String(128))
    action: Mapped[str] = mapped_column(String(32))  # a db.audit.AuditAction
    # No foreign key: the trail must outlive any study that is ever purged.
    study_id: Mapped[int | None] = mapped_column(Integer, index=True)
    address: Mapped[str | None] = mapped_column(String(64))
    detail: Mapped[str] = mapped_column(Text, default="")
