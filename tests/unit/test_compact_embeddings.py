"""The compact stored embedding (half-precision contrastive tokens and their float32 mean): every
zero-shot head scores it as the full embedding within ``COMPACT_TOLERANCE``, every trained head
exactly, and it fits the footprint budget of 40 KB per image."""

from __future__ import annotations

import numpy as np
import pytest

from scoring.embedding import COMPACT_TOLERANCE, ImageEmbedding
from scoring.heads import HeadSet, embed_prompts
from scoring.probe import train_head
from scoring.urgency import load_policy
from tests.factories import radiograph

BUDGET = 40 * 1024  # bytes per image


def _embeddings(cxr_foundation_dir, count: int):
    from dicom.pixels import to_model_png
    from scoring.backends import EmbedderConfig, load_backend

    backend = load_backend(EmbedderConfig(cxr_foundation_dir=cxr_foundation_dir))
    images = [backend.embed_image(to_model_png(radiograph(size=128, seed=seed))) for seed in range(count)]
    return backend, images


def test_every_head_scores_compact_embeddings_as_full_ones(cxr_foundation_dir):
    backend, images = _embeddings(cxr_foundation_dir, 40)
    policy = load_policy()
    prompts = embed_prompts(policy.findings, backend.embed_text)
    pooled = np.stack([image.pooled for image in images])
    # Trained heads fitted on these very embeddings, so their weights have the scale real ones have.
    labels = (pooled[:, 0] > np.median(pooled[:, 0])).astype(float)
    names = [finding.name for finding in policy.findings]
    trained = {names[0]: train_head(names[0], pooled, labels, embedder=backend.name),
               names[1]: train_head(names[1], pooled, 1 - labels, embedder=backend.name)}
    heads = {"zero-shot": HeadSet(policy.findings, prompts), "trained": HeadSet(policy.findings, prompts, trained)}

    worst = {"zero-shot": 0.0, "trained": 0.0}
    for image in images:
        stored = image.to_bytes(compact=True)
        assert len(stored) <= BUDGET
        compact = ImageEmbedding.from_bytes(stored)
        assert compact.general is None and compact.contrastive.dtype == np.float32
        for kind, head_set in heads.items():
            full, small = head_set.score(image), head_set.score(compact)
            assert set(full) == set(small) and dict(full.head_thresholds) == dict(small.head_thresholds)
            for name in full:
                kind = "trained" if full.is_trained(name) else "zero-shot"
                worst[kind] = max(worst[kind], abs(full[name] - small[name]))
    print(f"largest score difference, compact vs full: {worst}")
    assert 0 < worst["zero-shot"] <= COMPACT_TOLERANCE  # half precision moves the cosines, only that much
    assert worst["trained"] == 0  # trained heads read the float32 token mean stored beside the tokens


def test_compact_embedding_is_a_twelfth_of_the_full_one():
    rng = np.random.default_rng(1)
    tokens = rng.normal(size=(32, 128)).astype(np.float32)
    tokens /= np.linalg.norm(tokens, axis=1, keepdims=True)
    image = ImageEmbedding(tokens, rng.normal(size=(32, 768)).astype(np.float32))
    full, compact = image.to_bytes(), image.to_bytes(compact=True)
    assert len(full) > 115_000 and len(compact) < 10_000
    back = ImageEmbedding.from_bytes(compact)
    np.testing.assert_allclose(back.contrastive, tokens, atol=2e-3)
    # Rows written before the compact form are read as they always were.
    np.testing.assert_array_equal(ImageEmbedding.from_bytes(full).general, image.general)


def test_a_single_token_embedding_stays_exact():
    token = np.random.default_rng(2).normal(size=(1, 1152)).astype(np.float32)  # MedSigLIP's shape
    image = ImageEmbedding(token, None, "medsiglip")
    stored = image.to_bytes(compact=True)
    assert len(stored) <= len(image.to_bytes())
    back = ImageEmbedding.from_bytes(stored)
    np.testing.assert_array_equal(back.contrastive, token)
    assert back.model == "medsiglip"


def test_tokens_beyond_half_precision_stay_exact():
    tokens = np.full((32, 128), 1e6, np.float32)
    back = ImageEmbedding.from_bytes(ImageEmbedding(tokens).to_bytes(compact=True))
    np.testing.assert_array_equal(back.contrastive, tokens)


@pytest.mark.parametrize("dtype", [np.float64, np.int32])
def test_other_stored_dtypes_are_still_refused(dtype):
    import io

    buffer = io.BytesIO()
    np.savez(buffer, contrastive=np.zeros((32, 128), dtype), model=np.array("cxr-foundation"))
    with pytest.raises(ValueError):
        ImageEmbedding.from_bytes(buffer.getvalue())
