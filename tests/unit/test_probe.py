"""scoring.probe / evaluation / trained_heads and ``radtriage probe``: planted signals are found,
metrics match hand-computed values, trained heads drive the policy."""

from __future__ import annotations

import csv
import json
import math
import os
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from common import Priority
from radtriage.cli import main
from scoring.embedding import ImageEmbedding
from scoring.errors import ScoringError
from scoring.evaluation import (
    bootstrap_auc_ci,
    evaluate_finding,
    roc_auc,
    roc_curve,
    save_roc_png,
    sensitivity_specificity,
)
from scoring.heads import FindingScores, HeadSet, embed_prompts, highest
from scoring.probe import choose_threshold, fit_logistic, fit_mlp
from scoring.probe_data import load_embeddings, read_labels, save_embeddings
from scoring.trained_heads import Layer, TrainedHead, load_heads
from scoring.urgency import assess, load_policy
from tests.conftest import need

FINDING = "pneumothorax"


def planted(n: int, seed: int, prevalence: float = 0.3, strength: float = 0.6):
    """Random 32×128 token embeddings; positives have every token nudged along one direction."""
    rng = np.random.default_rng(seed)
    direction = np.random.default_rng(99).normal(size=128)
    direction /= np.linalg.norm(direction)
    y = (rng.random(n) < prevalence).astype(int)
    tokens = rng.normal(size=(n, 32, 128))
    tokens += strength * y[:, None, None] * direction * math.sqrt(128) / 4
    tokens /= np.linalg.norm(tokens, axis=-1, keepdims=True)  # contrastive tokens are unit vectors
    return tokens.astype(np.float32), y


def write_set(folder: Path, name: str, n: int, seed: int) -> tuple[Path, Path]:
    tokens, y = planted(n, seed)
    ids = [f"{name}-{i:04d}" for i in range(n)]
    npz = save_embeddings(folder / f"{name}.npz", {i: ImageEmbedding(t) for i, t in zip(ids, tokens)})
    labels = folder / f"{name}.csv"
    with labels.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["image_id", "PNEUMOTHORAX", "note"])
        for k, (i, label) in enumerate(zip(ids, y)):
            writer.writerow([i, "" if k % 17 == 0 else label, "free text"])  # some unknown labels
    return labels, npz


# --- metrics on hand-checked cases -------------------------------------------------------------


def test_auc_and_roc_on_a_hand_checked_case():
    y = [0, 0, 1, 1]
    s = [0.1, 0.4, 0.35, 0.8]
    # Pairs (pos, neg): (0.35>0.1) (0.35<0.4) (0.8>0.1) (0.8>0.4) → 3 of 4.
    assert roc_auc(y, s) == pytest.approx(0.75)
    fpr, tpr, thr = roc_curve(y, s)
    assert fpr.tolist() == [0, 0, 0.5, 0.5, 1]
    assert tpr.tolist() == [0, 0.5, 0.5, 1, 1]
    assert thr[1:].tolist() == [0.8, 0.4, 0.35, 0.1]
    assert roc_auc([0, 1, 0, 1], [1, 1, 1, 2]) == pytest.approx(0.75)  # ties count one half
    assert sensitivity_specificity(y, s, 0.35) == (1.0, 0.5)
    assert sensitivity_specificity(y, s, 0.5) == (0.5, 1.0)
    with pytest.raises(ValueError, match="positive and one negative"):
        roc_auc([1, 1], [0.2, 0.3])


def test_bootstrap_ci_brackets_the_auc_and_is_reproducible():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 300)
    s = y + rng.normal(0, 1.0, 300)
    auc = roc_auc(y, s)
    low, high = bootstrap_auc_ci(y, s, n_boot=400, seed=3)
    assert low < auc < high and 0.05 < high - low < 0.25
    assert bootstrap_auc_ci(y, s, n_boot=400, seed=3) == (low, high)
    perfect = bootstrap_auc_ci([0, 0, 1, 1], [0, 1, 2, 3], n_boot=50)
    assert perfect == (1.0, 1.0)


