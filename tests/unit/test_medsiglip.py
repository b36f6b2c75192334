"""scoring.medsiglip and the embedder choice: the real loading and inference code on a tiny SigLIP."""

from __future__ import annotations

import numpy as np
import pytest

from scoring.backends import EmbedderConfig, load_backend, missing_for
from scoring.embedding import ImageEmbedding
from scoring.errors import ModelUnavailable, PolicyError, ScoringError
from scoring.medsiglip import MODEL_NAME, MedSiglip, missing_parts
from scoring.trained_heads import Layer, TrainedHead
from scoring.triage import Triager
from scoring.urgency import DEFAULT_POLICY_PATH, MEDSIGLIP_POLICY_PATH, assess, load_policy
from tests.fixtures_models import medsiglip_dir  # noqa: F401  (fixture)


def _png(seed: int) -> bytes:
    from dicom.pixels import encode_png16

    return encode_png16(np.random.default_rng(seed).integers(0, 65536, size=(120, 90), dtype=np.uint16))


@pytest.fixture(scope="module")
def siglip(medsiglip_dir):
    return MedSiglip.load(medsiglip_dir)


def test_missing_parts_without_loading(tmp_path, monkeypatch):
    assert "does not exist" in missing_parts(tmp_path / "absent")[0]
    assert "no config.json" in missing_parts(tmp_path)[0]
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    assert "HF_HUB_OFFLINE" in missing_parts("google/medsiglip-448")[0]
    with pytest.raises(ModelUnavailable, match="not in the local Hugging Face cache"):
        MedSiglip.load("google/medsiglip-448")
    config = EmbedderConfig(embedder="medsiglip", medsiglip_model=str(tmp_path / "absent"))
    assert "does not exist" in missing_for(config)[0]
    with pytest.raises(ValueError, match="embedder must be one of"):
        EmbedderConfig(embedder="other")


def test_missing_parts_looks_in_the_given_hub_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    (reason,) = missing_parts("google/medsiglip-448", cache_dir=tmp_path / "empty")
    assert "google/medsiglip-448" in reason and str(tmp_path / "empty") in reason  # says where it looked
    commit = "0" * 40
    repo = tmp_path / "models--google--medsiglip-448"
    (repo / "snapshots" / commit).mkdir(parents=True)
    (repo / "snapshots" / commit / "config.json").write_text("{}")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    assert missing_parts("google/medsiglip-448", cache_dir=tmp_path) == []


def test_standin_loads_through_the_auto_classes(siglip):
    assert type(siglip._model).__name__ == "SiglipModel"
    assert type(siglip._processor).__name__ == "SiglipProcessor"
    assert siglip._processor.image_processor.size == {"height": 448, "width": 448}


def test_image_embedding_is_one_normalised_token_and_depends_on_pixels(siglip):
    a, b = siglip.embed_image(_png(1)), siglip.embed_image(_png(2))
    assert a.model == MODEL_NAME and a.general is None
    assert a.contrastive.shape == (1, 32) and a.contrastive.dtype == np.float32
    assert np.linalg.norm(a.contrastive) == pytest.approx(1.0, abs=1e-5)
    assert not np.allclose(a.contrastive, b.contrastive)
    assert ImageEmbedding.from_bytes(a.to_bytes()).model == MODEL_NAME
    with pytest.raises(ScoringError, match="not a PNG"):
        siglip.embed_image(b"GIF89a")


def test_text_is_padded_to_max_length_and_cached(siglip, monkeypatch):
    seen = []
    real = siglip._model.get_text_features

    def spy(**kwargs):
        seen.append(kwargs["input_ids"])
        return real(**kwargs)

    monkeypatch.setattr(siglip._model, "get_text_features", spy)
    first = siglip.embed_text("small pneumothorax")
    assert siglip.embed_text("small pneumothorax") is first  # cached: one model call
    assert len(seen) == 1 and tuple(seen[0].shape) == (1, 64)  # padding="max_length", as SigLIP was trained
    assert seen[0][0, -1].item() == 0  # <pad>
    assert first.shape == (32,) and not first.flags.writeable
    assert not np.allclose(first, siglip.embed_text("no pneumothorax"))


