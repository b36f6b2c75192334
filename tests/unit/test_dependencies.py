"""Every third-party package the code imports is declared in ``pyproject.toml``."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

ROOT = Path(__file__).parents[2]
RUNTIME = ("radtriage", "worker", "dicom", "scoring", "db", "common")
FIRST_PARTY = {*RUNTIME, "tests", "benchmarks"}
# Imported inside try/except ImportError and used only when present.
OPTIONAL = {"tensorflow_text"}


def _name(requirement: str) -> str:
    """``"psycopg[binary]>=3.1"`` → ``"psycopg"`` (normalised as PEP 503 does)."""
    return re.sub(r"[-_.]+", "-", re.match(r"[A-Za-z0-9_.-]+", requirement).group()).lower()


def _declared() -> dict[str, set[str]]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    groups = {"core": project["dependencies"], **project["optional-dependencies"]}
    return {group: {_name(r) for r in reqs} for group, reqs in groups.items()}


def _imports(package: str) -> set[str]:
    found = set()
    for path in (ROOT / package).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                found |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found.add(node.module.split(".")[0])
    return found - set(sys.stdlib_module_names) - FIRST_PARTY - OPTIONAL - {"__future__"}


def _undeclared(packages: tuple[str, ...], groups: set[str]) -> dict[str, list[str]]:
    declared = _declared()
    allowed = set().union(*(declared[g] for g in groups))
    distributions = packages_distributions()
    missing = {}
    for module in sorted(set().union(*(_imports(p) for p in packages))):
        names = {_name(d) for d in distributions.get(module, [module])}
        if not names & allowed:
            missing[module] = sorted(names)
    return missing


def test_runtime_imports_are_declared_in_the_core_or_an_extra():
    assert _undeclared(RUNTIME, {"core", "ml", "eval"}) == {}


def test_test_and_benchmark_imports_are_declared():
    assert _undeclared(("tests", "benchmarks"), {"core", "ml", "eval", "test"}) == {}
