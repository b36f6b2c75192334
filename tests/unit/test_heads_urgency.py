"""scoring.heads and scoring.urgency: zero-shot scores, the shipped policy, and the priority rules."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from common import Priority
from scoring.cxr_foundation import ImageEmbedding
from scoring.errors import PolicyError, ScoringError
from scoring.heads import (
    FindingScores,
    embed_prompts,
    max_cosine,
    score_findings,
    zero_shot_score,
)
from scoring.urgency import (
    DEFAULT_POLICY_PATH,
    Assessment,
    FindingRule,
    Policy,
    assess,
    load_policy,
)

DOCUMENTED_PRIORITIES = {
    "pneumothorax": Priority.STAT,
    "pneumoperitoneum": Priority.STAT,
    "widened_mediastinum": Priority.STAT,
    "pleural_effusion": Priority.URGENT,
    "pulmonary_edema": Priority.URGENT,
    "airspace_opacity": Priority.URGENT,
    "cardiomegaly": Priority.ROUTINE,
}


def _rule(name="pneumothorax", threshold=0.2, severity=1.0, priority="STAT", validated=True) -> FindingRule:
    return FindingRule(name, name, f"{name} present", f"no {name}", threshold, severity, Priority(priority),
                       validated=validated)


# --- heads --------------------------------------------------------------------------------


def test_max_cosine_is_the_best_token():
    tokens = np.array([[1.0, 0.0], [0.0, 1.0]])
    assert max_cosine(tokens, np.array([1.0, 1.0])) == pytest.approx(1 / math.sqrt(2))
    assert max_cosine(tokens, np.array([0.0, 3.0])) == pytest.approx(1.0)
    assert max_cosine(np.array([[2.0, 0.0], [-1.0, 0.0]]), np.array([-5.0, 0.0])) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="does not match"):
        max_cosine(tokens, np.ones(3))


def test_zero_shot_score_is_positive_minus_negative_similarity():
    tokens = np.array([[1.0, 0.0, 0.0], [0.6, 0.8, 0.0]])
    pos, neg = np.array([0.0, 1.0, 0.0]), np.array([0.0, 0.0, 1.0])
    assert zero_shot_score(tokens, pos, neg) == pytest.approx(0.8 - 0.0)
    assert zero_shot_score(tokens, neg, pos) == pytest.approx(-0.8)


def test_score_findings_on_embedding_and_raw_tokens():
    contrastive = np.zeros((32, 128), dtype=np.float32)
    contrastive[5, 0] = 1.0  # one token points along axis 0
    emb = ImageEmbedding(contrastive, np.zeros((32, 768), dtype=np.float32))
    axis = np.eye(128, dtype=np.float32)
    prompts = {"pneumothorax": (axis[0], axis[1]), "cardiomegaly": (axis[2], axis[0])}
    scores = score_findings(emb, prompts)
    assert dict(scores) == pytest.approx({"pneumothorax": 1.0, "cardiomegaly": -1.0})
    assert dict(score_findings(contrastive, prompts)) == dict(scores)


def test_embed_prompts_embeds_each_pair_once():
    calls = []

    def embed(text):
        calls.append(text)
        return np.full(4, len(text), dtype=np.float32)

    findings = {f.name: f for f in load_policy().findings}
    prompts = embed_prompts([findings["pneumothorax"], findings["pleural_effusion"]], embed)
    assert list(prompts) == ["pneumothorax", "pleural_effusion"]
    assert calls == ["small pneumothorax", "no pneumothorax", "large pleural effusion", "no pleural effusion"]


def test_finding_scores_are_finite_and_read_only():
    scores = FindingScores({"pneumothorax": 0.25, "cardiomegaly": np.float32(-0.5)})
    assert scores["pneumothorax"] == 0.25 and type(scores["cardiomegaly"]) is float
    assert len(scores) == 2 and "pneumothorax" in scores
    with pytest.raises(TypeError):
        scores.scores["pneumothorax"] = 1.0
    for bad in (float("nan"), float("inf")):
        with pytest.raises(ValueError, match="not finite"):
            FindingScores({"pneumothorax": bad})


def test_shipped_policy_uses_googles_prompt_pairs():
    pairs = {f.name: (f.prompt_positive, f.prompt_negative) for f in load_policy().findings}
    assert pairs["pneumothorax"] == ("small pneumothorax", "no pneumothorax")
    assert pairs["pleural_effusion"] == ("large pleural effusion", "no pleural effusion")
    assert pairs["airspace_opacity"] == ("Airspace Opacity", "no evidence of airspace disease")
    assert pairs["pulmonary_edema"] == ("moderate pulmonary edema", "no pulmonary edema")
    assert set(pairs) == set(DOCUMENTED_PRIORITIES)


# --- the shipped policy ------------------------------------------------------------------------


def test_shipped_policy_maps_findings_to_documented_priorities():
    policy = load_policy()
    assert {r.name: r.priority for r in policy.rules} == DOCUMENTED_PRIORITIES
    assert all(0 < r.severity <= 1 for r in policy.rules)


@pytest.mark.parametrize("name", sorted(DOCUMENTED_PRIORITIES))
def test_finding_at_threshold_implies_its_priority(name):
    policy = load_policy()
    rule = policy.rule(name)
    scores = {r.name: r.threshold - 0.5 for r in policy.rules}
    below = assess(FindingScores(scores), Priority.ROUTINE, policy)
    assert below.priority is Priority.ROUTINE
    scores[name] = rule.threshold
    at = assess(FindingScores(scores), Priority.ROUTINE, policy)
    if rule.validated:
        assert at.priority is rule.priority
        assert at.reasons == (f"{name} {rule.threshold:.2f} ≥ {rule.threshold:.2f} → {rule.priority.value}",)
    else:
        assert at.priority is Priority.most_urgent(Priority.ROUTINE, min(rule.priority, Priority.URGENT,
                                                                         key=lambda p: p.rank))
        assert "unvalidated" in at.reasons[0]
    assert at.urgency_score == pytest.approx(50.0 * rule.severity, abs=1e-6)


def test_never_below_ordered_priority():
    policy = load_policy()
    rng = np.random.default_rng(7)
    for _ in range(200):
        scores = FindingScores({r.name: float(rng.uniform(-0.5, 0.5)) for r in policy.rules})
        for ordered in Priority:
            result = assess(scores, ordered, policy)
            assert result.priority.rank >= ordered.rank
    stat_finding = FindingScores({r.name: 1.0 for r in policy.rules}, validated=frozenset(r.name for r in policy.rules))
    assert assess(stat_finding, "URGENT", policy).priority is Priority.STAT


def test_reasons_list_findings_most_urgent_first():
    policy = Policy((_rule("cardiomegaly", 0.1, 0.2, "ROUTINE"), _rule("pneumothorax", 0.2, 1.0, "STAT"),
                     _rule("pulmonary_edema", 0.1, 0.7, "URGENT")))
    result = assess(FindingScores({"cardiomegaly": 0.4, "pneumothorax": 0.31, "pulmonary_edema": 0.05}),
                    "ROUTINE", policy)
    assert result.priority is Priority.STAT
    assert result.reasons == ("pneumothorax 0.31 ≥ 0.20 → STAT", "cardiomegaly 0.40 ≥ 0.10 → ROUTINE")


def test_no_finding_names_the_closest_miss():
    policy = Policy((_rule("pneumothorax", 0.2), _rule("cardiomegaly", 0.1, 0.2, "ROUTINE")))
    result = assess(FindingScores({"pneumothorax": 0.15, "cardiomegaly": -0.3}), "URGENT", policy)
    assert result.priority is Priority.URGENT
    assert result.reasons == ("no finding at threshold (closest: pneumothorax 0.15 < 0.20)",)


def test_ai_unavailable_keeps_ordered_priority():
    result = assess(None, "URGENT", load_policy(), unavailable_reason="model weights are not installed")
    assert result == Assessment(Priority.URGENT, None, ("AI unavailable: model weights are not installed",))
    assert assess(None, Priority.ROUTINE, load_policy()).reasons == ("AI unavailable: no scores",)


def test_urgency_formula_is_monotone_and_weighted_by_severity():
    policy = Policy((_rule("pneumothorax", 0.2, 1.0), _rule("cardiomegaly", 0.2, 0.2, "ROUTINE")), urgency_scale=0.05)

    def urgency(ptx, cm):
        return assess(FindingScores({"pneumothorax": ptx, "cardiomegaly": cm}), "ROUTINE", policy).urgency_score

    # 100 * severity * sigmoid((score - threshold) / scale)
    assert urgency(0.25, -1.0) == pytest.approx(100 / (1 + math.exp(-1)))
    values = [urgency(s, -1.0) for s in np.linspace(-1, 1, 41)]
    assert values == sorted(values) and 0 <= values[0] < 1 and 99 < values[-1] <= 100
    # the same excess weighs less on a less severe finding
    assert urgency(-1.0, 0.3) < urgency(0.3, -1.0)
    assert urgency(-1.0, 1.0) == pytest.approx(20.0, abs=1e-3)


def test_missing_score_for_a_policy_finding_is_an_error():
    with pytest.raises(ScoringError, match="pneumothorax"):
        assess(FindingScores({"cardiomegaly": 0.0}), "ROUTINE", load_policy())


def test_bad_ordered_priority_is_refused():
    with pytest.raises(ValueError):
        assess(None, "EMERGENCY", load_policy())


# --- bad policy files --------------------------------------------------------------------------

_GOOD = DEFAULT_POLICY_PATH.read_text(encoding="utf-8")


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda s: s.replace('priority = "STAT"', 'priority = "EMERGENCY"', 1),
         r"\[findings.pneumothorax\]: priority must be one of ROUTINE, URGENT, STAT"),
        (lambda s: s.replace("threshold = 0.10", "treshold = 0.10", 1),
         r"\[findings.pneumothorax\] has unknown key\(s\) treshold"),
        (lambda s: s.replace("severity = 1.0", "severity = 1.5", 1), r"severity must be a number in \[0, 1\]"),
        (lambda s: s.replace("threshold = 0.10", "threshold = true", 1), r"'threshold' has the wrong type \(bool\)"),
        (lambda s: s.replace("threshold = 0.10", "threshold = 7", 1), r"threshold must be a number in \[-2.0, 2.0\]"),
        (lambda s: s.replace('label = "Pneumothorax"\n', "", 1), r"\[findings.pneumothorax\] is missing label"),
        (lambda s: s.replace("format = 1", "format = 2"), r"'format' must be 1"),
        (lambda s: s.replace("scale = 0.05", "scale = 0"), r"urgency scale must be a number > 0"),
        (lambda s: s.replace("probability_scale = 0.05", "probability_scale = -1"), r"urgency scale must be a number > 0"),
        (lambda s: s.replace('priority = "STAT"\n', 'priority = "STAT"\ntrained_threshold = 1.5\n', 1),
         r"\[findings.pneumothorax\]: trained_threshold must be a probability in \[0, 1\]"),
        (lambda s: s + "\n[findings.pneumothorax\n", r"not valid TOML"),
        (lambda s: s.split("\n[findings.pneumothorax]")[0], r"\[findings\] must be a table"),
    ],
)
def test_bad_policy_file_gives_a_clear_error(tmp_path, edit, message):
    path = tmp_path / "policy.toml"
    path.write_text(edit(_GOOD), encoding="utf-8")
    with pytest.raises(PolicyError, match=message) as info:
        load_policy(path)
    assert str(path) in str(info.value)
    assert isinstance(info.value, ValueError)


def test_missing_policy_file(tmp_path):
    with pytest.raises(PolicyError, match="cannot read the policy file"):
        load_policy(tmp_path / "absent.toml")


def test_shipped_policy_file_is_in_the_package():
    assert DEFAULT_POLICY_PATH == Path(__file__).parents[2] / "scoring" / "policy.toml"


# --- validated and unvalidated rules --------------------------------------------------------------


def test_every_shipped_rule_says_whether_it_is_validated():
    import tomllib

    for path in sorted(DEFAULT_POLICY_PATH.parent.glob("policy*.toml")):
        tables = tomllib.loads(path.read_text())["findings"]
        assert all(isinstance(t.get("validated"), bool) for t in tables.values()), path.name
    validated = {r.name: r.validated for r in load_policy().rules}
    # Google published and evaluated these prompt pairs; the other three it never did.
    assert validated == {"pneumothorax": True, "pleural_effusion": True, "pulmonary_edema": True,
                         "airspace_opacity": True, "pneumoperitoneum": False, "widened_mediastinum": False,
                         "cardiomegaly": False}


def _only(policy, name, value=1.0, **kwargs):
    return FindingScores({r.name: (value if r.name == name else -1.0) for r in policy.rules}, **kwargs)


@pytest.mark.parametrize("name", ["pneumoperitoneum", "widened_mediastinum"])
def test_an_unvalidated_stat_rule_raises_to_urgent_at_most_and_says_unvalidated(name):
    policy = load_policy()
    result = assess(_only(policy, name), "ROUTINE", policy)
    assert result.priority is Priority.URGENT
    assert result.reasons == (f"{name} 1.00 ≥ 0.10 → URGENT (unvalidated rule: STAT once validated)",)
    assert assess(_only(policy, name), "STAT", policy).priority is Priority.STAT  # the order still stands


def test_an_unvalidated_routine_rule_is_named_unvalidated():
    policy = load_policy()
    assert assess(_only(policy, "cardiomegaly"), "ROUTINE", policy).reasons == (
        "cardiomegaly 1.00 ≥ 0.10 → ROUTINE (unvalidated rule)",)


def test_a_matching_validation_record_lifts_the_cap(tmp_path):
    from scoring.evaluation import evaluate_finding, validated_findings, write_validation
    from scoring.heads import HeadSet

    policy = load_policy()
    rule = policy.rule("pneumoperitoneum")
    evaluation = evaluate_finding(rule.name, [0, 0, 1, 1], [-0.2, 0.0, 0.15, 0.3], threshold=rule.threshold,
                                  head="zero-shot", n_boot=100)
    write_validation(evaluation, embedder="cxr-foundation", prompt_positive=rule.prompt_positive,
                     prompt_negative=rule.prompt_negative, heads_dir=tmp_path)
    validated = validated_findings(tmp_path, "cxr-foundation", policy.rules)
    assert validated == {"pneumoperitoneum"}
    assert validated_findings(tmp_path, "medsiglip", policy.rules) == frozenset()  # another embedder's scale

    up = np.zeros(128, dtype=np.float32)
    up[0] = 1.0
    heads = HeadSet(policy.findings, {f.name: (up, -up) for f in policy.findings}, validated=validated)
    scores = heads.score(ImageEmbedding(np.tile(up, (32, 1))))
    result = assess(scores, "ROUTINE", policy)
    assert result.priority is Priority.STAT
    assert not any("unvalidated" in r for r in result.reasons if r.startswith("pneumoperitoneum"))

    moved = Policy(tuple(FindingRule(r.name, r.label, r.prompt_positive, r.prompt_negative,
                                     r.threshold + (0.05 if r.name == rule.name else 0), r.severity, r.priority,
                                     validated=r.validated) for r in policy.rules))
    assert validated_findings(tmp_path, "cxr-foundation", moved.rules) == frozenset()  # threshold edited since


def test_a_trained_head_validates_its_finding():
    policy = load_policy()
    scores = _only(policy, "widened_mediastinum", 0.9, head_thresholds={"widened_mediastinum": 0.5})
    result = assess(scores, "ROUTINE", policy)
    assert result.priority is Priority.STAT and "unvalidated" not in result.reasons[0]


def test_validated_must_be_true_or_false(tmp_path):
    path = tmp_path / "policy.toml"
    path.write_text(DEFAULT_POLICY_PATH.read_text().replace("\nvalidated = true", '\nvalidated = "yes"', 1))
    with pytest.raises(PolicyError, match="'validated' has the wrong type"):
        load_policy(path)
    path.write_text(DEFAULT_POLICY_PATH.read_text().replace("\nvalidated = true\n", "\n", 1))
    with pytest.raises(PolicyError, match=r"\[findings.pneumothorax\] is missing validated"):
        load_policy(path)


def test_a_policy_names_its_embedder(tmp_path):
    assert load_policy().embedder == "cxr-foundation"
    path = tmp_path / "policy.toml"
    path.write_text(DEFAULT_POLICY_PATH.read_text().replace('embedder = "cxr-foundation"\n', ""))
    with pytest.raises(PolicyError, match="the policy must name its embedder"):
        load_policy(path)
    path.write_text(DEFAULT_POLICY_PATH.read_text().replace('embedder = "cxr-foundation"', 'embedder = "elixr"'))
    with pytest.raises(PolicyError, match="'embedder' must be one of cxr-foundation, medsiglip"):
        load_policy(path)
    path.write_text(DEFAULT_POLICY_PATH.read_text().replace('embedder = "cxr-foundation"', 'embedder = "cxr_foundation"'))
    assert load_policy(path).embedder == "cxr-foundation"  # the setting's spelling is understood
