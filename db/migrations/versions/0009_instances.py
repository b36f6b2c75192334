"""instances: dataset identity for duplicates by content

Each instance row gains the hash of its dataset without the file meta (``dataset_hash``) and,
computed only when another copy of the SOP instance arrives in another encoding, the hash of
its encoding-independent header and decoded pixels (``image_hash``). Rows stored before have
neither; the listener computes them from the stored file the first time it needs them.

Revision ID: 0009
Revises: 0008
"""

import sqlalchemy as sa
from alembic import op

revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('instances', schema=None) as batch_op:
        batch_op.add_column(sa.Column('dataset_hash', sa.String(length=80), nullable=True))
        batch_op.add_column(sa.Column('image_hash', sa.String(length=80), nullable=True))
        batch_op.create_unique_constraint('uq_instance_dataset', ['sop_instance_uid', 'dataset_hash'])


def downgrade() -> None:
    with op.batch_alter_table('instances', schema=None) as batch_op:
        batch_op.drop_constraint('uq_instance_dataset', type_='unique')
        batch_op.drop_column('image_hash')
        batch_op.drop_column('dataset_hash')
