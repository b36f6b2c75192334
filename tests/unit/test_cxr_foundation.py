"""scoring.cxr_foundation / text_tokenizer / triage: the real loading and inference code on the stand-in.

The ``cxr_foundation_dir`` fixture comes from ``tests/fixtures_models.py`` via ``tests/conftest.py``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from scoring.cxr_foundation import (
    MODEL_PARTS,
    CxrFoundation,
    ImageEmbedding,
    missing_parts,
)
from scoring.errors import ModelUnavailable, ScoringError
from scoring.urgency import assess, load_policy
from tests.conftest import need
from tests.standins import write_vocab

SAMPLES = Path(__file__).parents[2] / ".." / "shared" / "dicom_samples"
ROOT = Path(__file__).parents[2]


def _png(seed: int, shape: tuple[int, int] = (96, 80)) -> bytes:
    """A random 16-bit test image through the project's own PNG encoder."""
    from dicom.pixels import encode_png16

    rng = np.random.default_rng(seed)
    return encode_png16(rng.integers(0, 65536, size=shape, dtype=np.uint16))


@pytest.fixture(scope="module")
def cxr(cxr_foundation_dir):
    pytest.importorskip("transformers")
    return CxrFoundation.load(cxr_foundation_dir)


@pytest.fixture(scope="module")
def vocab(cxr_foundation_dir):
    lines = (cxr_foundation_dir / "vocab.txt").read_text(encoding="utf-8").splitlines()
    return {word: i for i, word in enumerate(lines)}


class _Spy:
    """Wraps a signature to record each call's keyword inputs (the calls still run)."""

    def __init__(self, signature):
        self.signature, self.calls = signature, []

    def __call__(self, *args, **kwargs):
        self.calls.append({k: v.numpy() for k, v in kwargs.items()})
        return self.signature(*args, **kwargs)


# --- without tensorflow ---------------------------------------------------------------------


def test_missing_parts_names_what_is_missing(tmp_path):
    absent = tmp_path / "nowhere"
    assert missing_parts(absent)[0] == f"model folder {absent} does not exist"
    (tmp_path / MODEL_PARTS[0]).mkdir()
    (tmp_path / MODEL_PARTS[0] / "saved_model.pb").write_bytes(b"")
    (tmp_path / MODEL_PARTS[1]).mkdir()  # folder without saved_model.pb
    missing = missing_parts(tmp_path)
    assert len(missing) == 2
    assert MODEL_PARTS[1] in missing[0] and "saved_model.pb" in missing[0]
    assert "vocab.txt" in missing[1]
    (tmp_path / MODEL_PARTS[1] / "saved_model.pb").write_bytes(b"")
    write_vocab(tmp_path / "vocab.txt")
    assert missing_parts(tmp_path) == []
    assert "elsewhere.txt" in missing_parts(tmp_path, tmp_path / "elsewhere.txt")[0]


def test_load_refuses_incomplete_folder_before_importing_tensorflow(tmp_path):
    with pytest.raises(ModelUnavailable) as info:
        CxrFoundation.load(tmp_path)
    assert MODEL_PARTS[0] in info.value.reason and MODEL_PARTS[1] in info.value.reason


def test_scoring_imports_no_ml_library():
    code = (
        "import sys, scoring, scoring.cxr_foundation, scoring.triage, scoring.text_tokenizer; "
        "sys.exit(any(m in sys.modules for m in ('tensorflow', 'torch', 'transformers')))"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    assert subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env).returncode == 0


def _embedding(seed: int = 0) -> ImageEmbedding:
    rng = np.random.default_rng(seed)
    return ImageEmbedding(
        contrastive=rng.normal(size=(32, 128)).astype(np.float32),
        general=rng.normal(size=(32, 768)).astype(np.float32),
    )


def test_image_embedding_checks_shape_dtype_and_values():
    good = _embedding()
    with pytest.raises(ValueError, match="contrastive must be float32"):
        ImageEmbedding(good.contrastive.astype(np.float64), good.general)
    with pytest.raises(ValueError, match="general must be float32"):
        ImageEmbedding(good.contrastive, good.general[:16])
    bad = good.contrastive.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        ImageEmbedding(bad, good.general)
    with pytest.raises(ValueError):
        good.contrastive[0, 0] = 1.0  # read-only


def test_image_embedding_bytes_round_trip():
    emb = _embedding(3)
    back = ImageEmbedding.from_bytes(emb.to_bytes())
    np.testing.assert_array_equal(back.contrastive, emb.contrastive)
    np.testing.assert_array_equal(back.general, emb.general)
    with pytest.raises(ValueError, match="not a stored image embedding"):
        ImageEmbedding.from_bytes(b"garbage")


# --- the real back-end on the stand-in ---------------------------------------------------------


def test_standin_has_the_real_signatures(cxr):
    elixr_args = cxr._elixr_c.structured_input_signature[1]
    assert {k: (v.dtype.name, v.shape.as_list()) for k, v in elixr_args.items()} == {"input_example": ("string", [None])}
    q_args = cxr._qformer.structured_input_signature[1]
    assert {k: (v.dtype.name, v.shape.as_list()) for k, v in q_args.items()} == {
        "image_feature": ("float32", [None, 8, 8, 1376]),
        "ids": ("int32", [None, 1, 128]),
        "paddings": ("float32", [None, 1, 128]),
    }
    assert set(cxr._qformer.structured_outputs) == {
        "all_contrastive_img_emb", "contrastive_img_emb", "img_emb", "contrastive_txt_emb", "txt_emb",
    }


