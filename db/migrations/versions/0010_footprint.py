"""footprint: compact stored embeddings, and instances whose file retention purged

Every stored embedding is rewritten in the compact form triage now stores (contrastive tokens in
half precision with their float32 mean, no general tokens: 9 KB instead of 115.5 KB per image);
``instances.purged_at`` records when retention removed an instance's file.

Revision ID: 0010
Revises: 0009
"""

import io
import zipfile

import numpy as np
import sqlalchemy as sa
from alembic import op

revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None

_PAGE = 500  # rows re-encoded per round trip, so a large table never sits in memory at once
_HALF_MAX = float(np.finfo(np.float16).max)


def upgrade() -> None:
    with op.batch_alter_table("instances") as batch:
        batch.add_column(sa.Column("purged_at", sa.DateTime(timezone=True), nullable=True))
    _rewrite(_compact)


def downgrade() -> None:
    _rewrite(_full_precision)
    with op.batch_alter_table("instances") as batch:
        batch.drop_column("purged_at")


# The stored format is frozen here as it was at this revision (a migration must not follow later
# changes of scoring.embedding): an .npz of "contrastive", "model", optional "general" and, in
# the compact form, "token_mean".

def _compact(arrays: dict) -> dict | None:
    tokens = arrays["contrastive"]
    if tokens.dtype != np.float32:
        return None  # already compact
    if tokens.shape[0] > 1 and np.abs(tokens).max() <= _HALF_MAX:
        out = {"contrastive": tokens.astype(np.float16),
               "token_mean": tokens.mean(axis=0, dtype=np.float64).astype(np.float32)}
    elif "general" in arrays:
        out = {"contrastive": tokens}  # a single token is its own mean: it stays float32
    else:
        return None
    if "model" in arrays:
        out["model"] = arrays["model"]
    return out


def _full_precision(arrays: dict) -> dict | None:
    """What the code before this revision reads: float32 tokens (the general ones stay gone)."""
    if arrays["contrastive"].dtype != np.float16 and "token_mean" not in arrays:
        return None
    out = {"contrastive": arrays["contrastive"].astype(np.float32)}
    if "model" in arrays:
        out["model"] = arrays["model"]
    return out


def _rewrite(convert) -> None:
    connection = op.get_bind()
    scores = sa.table("scores", sa.column("id", sa.Integer), sa.column("embedding", sa.LargeBinary))
    last = 0
    while True:
        rows = connection.execute(
            sa.select(scores.c.id, scores.c.embedding)
            .where(scores.c.id > last, scores.c.embedding.is_not(None)).order_by(scores.c.id).limit(_PAGE)
        ).all()
        if not rows:
            return
        for row_id, data in rows:
            try:
                with np.load(io.BytesIO(data), allow_pickle=False) as npz:
                    arrays = {name: npz[name] for name in npz.files}
                converted = convert(arrays) if "contrastive" in arrays else None
            except (OSError, ValueError, EOFError, zipfile.BadZipFile):
                converted = None  # not an embedding this code wrote: left as it is
            if converted is not None:
                buffer = io.BytesIO()
                np.savez(buffer, **converted)
                connection.execute(scores.update().where(scores.c.id == row_id).values(embedding=buffer.getvalue()))
        last = rows[-1][0]
