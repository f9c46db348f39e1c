"""The layer rules of LAYOUT.md hold and are enforced: `lint-imports` (the import-linter
contracts in pyproject.toml) passes on the tree, fails with the rule's name when a backend
imports the runner or a module cycle appears, and no first-party import hides inside a
function (the way import loops used to be hidden)."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("harness", "backends", "workloads")
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def _lint(cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(LINT_IMPORTS), "--no-cache"], cwd=cwd, capture_output=True,
                          text=True, timeout=120, env={"PYTHONPATH": str(cwd),
                                                       "PATH": "/usr/bin:/bin"})


@pytest.fixture()
def tree_copy(tmp_path: Path) -> Path:
    """The first-party packages and the contracts, copied where they can be broken."""
    for name in PACKAGES:
        shutil.copytree(ROOT / name, tmp_path / name,
                        ignore=shutil.ignore_patterns("__pycache__", "*.toml", "*.csv"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def test_the_contracts_hold_on_the_tree():
    result = _lint(ROOT)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "0 broken" in result.stdout


def test_a_backend_importing_the_runner_breaks_the_named_rule(tree_copy: Path):
    base = tree_copy / "backends" / "base.py"
    base.write_text(base.read_text() + "\nimport harness.runner.runner  # noqa: E402\n")
    result = _lint(tree_copy)
    assert result.returncode == 1, result.stdout[-2000:]
    out = " ".join(result.stdout.split())
    assert "backends never import the runner, metrics, servers, analysis or cli BROKEN" in out
    assert "backends.base -> harness.runner.runner" in out


def test_an_import_cycle_breaks_the_cycle_rule(tree_copy: Path):
    files = tree_copy / "harness" / "models" / "files.py"
    files.write_text(files.read_text() + "\nimport harness.models.resolve  # noqa: E402\n")
    result = _lint(tree_copy)
    assert result.returncode == 1
    assert "No import cycles among first-party modules BROKEN" in " ".join(
        result.stdout.split())


def _function_local_first_party_imports(path: Path, root: Path = ROOT) -> list[str]:
    found = []
    for fn in ast.walk(ast.parse(path.read_text())):
        if not isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        for node in ast.walk(fn):
            names = ([node.module or ""] if isinstance(node, ast.ImportFrom)
                     else [a.name for a in node.names] if isinstance(node, ast.Import) else [])
            if isinstance(node, ast.ImportFrom) and node.level:
                names = ["(relative)"]
            for name in names:
                if name.split(".")[0] in PACKAGES or name == "(relative)":
                    found.append(f"{path.relative_to(root)}:{node.lineno} {name}")
    return found


def test_no_first_party_import_inside_a_function():
    found = [hit for pkg in PACKAGES for path in sorted((ROOT / pkg).rglob("*.py"))
             for hit in _function_local_first_party_imports(path)]
    assert found == []


def test_the_checker_sees_a_hidden_import(tmp_path: Path):
    sample = tmp_path / "probe.py"
    sample.write_text("import os\n\ndef f():\n    import json\n"
                      "    from harness.errors import UserError\n    return UserError\n")
    assert _function_local_first_party_imports(sample, tmp_path) == [
        "probe.py:5 harness.errors"]
