"""completeness by views: per-study view and count state, per-instance view

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('studies', schema=None) as batch_op:
        batch_op.add_column(sa.Column('instance_count', sa.Integer(), server_default='0', nullable=False))
        batch_op.add_column(sa.Column('expected_instances', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('has_frontal', sa.Boolean(), server_default=sa.false(), nullable=False))
        batch_op.add_column(sa.Column('has_lateral', sa.Boolean(), server_default=sa.false(), nullable=False))
        batch_op.add_column(sa.Column('views_complete', sa.Boolean(), server_default=sa.false(), nullable=False))

    with op.batch_alter_table('instances', schema=None) as batch_op:
        batch_op.add_column(sa.Column('view', sa.String(length=8), nullable=True))
        batch_op.add_column(sa.Column('expected_instances', sa.Integer(), nullable=True))

    # Studies received before this revision: count their distinct instances so a late
    # arrival is compared against what is already there.
    op.execute(
        "UPDATE studies SET instance_count = (SELECT COUNT(DISTINCT i.sop_instance_uid) "
        "FROM instances i WHERE i.study_id = studies.id)"
    )


def downgrade() -> None:
    with op.batch_alter_table('instances', schema=None) as batch_op:
        batch_op.drop_column('expected_instances')
        batch_op.drop_column('view')

    with op.batch_alter_table('studies', schema=None) as batch_op:
        batch_op.drop_column('views_complete')
        batch_op.drop_column('has_lateral')
        batch_op.drop_column('has_frontal')
        batch_op.drop_column('expected_instances')
        batch_op.drop_column('instance_count')
