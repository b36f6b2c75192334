"""The test suite itself: a missing service or sample skips only through ``need()``, which fails in CI."""

from __future__ import annotations

import ast

from tests.conftest import REPO

TESTS = REPO / "tests"
HELPER = TESTS / "conftest.py"  # need() lives here: the one module that may skip


def _skip_lines(source: str) -> list[int]:
    """Lines of calls of ``pytest.skip``, ``from pytest import skip`` and ``mark.skip``/``mark.skipif``."""
    lines = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Attribute) and node.attr in {"skip", "skipif"}:
            owner = node.value
            if (isinstance(owner, ast.Name) and owner.id in {"pytest", "mark"}) or (
                isinstance(owner, ast.Attribute) and owner.attr == "mark"
            ):
                lines.append(node.lineno)
        elif (isinstance(node, ast.ImportFrom) and node.module == "pytest"
              and any(alias.name == "skip" for alias in node.names)):
            lines.append(node.lineno)
    return sorted(lines)


def test_no_test_module_skips_except_through_need():
    offenders = [f"{path.relative_to(REPO)}:{line}" for path in sorted(TESTS.rglob("*.py")) if path != HELPER
                 for line in _skip_lines(path.read_text())]
    assert not offenders, f"skip through tests.conftest.need(), which fails under CI: {offenders}"


def test_the_check_sees_each_kind_of_skip():
    source = (
        "import pytest\n"
        "from pytest import skip\n"  # 2
        "@pytest.mark.skipif(True, reason='x')\n"  # 3
        "def test_a():\n"
        "    pytest." + "skip('absent')\n"  # 5 (split so no text scan takes this file for a skipping one)
        "@pytest.mark.skip\n"  # 6
        "def test_b():\n"
        "    pytest.importorskip('numpy')\n"  # an optional library: allowed
        "    pytest.mark.parametrize\n"
    )
    assert _skip_lines(source) == [2, 3, 5, 6]
