"""Upgrading to migration 0010 rewrites every stored embedding in the compact form: the rows
shrink from 115.5 KB to under 10 KB, and rescoring them gives what the full embedding gave."""

from __future__ import annotations

import datetime

import numpy as np
from sqlalchemy import select, text

from db.models import Score
from db.session import _MIGRATIONS, make_engine, make_session_factory, migrate
from scoring.embedding import COMPACT_TOLERANCE, ImageEmbedding
from scoring.heads import HeadSet, embed_prompts
from scoring.urgency import load_policy


def _embedding(seed: int) -> ImageEmbedding:
    rng = np.random.default_rng(seed)
    tokens = rng.normal(size=(32, 128)).astype(np.float32)
    tokens /= np.linalg.norm(tokens, axis=1, keepdims=True)
    return ImageEmbedding(tokens, rng.normal(size=(32, 768)).astype(np.float32))


def test_upgrade_compacts_stored_embeddings_and_downgrade_restores_readable_rows(database_url):
    engine = make_engine(database_url)
    migrate(engine, "0009")
    now = datetime.datetime.now(datetime.UTC)
    images = [_embedding(seed) for seed in range(3)]
    with engine.begin() as connection:  # as triage stored them before the compact form
        study_id = connection.execute(text(
            "INSERT INTO studies (study_instance_uid, ordered_priority, priority, priority_rank, status, reasons, "
            "revision, received_at, last_instance_at) VALUES ('1.2.3', 'ROUTINE', 'ROUTINE', 2, 'triaged', '[]', 1, "
            ":now, :now) RETURNING id"), {"now": now}).scalar_one()
        for number, image in enumerate(images):
            connection.execute(text(
                "INSERT INTO scores (study_id, revision, model, findings, embedding, created_at) "
                "VALUES (:study, 1, :model, '{}', :embedding, :now)"),
                {"study": study_id, "model": f"m{number}", "embedding": image.to_bytes(), "now": now})
        connection.execute(text(
            "INSERT INTO scores (study_id, revision, model, findings, embedding, created_at) "
            "VALUES (:study, 1, 'none', '{}', NULL, :now)"), {"study": study_id, "now": now})
        assert min(len(image.to_bytes()) for image in images) > 115_000

    migrate(engine)
    sessions = make_session_factory(engine)
    with sessions() as session:
        stored = session.scalars(select(Score.embedding).where(Score.embedding.is_not(None)).order_by(Score.id)).all()
    assert len(stored) == 3 and max(map(len, stored)) < 10_000

    policy = load_policy()
    rng = np.random.default_rng(7)
    heads = HeadSet(policy.findings, embed_prompts(policy.findings, lambda _: rng.normal(size=128).astype(np.float32)))
    for image, data in zip(images, stored):
        full, compact = heads.score(image), heads.score_bytes(data)
        assert max(abs(full[name] - compact[name]) for name in full) <= COMPACT_TOLERANCE
        np.testing.assert_array_equal(ImageEmbedding.from_bytes(data).pooled, image.pooled)

    _downgrade(engine, "0009")  # the code before 0010 reads float32 tokens only
    with engine.connect() as connection:
        older = connection.execute(text("SELECT embedding FROM scores WHERE embedding IS NOT NULL ORDER BY id")).scalars()
        for image, data in zip(images, older):
            back = ImageEmbedding.from_bytes(data)
            assert back.contrastive.dtype == np.float32 and back.token_mean is None
            np.testing.assert_allclose(back.contrastive, image.contrastive, atol=1e-3)
    engine.dispose()


def _downgrade(engine, revision: str) -> None:
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(_MIGRATIONS))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, revision)
