"""deliveries: per-destination delivery outbox (HL7, FHIR, webhook, DICOM SR)

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "deliveries",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("destination", sa.String(64), nullable=False),
        sa.Column("study_id", sa.Integer(), sa.ForeignKey("studies.id"), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("content", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("priority_rank", sa.Integer(), nullable=True),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("control_id", sa.String(20), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
        sa.UniqueConstraint("destination", "study_id", "seq", name="uq_delivery_order"),
        sa.UniqueConstraint("control_id", name="uq_deliveries_control_id"),
    )
    op.create_index("ix_deliveries_study_id", "deliveries", ["study_id"])
    op.create_index("ix_deliveries_due", "deliveries", ["destination", "status", "next_attempt_at"])
    op.create_table(
        "delivery_destinations",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("receives", sa.JSON(), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )


    _carry_pending_sr_exports()


def _carry_pending_sr_exports() -> None:
    """SR exports still pending under the old export loop become deliveries to the destination
    the sr_destination settings now make ("pacs-sr"), so an upgrade sends them as before."""
    import datetime as dt
    import secrets

    bind = op.get_bind()
    drafts = bind.execute(sa.text(
        "SELECT d.id, d.study_id, d.revision, d.findings, d.impression, d.model_id, d.model_version, "
        "d.prompt_version, d.disclaimer, s.ordered_priority, s.priority, s.urgency_score "
        "FROM drafts d JOIN studies s ON s.id = d.study_id WHERE d.sr_status = 'pending' ORDER BY d.id")).all()
    if not drafts:
        return
    now = dt.datetime.now(dt.UTC)
    deliveries = sa.table("deliveries", *(sa.column(c) for c in (
        "destination", "study_id", "revision", "seq", "content", "status", "control_id", "attempts",
        "next_attempt_at", "created_at")), sa.column("payload", sa.JSON()))
    seq: dict[int, int] = {}
    rows = []
    for (draft_id, study_id, revision, findings, impression, model_id, model_version, prompt_version, disclaimer,
         ordered, priority, urgency) in drafts:
        seq[study_id] = seq.get(study_id, 0) + 1
        rows.append({
            "destination": "pacs-sr", "study_id": study_id, "revision": revision, "seq": seq[study_id],
            "content": "draft", "status": "pending", "control_id": "RT" + secrets.token_hex(9).upper(),
            "attempts": 0, "next_attempt_at": now, "created_at": now,
            "payload": {"revision": revision, "ordered_priority": ordered, "priority": priority,
                        "previous_priority": None, "escalated_from": None, "urgency_score": urgency, "reasons": [],
                        "findings": [], "draft": {"id": draft_id, "findings": findings, "impression": impression,
                                                  "model_id": model_id, "model_version": model_version,
                                                  "prompt_version": prompt_version, "disclaimer": disclaimer}},
        })
    op.bulk_insert(deliveries, rows)


def downgrade() -> None:
    op.drop_table("delivery_destinations")
    op.drop_index("ix_deliveries_due", table_name="deliveries")
    op.drop_index("ix_deliveries_study_id", table_name="deliveries")
    op.drop_table("deliveries")
