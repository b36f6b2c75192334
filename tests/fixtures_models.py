"""Session fixtures that build stand-in models once; imported by ``tests/conftest.py``."""

from __future__ import annotations

from pathlib import Path

import pytest

__all__ = ["cxr_foundation_dir", "medgemma_dir", "medgemma_thinking_dir", "medsiglip_dir"]

# Built at most once per test process, even if several modules import the fixture.
_BUILT: dict[str, Path] = {}


@pytest.fixture(scope="session")
def cxr_foundation_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder laid out like the real CXR Foundation download, holding the tiny stand-ins
    (``elixr-c-v2-pooled/``, ``pax-elixr-b-text/``, ``vocab.txt``).

    Skips the test when tensorflow is not installed.
    """
    pytest.importorskip("tensorflow")
    from tests.standins import build_cxr_foundation_standin

    if "cxr_foundation" not in _BUILT:
        _BUILT["cxr_foundation"] = build_cxr_foundation_standin(tmp_path_factory.mktemp("cxr_foundation"))
    return _BUILT["cxr_foundation"]


@pytest.fixture(scope="session")
def medsiglip_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder laid out like ``google/medsiglip-448`` holding a tiny random SigLIP.

    Skips the test when torch or transformers is not installed.
    """
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from tests.standins import build_medsiglip_standin

    if "medsiglip" not in _BUILT:
        _BUILT["medsiglip"] = build_medsiglip_standin(tmp_path_factory.mktemp("medsiglip"))
    return _BUILT["medsiglip"]


@pytest.fixture(scope="session")
def medgemma_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny Gemma 3 built with the real classes, saved like a MedGemma folder (``medgemma-tiny/``,
    which is also the model id it loads as).

    Skips the test when torch or transformers is not installed.
    """
    return _gemma_standin(tmp_path_factory, "build_medgemma_standin", "medgemma-tiny")


@pytest.fixture(scope="session")
def medgemma_thinking_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny Gemma 3 that answers like MedGemma 1.5 in thinking mode: an ``<unused94>`` …
    ``<unused95>`` trace, then FINDINGS (``tests.standins_medgemma.THINKING_ANSWER``).

    Skips the test when torch or transformers is not installed.
    """
    return _gemma_standin(tmp_path_factory, "build_thinking_standin", "medgemma-thinking")


def _gemma_standin(tmp_path_factory: pytest.TempPathFactory, builder: str, folder: str) -> Path:
    """Build a Gemma 3 stand-in once per session with ``tests.standins_medgemma.<builder>``."""
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from tests import standins_medgemma

    if folder not in _BUILT:
        _BUILT[folder] = getattr(standins_medgemma, builder)(tmp_path_factory.mktemp("medgemma") / folder)
    return _BUILT[folder]
