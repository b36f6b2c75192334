"""``radtriage probe train`` / ``radtriage probe evaluate``: site-trained finding heads and their evaluation.

Wiring only: labels and embeddings come from ``scoring.probe_data`` (or DICOM files through
``worker.embed_files`` and the configured embedder), training from ``scoring.probe``, scoring
from ``scoring.heads.HeadSet`` (the worker's own code path), metrics from
``scoring.evaluation``. ML libraries are imported only when a model must be loaded.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click
import numpy as np

from radtriage.cli_options import config_option, load_cli_settings, progress_bars
from radtriage.settings import Settings, embedder_config

_PATH = click.Path(exists=True, dir_okay=False, path_type=Path)


def _inputs(func):
    """The options both commands share: labels, where the embeddings come from, which findings."""
    options = [
        click.option("--labels", type=_PATH, required=True, help="CSV: an id column and one 0/1/blank column per finding."),
        click.option("--embeddings", type=_PATH, help="Precomputed embeddings .npz (key = image id)."),
        click.option("--dicom", type=click.Path(exists=True, file_okay=False, path_type=Path),
                     help="Folder of DICOM files; the id column holds paths relative to it."),
        click.option("--id-column", help="Name of the id column (default: image_id, image, id, path, file or dicom_file)."),
        click.option("--finding", "findings", multiple=True, help="Only this finding (repeatable)."),
        click.option("--save-embeddings", type=click.Path(dir_okay=False, path_type=Path),
                     help="Also write the embeddings made from --dicom to this .npz, to reuse them."),
        click.option("--heads-dir", type=click.Path(file_okay=False, path_type=Path),
                     help="Trained heads folder (default: the heads_dir setting)."),
        config_option,
    ]
    for option in reversed(options):
        func = option(func)
    return func


@click.group()
def probe() -> None:
    """Train finding heads on a site's labelled images, and evaluate heads (research use)."""


@probe.command("train")
@_inputs
@click.option("--head", "architecture", type=click.Choice(["logistic", "mlp"]), default="logistic", show_default=True,
              help="Logistic regression or the reference small MLP (needs torch).")
@click.option("--target-sensitivity", type=click.FloatRange(0.01, 1.0), default=0.9, show_default=True,
              help="Sensitivity the operating threshold is chosen for (on cross-validated predictions).")
@click.option("--folds", type=click.IntRange(2, 20), default=5, show_default=True, help="Cross-validation folds.")
@click.option("--seed", type=int, default=0, show_default=True)
def train(labels: Path, embeddings: Path | None, dicom: Path | None, id_column: str | None, findings: Sequence[str],
          save_embeddings: Path | None, heads_dir: Path | None, config_file: str | None, architecture: str,
          target_sensitivity: float, folds: int, seed: int) -> None:
    """Train one head per labelled finding and save it where the worker loads heads from."""
    from scoring.probe import train_head

    settings = load_cli_settings(config_file)
    table, embedded = _load_inputs(settings, labels, embeddings, dicom, id_column, findings, save_embeddings)
    heads_dir = _heads_dir(settings, heads_dir)
    policy_names = {r.name for r in _policy(settings).rules}
    for name in table.labels:
        x, y = _xy(table, embedded, name)
        if min(y.sum(), y.size - y.sum()) < 2:
            click.echo(f"{name}: skipped (needs at least 2 positive and 2 negative images, has {int(y.sum())}/{int(y.size - y.sum())})")
            continue
        embedder = next(iter(embedded.values())).model
        with progress_bars(transient=True) as bars:
            head = train_head(name, x, y, embedder=embedder, architecture=architecture,
                              target_sensitivity=target_sensitivity, folds=folds, seed=seed,
                              progress=bars.counter(f"training {name}", folds + 1),
                              extra_metadata={"labels_file": labels.name})
        path = head.save(heads_dir)
        m = head.metadata
        click.echo(
            f"{name}: {architecture} head → {path}\n"
            f"  {m['n_positive']} positive / {m['n_negative']} negative; cross-validated AUC {m['cv_auc']:.3f}; "
            f"operating threshold score ≥ {head.operating_threshold:.3f} "
            f"(sensitivity {m['cv_sensitivity']:.2f}, specificity {m['cv_specificity']:.2f} out of fold)\n"
            f"  its scores are calibrated to this training set's class balance "
            f"({m['n_positive'] / (m['n_positive'] + m['n_negative']):.0%} positive), not to a site's prevalence: "
            f"they rank studies, they are not the probability that a patient has the finding"
        )
        if name not in policy_names:
            click.echo(f"  note: {name} is not a finding of the policy; triage will not use this head")


