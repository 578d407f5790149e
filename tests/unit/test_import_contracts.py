"""The layering of ../shared/DESIGN.md is a set of import-linter contracts ([tool.importlinter] in pyproject.toml); this
test runs `lint-imports` on the tree, so `make test` (and CI) fails when a module imports against the layers, and
it proves the contracts can fail: a copy of the package with a deliberate `import asyncio` in the Raft core must
be rejected, naming the broken contract."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import cluster

REPO = Path(cluster.__file__).resolve().parents[1]
PYPROJECT = REPO / "pyproject.toml"
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")
NO_IO_CONTRACT = "pure cores import no I/O, clock, thread, process or file module"
TIMEOUT_S = 120


def _lint_imports(workdir: Path) -> subprocess.CompletedProcess:
    """Run lint-imports from `workdir` against the `cluster` package found there, not the installed one."""
    env = dict(os.environ, PYTHONPATH=str(workdir))
    return subprocess.run(
        [str(LINT_IMPORTS), "--config", str(workdir / "pyproject.toml"), "--no-cache", "--no-logo"],
        cwd=workdir, env=env, capture_output=True, text=True, timeout=TIMEOUT_S,
    )


@pytest.fixture
def tree_copy(tmp_path: Path) -> Path:
    """The package and its contracts copied into a temp dir (pytest removes tmp_path)."""
    shutil.copytree(REPO / "cluster", tmp_path / "cluster", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(PYPROJECT, tmp_path / "pyproject.toml")
    return tmp_path


def test_tree_keeps_every_import_contract():
    result = _lint_imports(REPO)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout, result.stdout


def test_an_asyncio_import_in_the_raft_core_breaks_the_no_io_contract(tree_copy: Path):
    # Any module of the package will do; the first public one by name, so the test survives modules moving.
    victim = sorted((tree_copy / "cluster" / "raft").glob("[!_]*.py"))[0]
    victim.write_text(victim.read_text() + "\nimport asyncio  # deliberate: this test's violation\n")
    result = _lint_imports(tree_copy)
    assert result.returncode != 0, result.stdout
    assert f"{NO_IO_CONTRACT} BROKEN" in result.stdout, result.stdout
    assert f"cluster.raft.{victim.stem} -> asyncio" in result.stdout, result.stdout
