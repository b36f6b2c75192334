"""MedGemma back-end on a tiny Gemma 3 stand-in: real classes, real loader, real generate."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from common import DISCLAIMER
from scoring.draft_prompt import PROMPT_VERSION
from scoring.errors import ModelUnavailable
from scoring.medgemma import Draft, MedGemmaDrafter, missing_model

REPO = Path(__file__).resolve().parents[2]
COMMIT = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture(scope="module")
def drafter(medgemma_dir: Path) -> MedGemmaDrafter:
    return MedGemmaDrafter.load(medgemma_dir, device="cpu", max_new_tokens=24)


def images(n: int, seed: int = 0):
    from PIL import Image

    rng = np.random.default_rng(seed)
    # Different sizes and content: each goes through the processor's own resize.
    return [Image.fromarray(rng.integers(0, 256, (180 + 40 * i, 200), dtype=np.uint8)) for i in range(n)]


def test_batch_of_three_equals_one_by_one(drafter: MedGemmaDrafter) -> None:
    views = ["PA", None, "AP"]  # prompts of different lengths, so the batch is left-padded
    pictures = images(3)

    batch = drafter.draft_batch(pictures, views=views)
    single = [drafter.draft_batch([p], views=[v])[0] for p, v in zip(pictures, views)]

    assert len({d.prompt_tokens for d in batch}) > 1, "prompts must differ in length to test padding"
    for b, s in zip(batch, single):
        assert (b.raw_text, b.findings, b.impression) == (s.raw_text, s.findings, s.impression)
        assert (b.new_tokens, b.prompt_tokens) == (s.new_tokens, s.prompt_tokens)
        assert b.batch_size == 3 and s.batch_size == 1
        assert b.model_id == "medgemma-tiny" and b.prompt_version == PROMPT_VERSION
        assert b.new_tokens > 0 and b.seconds > 0
    # The image reaches the language model (a zero projector would make these equal).
    assert batch[0].raw_text != batch[2].raw_text


def test_loads_the_real_classes_in_float32_on_cpu(drafter: MedGemmaDrafter) -> None:
    import torch

    assert type(drafter.model).__name__ == "Gemma3ForConditionalGeneration"
    assert type(drafter.processor).__name__ == "Gemma3Processor"
    assert drafter.model.dtype == torch.float32 and drafter.device.type == "cpu"
    assert drafter.processor.tokenizer.padding_side == "left"
    assert drafter.model_version.startswith("config-sha256:")


def test_decoding_is_greedy_whatever_generation_config_says(medgemma_dir: Path, drafter) -> None:
    shipped = json.loads((medgemma_dir / "generation_config.json").read_text())
    assert shipped["do_sample"] is True and shipped["top_k"] == 64  # as the real checkpoints ship

    picture = images(1, seed=3)
    texts = {drafter.draft_batch(picture)[0].raw_text for _ in range(5)}
    assert len(texts) == 1


def test_transformers_is_pinned_to_the_tested_major_version() -> None:
    import tomllib

    import transformers

    major = int(transformers.__version__.split(".")[0])
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    declared = [d for group in [project["dependencies"], *project.get("optional-dependencies", {}).values()]
                for d in group if d.replace(" ", "").startswith("transformers")]
    assert declared, "transformers is not declared"
    for spec in declared:
        # Generation defaults merge differently across majors (4.x let a shipped do_sample win).
        assert f">={major}" in spec.replace(" ", "") and f"<{major + 1}" in spec.replace(" ", ""), spec


def test_token_limits(drafter: MedGemmaDrafter, medgemma_dir: Path) -> None:
    assert drafter.draft_batch(images(1))[0].new_tokens <= 24
    fixed = MedGemmaDrafter.load(medgemma_dir, device="cpu", max_new_tokens=7, min_new_tokens=7)
    assert [d.new_tokens for d in fixed.draft_batch(images(2))] == [7, 7]
    with pytest.raises(ValueError):
        MedGemmaDrafter.load(medgemma_dir, device="cpu", max_new_tokens=3, min_new_tokens=4)


def test_bad_input_is_refused(drafter: MedGemmaDrafter) -> None:
    with pytest.raises(ValueError):
        drafter.draft_batch([])
    with pytest.raises(ValueError):
        drafter.draft_batch(images(2), views=["PA"])


def test_hub_snapshot_folder_gives_repo_id_and_commit(medgemma_dir: Path, tmp_path: Path) -> None:
    repo = tmp_path / "hub" / "models--google--medgemma-1.5-4b-it"
    snapshot = repo / "snapshots" / COMMIT
    snapshot.mkdir(parents=True)
    (repo / "blobs").mkdir()
    for f in medgemma_dir.iterdir():  # like the real cache: snapshot files link into blobs/
        blob = repo / "blobs" / f.name
        shutil.copy(f, blob)
        (snapshot / f.name).symlink_to(os.path.relpath(blob, snapshot))

    loaded = MedGemmaDrafter.load(snapshot, device="cpu", max_new_tokens=4)

    assert loaded.model_id == "google/medgemma-1.5-4b-it"
    assert loaded.model_version == COMMIT


def test_missing_model_for_folders(medgemma_dir: Path, tmp_path: Path) -> None:
    assert missing_model(medgemma_dir) is None
    assert "does not exist" in missing_model(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    assert "no config.json" in missing_model(tmp_path / "empty")
    with pytest.raises(ModelUnavailable, match="no config.json"):
        MedGemmaDrafter.load(tmp_path / "empty")


def test_missing_model_for_hub_ids(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert "not in the local Hugging Face cache" in missing_model("google/medgemma-1.5-4b-it", cache_dir=tmp_path)

    repo = tmp_path / "models--google--medgemma-1.5-4b-it"
    (repo / "snapshots" / COMMIT).mkdir(parents=True)
    (repo / "snapshots" / COMMIT / "config.json").write_text("{}")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(COMMIT)
    assert missing_model("google/medgemma-1.5-4b-it", cache_dir=tmp_path) is None

    monkeypatch.setenv("HF_HUB_OFFLINE", "0")  # online: the download happens at load time
    assert missing_model("google/medgemma-4b-it", cache_dir=tmp_path / "empty") is None


def test_missing_model_does_not_import_torch() -> None:
    code = (
        "import sys; from scoring.medgemma import missing_model; "
        "missing_model('google/medgemma-1.5-4b-it'); missing_model('/nowhere'); "
        "assert 'torch' not in sys.modules and 'transformers' not in sys.modules, 'heavy import'"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO)}
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]


def test_draft_renders_with_the_unverified_disclaimer() -> None:
    draft = Draft(
        findings="Lungs are clear.", impression="", raw_text="FINDINGS: Lungs are clear.",
        model_id="google/medgemma-1.5-4b-it", prompt_version=PROMPT_VERSION,
        prompt_tokens=300, new_tokens=9, seconds=0.5,
    )
    text = draft.render()
    assert text.startswith(DISCLAIMER) and "UNVERIFIED" in text and "research use" in text
    assert "FINDINGS:\nLungs are clear." in text and "IMPRESSION:\n(none generated)" in text
    assert draft.disclaimer == DISCLAIMER


@pytest.mark.parametrize(
    "change",
    [{"new_tokens": -1}, {"prompt_tokens": 1.5}, {"seconds": float("nan")}, {"batch_size": 0}, {"model_id": ""}],
)
def test_draft_refuses_bad_values(change: dict) -> None:
    values = dict(
        findings="", impression="", raw_text="", model_id="m", prompt_version="v",
        prompt_tokens=1, new_tokens=1, seconds=0.0,
    )
    with pytest.raises(ValueError):
        Draft(**{**values, **change})


def _template_ids(processor, view: str | None, picture) -> list[int]:
    """What the processor's own chat template gives, tokenised by the processor itself."""
    from scoring.draft_prompt import build_messages

    messages = build_messages(view)
    for part in messages[1]["content"]:
        if part["type"] == "image":
            part["image"] = picture.convert("RGB")
    out = processor.apply_chat_template(
        messages, add_generation_prompt=True, tokenize=True, return_dict=True, return_tensors="pt"
    )
    return out["input_ids"][0].tolist()


