"""users and the audit trail

Named users with a role and the SHA-256 of their personal API token; an append-only audit
table of who viewed, claimed, released, read or exported which study, and of admin actions.
Touches no existing table.

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'users',
        sa.Column('id', sa.Integer(), primary_key=True),
        sa.Column('name', sa.String(length=64), nullable=False),
        sa.Column('role', sa.String(length=16), nullable=False),
        sa.Column('token_hash', sa.String(length=64), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('disabled_at', sa.DateTime(timezone=True), nullable=True),
        sa.UniqueConstraint('name', name='uq_users_name'),
        sa.UniqueConstraint('token_hash', name='uq_users_token_hash'),
    )
    op.create_table(
        'audit',
        sa.Column('id', sa.Integer(), primary_key=True),
        sa.Column('at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('user_name', sa.String(length=128), nullable=False),
        sa.Column('action', sa.String(length=32), nullable=False),
        sa.Column('study_id', sa.Integer(), nullable=True),
        sa.Column('address', sa.String(length=64), nullable=True),
        sa.Column('detail', sa.Text(), nullable=False),
    )
    op.create_index('ix_audit_at', 'audit', ['at'])
    op.create_index('ix_audit_study_id', 'audit', ['study_id'])


def downgrade() -> None:
    op.drop_index('ix_audit_study_id', table_name='audit')
    op.drop_index('ix_audit_at', table_name='audit')
    op.drop_table('audit')
    op.drop_table('users')