def test_evaluation_output_and_roc_png(tmp_path):
    pytest.importorskip("matplotlib")
    result = evaluate_finding("pneumothorax", [0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8], threshold=0.35,
                              head="trained", n_boot=100)
    assert (result.auc, result.sensitivity, result.specificity) == (0.75, 1.0, 0.5)
    assert (result.n_positive, result.n_negative) == (2, 2)
    png = save_roc_png(result, tmp_path / "roc.png")
    from PIL import Image

    with Image.open(png) as image:
        assert image.format == "PNG" and image.size[0] > 200


# --- training --------------------------------------------------------------------------------


def test_choose_threshold_reaches_the_target_sensitivity():
    y = np.array([1, 1, 1, 1, 0, 0])
    p = np.array([0.9, 0.8, 0.3, 0.2, 0.5, 0.1])
    assert choose_threshold(y, p, 0.5) == 0.8
    assert choose_threshold(y, p, 0.75) == 0.3
    assert choose_threshold(y, p, 1.0) == 0.2


def test_logistic_fit_matches_the_separating_direction():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 5))
    y = (x[:, 2] + 0.3 * rng.normal(size=400) > 0).astype(float)
    mean, scale, layer = fit_logistic(x, y)
    weights = layer.weight[:, 0]
    assert np.argmax(np.abs(weights)) == 2 and weights[2] > 0


def test_mlp_export_folds_batch_norm_exactly():
    torch = pytest.importorskip("torch")
    from scoring.probe import _export

    torch.manual_seed(0)
    blocks = [torch.nn.Linear(6, 8), torch.nn.ReLU(), torch.nn.BatchNorm1d(8),
              torch.nn.Linear(8, 4), torch.nn.ReLU(), torch.nn.BatchNorm1d(4), torch.nn.Linear(4, 1)]
    for bn in (blocks[2], blocks[5]):  # non-trivial running statistics and affine parameters
        bn.running_mean.uniform_(-1, 1), bn.running_var.uniform_(0.5, 2)
        bn.weight.data.uniform_(0.5, 2), bn.bias.data.uniform_(-1, 1)
    net = torch.nn.Sequential(*blocks).eval()
    layers = _export(blocks)
    assert [l.activation for l in layers] == ["relu", "relu", "none"]
    head = TrainedHead("pneumothorax", "cxr-foundation", "mlp", np.zeros(6), np.ones(6), layers, 0.5)
    x = np.random.default_rng(0).normal(size=(16, 6))
    with torch.no_grad():
        expected = torch.sigmoid(net(torch.as_tensor(x, dtype=torch.float32)))[:, 0].numpy()
    np.testing.assert_allclose(head.predict_features(x), expected, rtol=1e-5, atol=1e-6)


def test_mlp_head_learns_a_simple_rule():
    pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(128, 6))
    y = (x[:, 0] > 0).astype(float)
    mean, scale, layers = fit_mlp(x, y, hidden=(16, 8), epochs=300, learning_rate=1e-2, seed=1)
    head = TrainedHead("pneumothorax", "cxr-foundation", "mlp", mean, scale, layers, 0.5)
    assert roc_auc(y, head.predict_features(x)) > 0.95


def test_trained_head_round_trips_through_json_and_refuses_mismatches(tmp_path):
    layer = Layer(np.array([[2.0], [0.0]]), np.array([-1.0]))
    head = TrainedHead("pneumothorax", "cxr-foundation", "logistic", np.zeros(2), np.ones(2), (layer,), 0.4,
                       {"n_positive": 3})
    path = head.save(tmp_path)
    assert path == tmp_path / "cxr-foundation" / "pneumothorax.json"
    back = load_heads(tmp_path, "cxr-foundation")["pneumothorax"]
    assert back.predict_features(np.array([1.0, 5.0])) == pytest.approx(1 / (1 + math.exp(-1.0)))
    assert back.operating_threshold == 0.4 and back.metadata == {"n_positive": 3}
    assert load_heads(tmp_path, "medsiglip") == {}
    with pytest.raises(ScoringError, match="trained on cxr-foundation"):
        back.predict(ImageEmbedding(np.ones((1, 2), np.float32), model="medsiglip"))
    data = json.loads(path.read_text())
    data["operating_threshold"] = 1.5
    path.write_text(json.dumps(data))
    with pytest.raises(ScoringError, match="invalid trained head"):
        load_heads(tmp_path, "cxr-foundation")


