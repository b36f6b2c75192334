"""studies: the reading state of the worklist (escalation, reader claims, read)

``effective_rank`` is the priority after waiting-time escalation, kept on the row (by
``Study.set_priority`` and the escalation loop) so the worklist is read in index order instead
of computing the escalation of every study on every read. ``urgency_key`` is the urgency score
with an unscored study at -1, so "unscored after every scored one" is a plain descending sort.
A reader's claim (``reader*``) is separate from a worker's (``claimed_by``); ``read_at`` set:
the study has left the active worklist.

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None

ACTIVE = sa.text("read_at IS NULL")


def upgrade() -> None:
    with op.batch_alter_table('studies', schema=None) as batch_op:
        batch_op.add_column(sa.Column('effective_rank', sa.Integer(), nullable=False, server_default='0'))
        batch_op.add_column(sa.Column('escalated_from', sa.String(length=8), nullable=True))
        batch_op.add_column(sa.Column('urgency_key', sa.Float(), nullable=False, server_default='-1'))
        batch_op.add_column(sa.Column('reader', sa.String(length=128), nullable=True))
        batch_op.add_column(sa.Column('reader_claimed_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('reader_active_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('read_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('read_by', sa.String(length=128), nullable=True))
    # Studies stored before: their priority is their effective rank until the escalation loop's
    # first round raises the ones that waited.
    op.execute("UPDATE studies SET effective_rank = priority_rank, "
               "urgency_key = COALESCE(urgency_score, -1)")
    # The keyset order of the active worklist (common.reading_order).
    op.create_index('ix_studies_reading_order', 'studies',
                    [sa.text('effective_rank DESC'), sa.text('urgency_key DESC'), 'received_at', 'id'],
                    sqlite_where=ACTIVE, postgresql_where=ACTIVE)
    # The escalation loop: unread studies of one effective class received before a time.
    op.create_index('ix_studies_escalation_due', 'studies', ['effective_rank', 'received_at'],
                    sqlite_where=ACTIVE, postgresql_where=ACTIVE)
    op.create_index('ix_studies_reader', 'studies', ['reader', 'reader_active_at'],
                    sqlite_where=sa.text("reader IS NOT NULL"), postgresql_where=sa.text("reader IS NOT NULL"))
    if op.get_bind().dialect.name == 'postgresql':
        # Prefix search on accession numbers: byte order, whatever the database's collation.
        op.execute('CREATE INDEX ix_studies_accession ON studies (accession_number COLLATE "C")')
    else:
        op.create_index('ix_studies_accession', 'studies', ['accession_number'])


def downgrade() -> None:
    for name in ('ix_studies_accession', 'ix_studies_reader', 'ix_studies_escalation_due', 'ix_studies_reading_order'):
        op.drop_index(name, table_name='studies')
    with op.batch_alter_table('studies', schema=None) as batch_op:
        for column in ('read_by', 'read_at', 'reader_active_at', 'reader_claimed_at', 'reader', 'urgency_key',
                       'escalated_from', 'effective_rank'):
            batch_op.drop_column(column)
