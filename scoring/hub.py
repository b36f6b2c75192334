"""Locating and loading Hugging Face models (MedGemma, MedSigLIP): a local folder or a hub id.

One place decides whether a name is a folder or a hub id, whether the hub may be reached,
what is missing (in words, free of patient data, naming the folder or id looked at), and
turns a missing ``huggingface_hub``/torch/transformers into :class:`ModelUnavailable`.
Also the one input step both Hugging Face back-ends share: :func:`pad_to_square`.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path
from typing import Any

import numpy as np

from scoring.errors import ModelUnavailable

__all__ = ["cached_file", "import_ml", "is_hub_id", "load_pretrained", "missing_model", "model_id",
           "model_version", "offline", "pad_to_square"]

CONFIG_FILE = "config.json"
ML_EXTRA = "pip install 'radtriage[ml]'"

# A hub repo id: owner/name, each up to 96 word characters, dots or dashes.
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]{0,95}/[A-Za-z0-9][\w.-]{0,95}$")
_SNAPSHOT = re.compile(r"[/\\]snapshots[/\\]([0-9a-f]{40})(?:[/\\]|$)")
_TRUE = {"1", "ON", "YES", "TRUE"}


def offline() -> bool:
    """Whether the hub must not be reached (``HF_HUB_OFFLINE`` or ``TRANSFORMERS_OFFLINE``).

    Read now rather than from ``huggingface_hub.constants.HF_HUB_OFFLINE``, which is fixed
    when huggingface_hub is first imported: the CLI sets the variable once it has read the
    settings, which may be after that import.
    """
    return any(os.environ.get(v, "").upper() in _TRUE for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def is_hub_id(model: str | os.PathLike[str]) -> bool:
    """True for ``owner/name`` that is not an existing path (then it is a folder)."""
    name = os.fspath(model)
    return not Path(name).expanduser().exists() and bool(_HUB_ID.match(name))


def missing_model(
    label: str, model: str | os.PathLike[str], *, cache_dir: str | os.PathLike[str] | None = None
) -> str | None:
    """Why a model cannot be loaded, cheaply (no torch); None when it looks usable.

    A folder needs ``config.json``. A hub id needs it in the local Hugging Face cache when
    offline; online, an uncached id counts as usable (the download happens at load time
    and its failure is reported then).

    Parameters
    ----------
    label : str
        The model's name in the message ("MedGemma", "MedSigLIP").
    model : str or path
        Folder or hub id.
    cache_dir : str or path, optional
        Hugging Face hub cache; default ``huggingface_hub.constants.HF_HUB_CACHE``.

    Returns
    -------
    str or None
        A reason naming the folder or the id and cache looked in, or None.
    """
    name = os.fspath(model)
    if not is_hub_id(name):
        path = Path(name).expanduser()
        if not path.is_dir():
            return f"{label} model folder {path} does not exist"
        if not (path / CONFIG_FILE).is_file():
            return f"{label} model folder {path} has no {CONFIG_FILE}"
        return None
    if not offline():
        return None
    try:
        from huggingface_hub import constants
    except ImportError:
        return f"huggingface_hub is not installed ({ML_EXTRA})"
    if cached_file(name, CONFIG_FILE, cache_dir=cache_dir) is not None:
        return None
    cache = os.fspath(cache_dir) if cache_dir is not None else constants.HF_HUB_CACHE
    # "owner/name" may also be a relative folder that is not there: say both.
    return (f"{label} {name}: no such folder, and not in the local Hugging Face cache {cache} "
            "(HF_HUB_OFFLINE is set)")


def cached_file(name: str, filename: str, *, cache_dir: str | os.PathLike[str] | None = None) -> Path | None:
    """A file of hub repo ``name`` in the local cache (latest cached revision), else None."""
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(name, filename, cache_dir=cache_dir)
    return Path(found) if isinstance(found, str) else None


def import_ml(label: str) -> tuple[Any, Any]:
    """``(torch, transformers)``, or :class:`ModelUnavailable` saying the ml extra is needed."""
    try:
        import torch
        import transformers
    except ImportError as exc:
        raise ModelUnavailable(f"{label} needs torch and transformers ({exc.name} missing; {ML_EXTRA})") from exc
    return torch, transformers


def load_pretrained(label: str, auto_class: Any, model: str | os.PathLike[str], **kwargs: Any) -> Any:
    """``auto_class.from_pretrained`` from a folder or hub id, offline when :func:`offline` says so.

    Raises
    ------
    ModelUnavailable
        The files are absent or unreadable (the exception's type only: no path or text of it).
    """
    name = os.fspath(model)
    try:
        return auto_class.from_pretrained(name, local_files_only=offline(), **kwargs)
    except (OSError, ValueError, RuntimeError, KeyError) as exc:
        raise ModelUnavailable(f"{label} failed to load from {name} ({type(exc).__name__})") from exc


def model_id(name: str) -> str:
    """The hub id as given, or a local folder's name (a path says little and may be long).

    A folder inside the hub cache (``models--owner--name/snapshots/<commit>``) gives its id.
    """
    path = Path(name).expanduser()
    if not path.is_dir():
        return name
    resolved = path.resolve()
    if _SNAPSHOT.search(str(resolved)) and resolved.parents[1].name.startswith("models--"):
        return resolved.parents[1].name.removeprefix("models--").replace("--", "/", 1)
    return resolved.name


def model_version(name: str) -> str:
    """The hub commit the weights came from, else a short hash of the folder's config.json."""
    path = Path(name).expanduser()
    config = path / CONFIG_FILE if path.is_dir() else cached_file(name, CONFIG_FILE)
    if config is None or not config.is_file():
        return "unknown"
    # Not resolve(): cached files are symlinks into blobs/, the snapshot folder names the commit.
    match = _SNAPSHOT.search(os.path.abspath(config.parent) + os.sep)
    if match:
        return match.group(1)
    return "config-sha256:" + hashlib.sha256(config.read_bytes()).hexdigest()[:12]


def pad_to_square(arr: np.ndarray) -> np.ndarray:
    """Zero-pad an image (H, W) or (H, W, C) to a centred square, as Google's MedGemma and
    MedSigLIP serving code does before resizing: a ~1.2:1 chest radiograph is then scaled,
    not stretched. The dtype is kept; an odd difference puts the extra row/column last.
    """
    arr = np.asarray(arr)
    height, width = arr.shape[:2]
    side = max(height, width)
    top, left = (side - height) // 2, (side - width) // 2
    pad = [(top, side - height - top), (left, side - width - left)] + [(0, 0)] * (arr.ndim - 2)
    return np.pad(arr, pad) if side != height or side != width else arr
