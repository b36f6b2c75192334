"""instances: content_hash ("algorithm:hex", BLAKE3 from now on) replaces sha256

Rows already stored keep their SHA-256 as "sha256:<hex>"; their files keep their names. An
identical copy of such an instance arriving later is still recognised: the listener hashes
the new bytes with the row's algorithm when it meets one (``db.ingest``).

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('instances', schema=None) as batch_op:
        batch_op.add_column(sa.Column('content_hash', sa.String(length=80), nullable=True))
    op.execute("UPDATE instances SET content_hash = 'sha256:' || sha256")
    with op.batch_alter_table('instances', schema=None) as batch_op:
        batch_op.drop_constraint('uq_instance_revision', type_='unique')
        batch_op.drop_column('sha256')
        batch_op.alter_column('content_hash', existing_type=sa.String(length=80), nullable=False)
        batch_op.create_unique_constraint('uq_instance_revision', ['sop_instance_uid', 'content_hash'])


def downgrade() -> None:
    if op.get_bind().execute(sa.text("SELECT 1 FROM instances WHERE content_hash NOT LIKE 'sha256:%' LIMIT 1")).first():
        raise RuntimeError("instances stored with BLAKE3 have no SHA-256 to go back to")
    with op.batch_alter_table('instances', schema=None) as batch_op:
        batch_op.add_column(sa.Column('sha256', sa.String(length=64), nullable=True))
    op.execute("UPDATE instances SET sha256 = substr(content_hash, 8)")
    with op.batch_alter_table('instances', schema=None) as batch_op:
        batch_op.drop_constraint('uq_instance_revision', type_='unique')
        batch_op.drop_column('content_hash')
        batch_op.alter_column('sha256', existing_type=sa.String(length=64), nullable=False)
        batch_op.create_unique_constraint('uq_instance_revision', ['sop_instance_uid', 'sha256'])