# --- heads + policy --------------------------------------------------------------------------


def _head(threshold: float, finding: str = FINDING) -> TrainedHead:
    # p = sigmoid(10 * (mean of token dimension 0) - 5)
    weight = np.zeros((128, 1))
    weight[0, 0] = 10.0
    return TrainedHead(finding, "cxr-foundation", "logistic", np.zeros(128), np.ones(128),
                       (Layer(weight, np.array([-5.0])),), threshold)


def test_trained_head_replaces_zero_shot_and_uses_its_own_threshold():
    policy = load_policy()
    rng = np.random.default_rng(0)
    prompts = embed_prompts(policy.findings, lambda text: rng.normal(size=128).astype(np.float32))
    heads = HeadSet(policy.findings, prompts, {FINDING: _head(0.6)})
    assert heads.kind(FINDING) == "trained" and heads.kind("cardiomegaly") == "zero-shot"
    tokens = np.zeros((32, 128), np.float32)
    tokens[:, 0] = 0.55  # p = sigmoid(0.5) = 0.62 ≥ 0.6
    tokens[:, 1] = 1.0
    scores = heads.score(ImageEmbedding(tokens))
    assert scores.is_trained(FINDING) and scores[FINDING] == pytest.approx(1 / (1 + math.exp(-0.5)))
    assert scores.head_thresholds == {FINDING: 0.6}
    result = assess(scores, "ROUTINE", policy)
    assert result.priority is Priority.STAT
    # A score calibrated to the training set's class balance, not the site's prevalence: no "p=".
    assert result.reasons[0] == (f"{FINDING} 0.62 ≥ 0.60 (trained-head score, calibrated to its training set's "
                                 "class balance, not this site's prevalence) → STAT")
    # Rescoring stored bytes gives the same scores without any model.
    assert dict(heads.score_bytes(ImageEmbedding(tokens).to_bytes())) == pytest.approx(dict(scores))


def test_policy_trained_threshold_overrides_the_head_and_order_stays_the_floor(tmp_path):
    text = load_policy.__globals__["DEFAULT_POLICY_PATH"].read_text()
    text = text.replace('priority = "STAT"\n', 'priority = "STAT"\ntrained_threshold = 0.9\n', 1)
    path = tmp_path / "policy.toml"
    path.write_text(text)
    policy = load_policy(path)
    assert policy.rule(FINDING).trained_threshold == 0.9
    others = {r.name: -1.0 for r in policy.rules if r.name != FINDING}
    scores = FindingScores({**others, FINDING: 0.8}, {FINDING: 0.5})
    assert policy.threshold_for(FINDING, scores) == 0.9
    assert assess(scores, "ROUTINE", policy).priority is Priority.ROUTINE
    assert assess(scores, "URGENT", policy).priority is Priority.URGENT  # never below the order
    # At the threshold urgency is 50 × severity, as for zero-shot scores.
    at = assess(FindingScores({**others, FINDING: 0.9}, {FINDING: 0.5}), "ROUTINE", policy)
    assert at.priority is Priority.STAT and at.urgency_score == pytest.approx(50.0)


def test_highest_keeps_head_thresholds_and_refuses_mixed_heads():
    a = FindingScores({FINDING: 0.2, "cardiomegaly": 0.1}, {FINDING: 0.5})
    b = FindingScores({FINDING: 0.7, "cardiomegaly": -0.1}, {FINDING: 0.5})
    study = highest([a, b])
    assert dict(study) == {FINDING: 0.7, "cardiomegaly": 0.1} and study.head_thresholds == {FINDING: 0.5}
    with pytest.raises(ValueError, match="different heads"):
        highest([a, FindingScores({FINDING: 0.2, "cardiomegaly": 0.1})])
    with pytest.raises(ValueError, match="probabilities"):
        FindingScores({FINDING: 3.0}, {FINDING: 0.5})


# --- data files ------------------------------------------------------------------------------


