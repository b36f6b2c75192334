"""Inputs of ``radtriage probe``: a labels CSV and embeddings (precomputed ``.npz`` or made here).

Labels CSV: one row per image; an id column (``image_id``, ``image``, ``id``, ``path``,
``file`` or ``dicom_file``) and one column per finding holding 1 (present), 0 (absent) or
blank / -1 (unknown: the row is left out for that finding). Column names are matched to
policy findings case-insensitively (``PNEUMOTHORAX`` → ``pneumothorax``, ``EFFUSION`` →
``pleural_effusion``), so Google's CXR-14 subset labels work as they are.

Embeddings ``.npz``: key = image id, value = contrastive tokens (tokens, d), or a flat
vector (Google's ``precomputed_image_embeddings.npz`` holds 4096 = 32×128 floats). An
optional ``__embedder__`` entry names the embedder (default ``cxr-foundation``).
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from scoring.embedding import CXR_FOUNDATION, KNOWN_SHAPES, ImageEmbedding

__all__ = ["EMBEDDER_KEY", "LabelTable", "load_embeddings", "read_labels", "save_embeddings"]

EMBEDDER_KEY = "__embedder__"
ID_COLUMNS = ("image_id", "image", "id", "path", "file", "dicom_file")
# CXR-14 / CheXpert spellings of the policy's findings.
ALIASES = {"effusion": "pleural_effusion", "edema": "pulmonary_edema", "consolidation": "airspace_opacity"}
_UNKNOWN = {"", "-1", "-1.0", "nan", "u", "uncertain"}
_POSITIVE = {"1", "1.0", "true", "yes"}
_NEGATIVE = {"0", "0.0", "false", "no"}


@dataclass(frozen=True, slots=True)
class LabelTable:
    """Image ids in file order and, per finding, a float array (1, 0 or NaN = unknown)."""

    ids: tuple[str, ...]
    labels: Mapping[str, np.ndarray]

    def known(self, finding: str) -> tuple[np.ndarray, np.ndarray]:
        """Row indices with a 0/1 label for ``finding`` and those labels."""
        column = self.labels[finding]
        rows = np.flatnonzero(~np.isnan(column))
        return rows, column[rows]


def finding_name(column: str) -> str:
    """A column header as a finding name: lower case, words joined by ``_``, aliases applied."""
    name = re.sub(r"[^0-9a-z]+", "_", column.strip().lower()).strip("_")
    return ALIASES.get(name, name)


def read_labels(path: Path, *, id_column: str | None = None, findings: Iterable[str] | None = None) -> LabelTable:
    """Read a labels CSV.

    Parameters
    ----------
    path : Path
    id_column : str, optional
        The id column; default the first of ``ID_COLUMNS`` present.
    findings : iterable of str, optional
        Only these findings (names after :func:`finding_name`); default every column
        whose values are all 0/1/unknown.

    Raises
    ------
    ValueError
        No id column, a duplicate id, a requested finding absent, or a label that is not
        0/1/unknown in a requested column (the message names row and column).
    """
    with Path(path).open(newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        header = list(reader.fieldnames or [])
        rows = list(reader)
    key = id_column or next((c for c in ID_COLUMNS if c in header), None)
    if key is None or key not in header:
        raise ValueError(f"{path}: no id column (one of {', '.join(ID_COLUMNS)}, or --id-column)")
    ids = tuple(row[key].strip() for row in rows)
    if len(set(ids)) != len(ids):
        raise ValueError(f"{path}: column {key!r} repeats an id")
    by_name = {finding_name(c): c for c in header if c != key and c not in ID_COLUMNS}
    wanted = list(findings) if findings is not None else None
    if wanted is not None:
        absent = [f for f in wanted if f not in by_name]
        if absent:
            raise ValueError(f"{path}: no label column for {', '.join(absent)}")
    labels: dict[str, np.ndarray] = {}
    for name, column in by_name.items():
        if wanted is not None and name not in wanted:
            continue
        values = [_label(row.get(column)) for row in rows]
        bad = next((i for i, v in enumerate(values) if v is None), None)
        if bad is not None:
            if wanted is not None:
                raise ValueError(f"{path}: row {bad + 2}, column {column!r} is not 0, 1 or blank")
            continue  # not a label column (e.g. a free-text note)
        labels[name] = np.array(values, dtype=np.float64)
    return LabelTable(ids, labels)


def _label(value: str | None) -> float | None:
    text = (value or "").strip().lower()
    if text in _UNKNOWN:
        return float("nan")
    if text in _POSITIVE:
        return 1.0
    if text in _NEGATIVE:
        return 0.0
    return None


def load_embeddings(path: Path, *, embedder: str | None = None) -> dict[str, ImageEmbedding]:
    """Read precomputed embeddings (see the module docstring) keyed by image id.

    Raises
    ------
    ValueError
        If the file is not such an ``.npz`` or an entry has an impossible shape.
    """
    try:
        with np.load(Path(path), allow_pickle=False) as npz:
            arrays = {key: npz[key] for key in npz.files}
    except (OSError, ValueError, EOFError) as exc:
        raise ValueError(f"{path}: not an embeddings .npz ({type(exc).__name__})") from exc
    model = embedder or (str(arrays.pop(EMBEDDER_KEY)) if EMBEDDER_KEY in arrays else CXR_FOUNDATION)
    arrays.pop(EMBEDDER_KEY, None)
    known = KNOWN_SHAPES.get(model)
    out: dict[str, ImageEmbedding] = {}
    for key, value in arrays.items():
        tokens = np.asarray(value, dtype=np.float32)
        if tokens.ndim == 1:
            tokens = tokens.reshape(known[0]) if known and tokens.size == np.prod(known[0]) else tokens.reshape(1, -1)
        try:
            out[key] = ImageEmbedding(contrastive=tokens, model=model)
        except ValueError as exc:
            raise ValueError(f"{path}: entry {len(out) + 1}: {exc}") from exc
    return out


def save_embeddings(path: Path, embeddings: Mapping[str, ImageEmbedding]) -> Path:
    """Write embeddings in the format :func:`load_embeddings` reads (contrastive tokens only).

    Raises
    ------
    ValueError
        If the embeddings come from more than one embedder.
    """
    models = {e.model for e in embeddings.values()}
    if len(models) > 1:
        raise ValueError("embeddings from different embedders cannot share a file")
    arrays = {key: e.contrastive for key, e in embeddings.items()}
    arrays[EMBEDDER_KEY] = np.array(models.pop() if models else CXR_FOUNDATION)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as fh:
        np.savez(fh, **arrays)
    return path