def test_embed_image_sends_one_example_and_zero_text(cxr, monkeypatch):
    import tensorflow as tf

    elixr, qformer = _Spy(cxr._elixr_c), _Spy(cxr._qformer)
    monkeypatch.setattr(cxr, "_elixr_c", elixr)
    monkeypatch.setattr(cxr, "_qformer", qformer)
    png = _png(1)
    emb = cxr.embed_image(png)

    assert emb.contrastive.shape == (32, 128) and emb.general.shape == (32, 768)
    np.testing.assert_allclose(np.linalg.norm(emb.contrastive, axis=1), 1.0, rtol=1e-5)
    (call,) = elixr.calls
    assert call["input_example"].shape == (1,)  # one image per call
    example = tf.train.Example.FromString(call["input_example"][0])
    assert example.features.feature["image/encoded"].bytes_list.value == [png]
    assert example.features.feature["image/format"].bytes_list.value == [b"png"]
    (q,) = qformer.calls
    assert q["image_feature"].shape == (1, 8, 8, 1376)
    assert q["ids"].dtype == np.int32 and q["ids"].shape == (1, 1, 128) and not q["ids"].any()
    assert q["paddings"].dtype == np.float32 and q["paddings"].shape == (1, 1, 128) and not q["paddings"].any()


def test_different_images_give_different_embeddings(cxr):
    a, b = cxr.embed_image(_png(1)), cxr.embed_image(_png(2))
    assert not np.allclose(a.contrastive, b.contrastive)
    again = cxr.embed_image(_png(1))
    np.testing.assert_allclose(again.contrastive, a.contrastive, rtol=1e-6)


def test_embed_image_refuses_non_png(cxr):
    with pytest.raises(ScoringError, match="not a PNG"):
        cxr.embed_image(b"GIF89a....")
    with pytest.raises(ScoringError, match="elixr-c call failed"):
        cxr.embed_image(b"\x89PNG\r\n\x1a\n broken")


def test_text_tokenisation_follows_the_reference(cxr, vocab):
    tokens = cxr._tokenizer("No PNEUMOTHORAX")  # lower-cased first
    ids, paddings = tokens.ids[0, 0], tokens.paddings[0, 0]
    assert tokens.ids.shape == tokens.paddings.shape == (1, 1, 128)
    assert ids[:3].tolist() == [101, vocab["no"], vocab["pneumothorax"]]
    assert not ids[3:].any()  # [SEP] (102) became 0, then [PAD]
    assert 102 not in ids
    # paddings = 1 - mask, and the removed [SEP] counts as padding.
    assert paddings[:3].tolist() == [0.0, 0.0, 0.0] and (paddings[3:] == 1.0).all()


def test_long_text_is_truncated_to_128_with_sep_removed(cxr, vocab):
    tokens = cxr._tokenizer("small " * 300)
    ids, paddings = tokens.ids[0, 0], tokens.paddings[0, 0]
    assert ids[0] == 101 and (ids[1:127] == vocab["small"]).all()
    assert ids[127] == 0 and paddings[127] == 1.0  # the [SEP] slot
    assert not paddings[:127].any()


def test_default_prompts_need_no_unknown_words(cxr):
    for finding in load_policy().findings:
        for prompt in (finding.prompt_positive, finding.prompt_negative):
            assert cxr._tokenizer.unk_token not in cxr._tokenizer.tokens(prompt), prompt


def test_embed_text_uses_zero_image_and_is_cached(cxr, monkeypatch):
    qformer = _Spy(cxr._qformer)
    monkeypatch.setattr(cxr, "_qformer", qformer)
    monkeypatch.setattr(cxr, "_text_cache", {})
    first = cxr.embed_text("large pleural effusion")
    assert first.shape == (128,) and first.dtype == np.float32
    assert np.linalg.norm(first) == pytest.approx(1.0, rel=1e-5)
    assert cxr.embed_text("large pleural effusion") is first
    (call,) = qformer.calls
    assert call["image_feature"].shape == (1, 8, 8, 1376) and not call["image_feature"].any()
    assert call["ids"][0, 0, 0] == 101
    other = cxr.embed_text("no pleural effusion")
    assert not np.allclose(first, other)


# --- Triager ---------------------------------------------------------------------------------


def test_triager_scores_real_samples_end_to_end(cxr_foundation_dir):
    pydicom = pytest.importorskip("pydicom")
    pytest.importorskip("transformers")
    from dicom.pixels import to_model_png
    from scoring.backends import EmbedderConfig
    from scoring.triage import Triager

    files = [SAMPLES / "chest" / n for n in ("CR-MONO1-10-chest.dcm", "highdicom_dx_image.dcm")]
    need(all(f.exists() for f in files), "shared DICOM samples")
    policy = load_policy()
    triager = Triager.load(EmbedderConfig(cxr_foundation_dir=cxr_foundation_dir), policy)
    assert set(triager.prompt_embeddings) == {r.name for r in policy.rules}
    results = [triager.score_png(to_model_png(pydicom.dcmread(f, force=True))) for f in files]
    (emb_a, scores_a), (emb_b, scores_b) = results
    assert set(scores_a) == {r.name for r in policy.rules}
    assert dict(scores_a) != dict(scores_b)
    assert dict(triager.score_embedding(ImageEmbedding.from_bytes(emb_a.to_bytes()))) == pytest.approx(dict(scores_a))
    assessment = assess(scores_a, "URGENT", policy)
    assert assessment.priority.rank >= 1 and 0 <= assessment.urgency_score <= 100