def test_prompt_ids_have_one_bos_single_and_batched(drafter: MedGemmaDrafter) -> None:
    bos = drafter.processor.tokenizer.bos_token_id
    pictures, views = images(2), ["PA", None]
    batch = drafter._inputs(pictures, views)
    expected = [_template_ids(drafter.processor, v, p) for p, v in zip(pictures, views)]
    for row, mask, want in zip(batch["input_ids"].tolist(), batch["attention_mask"].tolist(), expected):
        fed = [t for t, m in zip(row, mask) if m]  # left padding dropped
        assert fed == want
        assert fed[0] == bos and fed[1] != bos
    single = drafter._inputs(pictures[:1], views[:1])["input_ids"][0].tolist()
    assert single == expected[0]


def test_images_are_padded_to_square_before_the_processor_resizes(drafter: MedGemmaDrafter) -> None:
    from PIL import Image

    tall = np.random.default_rng(7).integers(0, 256, (200, 160), dtype=np.uint8)
    square = np.zeros((200, 200), dtype=np.uint8)
    square[:, 20:180] = tall  # centred, zeros either side: what Google's serving code feeds

    fed = drafter._inputs([Image.fromarray(tall)], ["PA"])["pixel_values"]
    expected = drafter._inputs([Image.fromarray(square)], ["PA"])["pixel_values"]
    assert fed.shape == expected.shape
    assert (fed == expected).all()