@probe.command("evaluate")
@_inputs
@click.option("--text-embeddings", type=_PATH,
              help="Prompt embeddings .npz (key = prompt text) for zero-shot heads, instead of loading the text model.")
@click.option("--zero-shot", "zero_shot_only", is_flag=True, help="Ignore trained heads (compare with zero-shot).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("evaluation"), show_default=True,
              help="Folder for evaluation.json, evaluation.csv and roc_<finding>.png.")
@click.option("--bootstrap", "n_boot", type=click.IntRange(100, 100_000), default=1000, show_default=True,
              help="Bootstrap resamples for the AUC's 95% confidence interval.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--record-validation", is_flag=True,
              help="Sign the evaluated zero-shot rules off for this site: write a validation record per finding "
                   "(<heads-dir>/<embedder>/validations/), which lets an unvalidated rule raise above URGENT.")
def evaluate(labels: Path, embeddings: Path | None, dicom: Path | None, id_column: str | None, findings: Sequence[str],
             save_embeddings: Path | None, heads_dir: Path | None, config_file: str | None, text_embeddings: Path | None,
             zero_shot_only: bool, out: Path, n_boot: int, seed: int, record_validation: bool) -> None:
    """Per finding: AUC with a bootstrap 95% CI, sensitivity/specificity at the operating threshold, ROC PNG."""
    from scoring.errors import PolicyError
    from scoring.evaluation import evaluate_finding, save_roc_png, write_report, write_validation
    from scoring.heads import HeadSet
    from scoring.trained_heads import load_heads

    settings = load_cli_settings(config_file)
    policy = _policy(settings)
    table, embedded = _load_inputs(settings, labels, embeddings, dicom, id_column, findings, save_embeddings)
    embedder = next(iter(embedded.values())).model
    try:
        policy.check_embedder(embedder)  # thresholds on another embedder's scale would mislead
    except PolicyError as exc:
        raise click.ClickException(str(exc)) from exc
    rules = [r for r in policy.rules if r.name in table.labels]
    for name in sorted(set(table.labels) - {r.name for r in rules}):
        click.echo(f"{name}: skipped (not a finding of the policy)")
    trained = {} if zero_shot_only else load_heads(_heads_dir(settings, heads_dir), embedder)
    prompts = _prompt_embeddings(settings, [r for r in rules if r.name not in trained], text_embeddings, embedder)
    rules = [r for r in rules if r.name in trained or r.name in prompts]
    if not rules:
        raise click.ClickException("nothing to evaluate: no labelled finding has a head")
    heads = HeadSet([r.finding for r in rules], prompts, trained)
    ids = [i for i in table.ids if i in embedded]
    with progress_bars(transient=True) as bars:
        scores = {i: heads.score(embedded[i]) for i in bars.track(ids, "scoring")}
    results = []
    for rule in rules:
        rows, y = table.known(rule.name)
        rows = [r for r in rows if table.ids[r] in scores]
        y = table.labels[rule.name][rows]
        if min(y.sum(), y.size - y.sum()) < 1:
            click.echo(f"{rule.name}: skipped (needs positive and negative images)")
            continue
        per_image = [scores[table.ids[r]] for r in rows]
        s = np.array([fs[rule.name] for fs in per_image])
        results.append(evaluate_finding(
            rule.name, y, s, threshold=policy.threshold_for(rule.name, per_image[0]),
            head=heads.kind(rule.name), n_boot=n_boot, seed=seed,
        ))
    json_path, csv_path = write_report(results, out)
    _print_table(results)
    if any(e.head == "trained" for e in results):
        from scoring.urgency import TRAINED_SCORE_NOTE

        click.echo(f"trained heads: {TRAINED_SCORE_NOTE}; sensitivity and specificity hold at any prevalence, "
                   "predictive values do not")
    if record_validation:
        for e in (e for e in results if e.head == "zero-shot"):
            rule = policy.rule(e.finding)
            path = write_validation(e, embedder=embedder, prompt_positive=rule.prompt_positive,
                                    prompt_negative=rule.prompt_negative, heads_dir=_heads_dir(settings, heads_dir))
            click.echo(f"{e.finding}: validation record written to {path}")
    try:
        pngs = [save_roc_png(e, out / f"roc_{e.finding}.png") for e in results]
        click.echo(f"wrote {json_path}, {csv_path} and {len(pngs)} ROC curve(s) in {out}")
    except ImportError:
        click.echo(f"wrote {json_path} and {csv_path}; ROC PNGs need matplotlib (pip install 'radtriage[eval]')")


# --- helpers --------------------------------------------------------------------------------


def _policy(settings: Settings) -> Any:
    from scoring.errors import PolicyError
    from scoring.urgency import load_policy

    try:
        return load_policy(settings.policy_file)
    except PolicyError as exc:
        raise click.ClickException(str(exc)) from exc