def test_labels_csv_with_google_column_names_and_unknowns(tmp_path):
    path = tmp_path / "labels.csv"
    path.write_text("image_id,dicom_file,EFFUSION,PNEUMOTHORAX,comment\n"
                    "a,a.dcm,1,,x\nb,b.dcm,0,-1,y\nc,c.dcm,1,1,z\n")
    table = read_labels(path)
    assert table.ids == ("a", "b", "c")
    assert set(table.labels) == {"pleural_effusion", "pneumothorax"}
    rows, y = table.known("pneumothorax")
    assert rows.tolist() == [2] and y.tolist() == [1.0]
    assert read_labels(path, id_column="dicom_file").ids == ("a.dcm", "b.dcm", "c.dcm")
    with pytest.raises(ValueError, match="row 2, column 'comment'"):
        read_labels(path, findings=["comment"])


def test_google_flat_precomputed_embeddings_load(tmp_path):
    vectors = {"img1": np.arange(4096, dtype=np.float32) / 4096}
    np.savez(tmp_path / "google.npz", **vectors)
    loaded = load_embeddings(tmp_path / "google.npz")
    assert loaded["img1"].contrastive.shape == (32, 128) and loaded["img1"].model == "cxr-foundation"


# --- the CLI ---------------------------------------------------------------------------------