def test_medsiglip_triager_scores_zero_shot_and_with_its_own_heads(medsiglip_dir, tmp_path):
    policy = load_policy(MEDSIGLIP_POLICY_PATH)
    config = EmbedderConfig(embedder="medsiglip", medsiglip_model=str(medsiglip_dir), heads_dir=tmp_path)
    # A head trained in CXR Foundation's space is not used for MedSigLIP (it lives in another folder).
    cxr_head = TrainedHead("pneumothorax", "cxr-foundation", "logistic", np.zeros(128), np.ones(128),
                           (Layer(np.zeros((128, 1)), np.zeros(1)),), 0.5)
    cxr_head.save(tmp_path)
    triager = Triager.load(config, policy)
    assert triager.model_name == MODEL_NAME and triager.heads.trained == {}
    embedding, scores = triager.score_png(_png(3))
    assert set(scores) == {r.name for r in policy.rules} and not any(map(scores.is_trained, scores))
    assert -2.0 <= min(scores.values()) and max(scores.values()) <= 2.0
    head = TrainedHead("pneumothorax", MODEL_NAME, "logistic", np.zeros(32), np.ones(32),
                       (Layer(np.zeros((32, 1)), np.array([3.0])),), 0.5)
    head.save(tmp_path)
    triager = Triager.load(config, policy)
    again = triager.heads.score_bytes(embedding.to_bytes())
    assert again.is_trained("pneumothorax") and again["pneumothorax"] == pytest.approx(1 / (1 + np.exp(-3.0)))
    assert assess(again, "ROUTINE", policy).priority.value == "STAT"
    assert load_backend(config).name == MODEL_NAME


def test_a_radiograph_is_padded_to_square_not_stretched(siglip):
    from dicom.pixels import encode_png16
    from scoring.hub import pad_to_square

    tall = np.random.default_rng(5).integers(0, 65536, size=(120, 90), dtype=np.uint16)
    tall[0, 0] = 0  # zero is the image's minimum, so padding with zeros changes no scaling
    square = pad_to_square(tall)
    assert square.shape == (120, 120) and square[:, :15].max() == 0 and square[:, 105:].max() == 0

    a = siglip.embed_image(encode_png16(tall)).contrastive
    b = siglip.embed_image(encode_png16(square)).contrastive
    np.testing.assert_allclose(a, b, atol=1e-5)


def test_16_bit_detail_below_one_8_bit_level_reaches_the_model(siglip):
    from dicom.pixels import encode_png16

    levels = np.random.default_rng(6).integers(0, 255, size=(96, 96)).astype(np.uint16) * 257  # 8-bit levels
    levels[0, 0], levels[0, 1] = 0, 65535
    finer = levels.copy()
    finer[10:80, 10:80] += 100  # less than half an 8-bit level: 8-bit rounding would erase it

    a = siglip.embed_image(encode_png16(levels)).contrastive
    b = siglip.embed_image(encode_png16(finer)).contrastive
    assert np.abs(a - b).max() > 1e-6


def test_a_cxr_foundation_policy_is_refused_for_medsiglip(medsiglip_dir, tmp_path):
    config = EmbedderConfig(embedder="medsiglip", medsiglip_model=str(medsiglip_dir), heads_dir=tmp_path)
    with pytest.raises(PolicyError, match=r"cxr-foundation's score scale, but the embedder is medsiglip.*"
                                          r"scoring/policy_medsiglip.toml"):
        Triager.load(config, load_policy(DEFAULT_POLICY_PATH))


def test_the_shipped_medsiglip_policy_is_honest_about_its_thresholds():
    medsiglip, cxr = load_policy(MEDSIGLIP_POLICY_PATH), load_policy(DEFAULT_POLICY_PATH)
    assert (medsiglip.embedder, cxr.embedder) == ("medsiglip", "cxr-foundation")
    assert [r.name for r in medsiglip.rules] == [r.name for r in cxr.rules]
    assert not any(r.validated for r in medsiglip.rules)  # placeholders, never evaluated on MedSigLIP