def _heads_dir(settings: Settings, override: Path | None) -> Path:
    from scoring.backends import default_heads_dir

    return override or default_heads_dir(embedder_config(settings))


def _load_inputs(settings, labels, embeddings, dicom, id_column, findings, save_embeddings):
    """The label table and an embedding for every labelled image that has one."""
    from scoring.probe_data import load_embeddings, read_labels
    from scoring.probe_data import save_embeddings as save

    if (embeddings is None) == (dicom is None):
        raise click.UsageError("give exactly one of --embeddings or --dicom")
    try:
        table = read_labels(labels, id_column=id_column, findings=findings or None)
        embedded = load_embeddings(embeddings) if embeddings else _embed_dicom(settings, dicom, table.ids)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc
    if not table.labels:
        raise click.ClickException(f"{labels}: no label column (values 0, 1 or blank)")
    missing = sum(1 for i in table.ids if i not in embedded)
    if missing:
        click.echo(f"{missing} of {len(table.ids)} labelled image(s) have no embedding and are left out")
    if not any(i in embedded for i in table.ids):
        raise click.ClickException("no labelled image has an embedding (do the ids match?)")
    if save_embeddings and dicom:
        click.echo(f"embeddings saved to {save(save_embeddings, embedded)}")
    return table, embedded


def _embed_dicom(settings: Settings, folder: Path, ids: Sequence[str]) -> dict[str, Any]:
    """Embed each labelled DICOM file with the configured embedder; say which could not be."""
    from scoring.errors import ModelUnavailable
    from worker.backfill import embed_files

    try:
        with progress_bars(transient=True) as bars:
            result = embed_files(embedder_config(settings), folder, ids, progress=bars.track)
    except ModelUnavailable as exc:
        raise click.ClickException(f"cannot embed DICOM files: {exc.reason}") from exc
    for index, reason in result.refused:
        click.echo(f"row {index + 2}: not embedded ({reason})", err=True)  # row 1 is the CSV header
    if result.refused:
        click.echo(f"{len(result.refused)} image(s) could not be embedded", err=True)
    return result.embeddings


def _prompt_embeddings(settings: Settings, rules, text_embeddings: Path | None, embedder: str) -> dict:
    """Prompt-pair embeddings for the zero-shot findings: from a file, else from the text model."""
    if not rules:
        return {}
    if text_embeddings is not None:
        with np.load(text_embeddings, allow_pickle=False) as npz:
            table = {key: np.asarray(npz[key], dtype=np.float32).reshape(-1) for key in npz.files}
        found = {r.name: (table[r.prompt_positive], table[r.prompt_negative]) for r in rules
                 if r.prompt_positive in table and r.prompt_negative in table}
        for r in rules:
            if r.name not in found:
                click.echo(f"{r.name}: skipped (its prompts are not in {text_embeddings.name})")
        return found
    from scoring.backends import load_backend
    from scoring.errors import ModelUnavailable
    from scoring.heads import embed_prompts

    config = embedder_config(settings)
    try:
        backend = load_backend(config)
    except ModelUnavailable as exc:
        click.echo(f"zero-shot findings skipped: the text model is unavailable ({exc.reason}); "
                   "pass --text-embeddings to evaluate them without it")
        return {}
    if backend.name != embedder:
        raise click.ClickException(f"the embeddings come from {embedder} but the configured embedder is {backend.name}")
    return embed_prompts([r.finding for r in rules], backend.embed_text)


def _xy(table, embedded, name: str) -> tuple[np.ndarray, np.ndarray]:
    """Pooled features and 0/1 labels of the images labelled for ``name`` that have an embedding."""
    rows, y = table.known(name)
    keep = [k for k, r in enumerate(rows) if table.ids[r] in embedded]
    x = np.stack([embedded[table.ids[rows[k]]].pooled for k in keep]) if keep else np.empty((0, 0))
    return x, y[keep]


def _print_table(results) -> None:
    click.echo(f"{'finding':22} {'head':9} {'n+':>5} {'n-':>5}  {'AUC (95% CI)':24} {'threshold':>9}  {'sens':>5} {'spec':>5}")
    for e in results:
        sens = "  n/a" if math.isnan(e.sensitivity) else f"{e.sensitivity:5.2f}"
        spec = "  n/a" if math.isnan(e.specificity) else f"{e.specificity:5.2f}"
        click.echo(f"{e.finding:22} {e.head:9} {e.n_positive:5d} {e.n_negative:5d}  "
                   f"{e.auc:.3f} ({e.auc_ci_low:.3f}–{e.auc_ci_high:.3f})      {e.threshold:9.3f}  {sens} {spec}")