def test_probe_train_recovers_a_planted_signal_and_evaluate_reports_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("RADTRIAGE_CONFIG", raising=False)
    train_labels, train_npz = write_set(tmp_path, "train", 300, seed=1)
    test_labels, test_npz = write_set(tmp_path, "test", 300, seed=2)
    heads = tmp_path / "heads"
    runner = CliRunner()
    trained = runner.invoke(main, ["probe", "train", "--labels", str(train_labels), "--embeddings", str(train_npz),
                                   "--heads-dir", str(heads)])
    assert trained.exit_code == 0, trained.output
    assert "calibrated to this training set's class balance" in trained.output
    head = load_heads(heads, "cxr-foundation")[FINDING]
    assert head.metadata["cv_auc"] > 0.95
    assert head.metadata["n_positive"] + head.metadata["n_negative"] == 300 - len(range(0, 300, 17))

    out = tmp_path / "eval"
    result = runner.invoke(main, ["probe", "evaluate", "--labels", str(test_labels), "--embeddings", str(test_npz),
                                  "--heads-dir", str(heads), "--out", str(out), "--bootstrap", "200"])
    assert result.exit_code == 0, result.output
    (row,) = json.loads((out / "evaluation.json").read_text())
    assert row["finding"] == FINDING and row["head"] == "trained"
    assert row["auc"] > 0.95 and row["auc_ci_low"] > 0.9
    assert row["threshold"] == pytest.approx(head.operating_threshold)
    # Recompute the reported numbers independently from the stored head.
    table = read_labels(test_labels)
    emb = load_embeddings(test_npz)
    rows, y = table.known(FINDING)
    p = np.array([head.predict(emb[table.ids[r]]) for r in rows])
    assert row["auc"] == pytest.approx(roc_auc(y, p))
    assert (row["sensitivity"], row["specificity"]) == pytest.approx(sensitivity_specificity(y, p, head.operating_threshold))
    assert (out / "evaluation.csv").read_text().startswith("finding,head,n_positive")
    if (out / f"roc_{FINDING}.png").exists():
        assert (out / f"roc_{FINDING}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "pneumothorax" in result.output and "trained" in result.output
    assert "not this site's prevalence" in result.output


def test_probe_evaluate_zero_shot_from_text_embeddings(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    labels, npz = write_set(tmp_path, "set", 120, seed=4)
    policy = load_policy()
    rule = policy.rule(FINDING)
    direction = np.random.default_rng(99).normal(size=128)
    np.savez(tmp_path / "text.npz", **{rule.prompt_positive: direction, rule.prompt_negative: -direction})
    result = CliRunner().invoke(main, ["probe", "evaluate", "--labels", str(labels), "--embeddings", str(npz),
                                       "--text-embeddings", str(tmp_path / "text.npz"), "--zero-shot",
                                       "--heads-dir", str(tmp_path / "none"), "--out", str(tmp_path / "e"),
                                       "--bootstrap", "100", "--record-validation"])
    assert result.exit_code == 0, result.output
    (row,) = json.loads((tmp_path / "e" / "evaluation.json").read_text())
    assert row["head"] == "zero-shot" and row["threshold"] == rule.threshold and row["auc"] > 0.95
    # The sign-off: a validation record bound to this embedder, prompt pair and threshold.
    from scoring.evaluation import validated_findings

    assert "validation record written" in result.output
    assert validated_findings(tmp_path / "none", "cxr-foundation", policy.rules) == {FINDING}


def test_probe_needs_exactly_one_embedding_source(tmp_path):
    labels = tmp_path / "l.csv"
    labels.write_text("image_id,pneumothorax\na,1\n")
    result = CliRunner().invoke(main, ["probe", "train", "--labels", str(labels)])
    assert result.exit_code != 0 and "exactly one of --embeddings or --dicom" in result.output


def test_probe_dicom_keeps_the_hub_offline_like_every_command(tmp_path, monkeypatch):
    # Set, then removed: the command starts without HF_HUB_OFFLINE and the test leaves none behind.
    monkeypatch.setenv("HF_HUB_OFFLINE", "removed below")
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.delenv("RADTRIAGE_CONFIG", raising=False)
    monkeypatch.delenv("RADTRIAGE_EMBEDDER", raising=False)
    monkeypatch.setenv("RADTRIAGE_CXR_FOUNDATION_DIR", str(tmp_path / "no-model"))
    labels = tmp_path / "labels.csv"
    labels.write_text("path,pneumothorax\na.dcm,1\n")
    result = CliRunner().invoke(main, ["probe", "train", "--labels", str(labels), "--dicom", str(tmp_path)])
    assert result.exit_code == 1 and "cannot embed DICOM files" in result.output
    assert os.environ.get("HF_HUB_OFFLINE") == "1"  # set by the settings loader, before any model loads


def test_scoring_package_exports_and_imports_no_ml_library():
    import os
    import subprocess
    import sys

    import scoring

    assert {"HeadSet", "TrainedHead", "ImageEmbedding", "Triager"} <= set(scoring.__all__)
    root = Path(__file__).parents[2]
    code = (
        "import sys, scoring, scoring.probe, scoring.probe_data, scoring.evaluation, scoring.medsiglip, "
        "scoring.backends, radtriage.cli_probe; "
        "sys.exit(any(m in sys.modules for m in ('tensorflow', 'torch', 'transformers', 'matplotlib')))"
    )
    env = {**os.environ, "PYTHONPATH": str(root)}
    assert subprocess.run([sys.executable, "-c", code], cwd=root, env=env).returncode == 0


def test_probe_train_from_dicom_with_the_standin_model(tmp_path, monkeypatch, cxr_foundation_dir):
    pytest.importorskip("transformers")
    samples = Path(__file__).parents[2] / ".." / "shared" / "dicom_samples"
    need(samples.is_dir(), "shared DICOM samples")
    files = sorted((samples / "derived").glob("*.dcm"))[:4] + sorted((samples / "chest").glob("*.dcm"))[:4]
    labels = tmp_path / "labels.csv"
    rows = [f"{p.relative_to(samples)},{k % 2}" for k, p in enumerate(files)] + ["edge/pydicom_MR_truncated.dcm,1"]
    labels.write_text("path,pneumothorax\n" + "\n".join(rows) + "\n")
    monkeypatch.setenv("RADTRIAGE_CXR_FOUNDATION_DIR", str(cxr_foundation_dir))
    monkeypatch.delenv("RADTRIAGE_EMBEDDER", raising=False)
    heads = tmp_path / "heads"
    saved = tmp_path / "emb.npz"
    result = CliRunner().invoke(main, ["probe", "train", "--labels", str(labels), "--dicom", str(samples),
                                       "--heads-dir", str(heads), "--folds", "2", "--save-embeddings", str(saved)])
    assert result.exit_code == 0, result.output
    assert "row 10: not embedded" in result.output  # the truncated MR fails alone, with its reason
    assert "1 of 9 labelled image(s) have no embedding" in result.output
    assert set(load_embeddings(saved)) == {r.split(",")[0] for r in rows[:-1]}
    head = load_heads(heads, "cxr-foundation")["pneumothorax"]
    assert head.metadata["n_positive"] + head.metadata["n_negative"] == 8
