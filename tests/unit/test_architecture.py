"""The import arrows point down only: the import-linter contracts in pyproject.toml hold for the
code, and they do catch a wrong arrow."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LINT = [sys.executable, "-c", "from importlinter.cli import lint_imports_command; lint_imports_command()", "--no-cache"]
PACKAGES = ("radtriage", "worker", "dicom", "scoring", "db", "common")


def _lint(cwd: Path, pythonpath: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(pythonpath)}
    return subprocess.run(LINT, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_the_code_keeps_every_import_contract() -> None:
    result = _lint(ROOT, ROOT)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "kept, 0 broken" in result.stdout


def test_the_contracts_fail_on_an_arrow_that_points_up(tmp_path: Path) -> None:
    # The same contracts over a miniature of the project in which worker/ imports radtriage/.
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    for package in PACKAGES:
        (tmp_path / package).mkdir()
        (tmp_path / package / "__init__.py").write_text("")
    (tmp_path / "radtriage" / "settings.py").write_text("")
    (tmp_path / "worker" / "app.py").write_text("import radtriage.settings\n")
    contracts = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]
    assert any(c["type"] == "layers" for c in contracts) and any(c["type"] == "acyclic_siblings" for c in contracts)

    result = _lint(tmp_path, tmp_path)

    assert result.returncode != 0
    assert "worker.app -> radtriage.settings" in result.stdout
