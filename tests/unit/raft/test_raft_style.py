"""The Raft core keeps to the style limits: no function grows past 70 lines and every module says why it exists.
(Its purity, no clock, socket, file, thread or global randomness, is an import-linter contract in pyproject.toml,
checked by tests/unit/test_import_contracts.py.)"""

from __future__ import annotations

import ast
import pathlib

import cluster.raft

RAFT_DIR = pathlib.Path(cluster.raft.__file__).parent


def test_functions_stay_small():
    for source in sorted(RAFT_DIR.glob("*.py")):
        for node in ast.walk(ast.parse(source.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                assert length <= 70, f"{source.name}:{node.name} has {length} lines"


def test_every_module_says_why_it_exists():
    for source in sorted(RAFT_DIR.glob("*.py")):
        docstring = ast.get_docstring(ast.parse(source.read_text()))
        assert docstring and len(docstring) > 80, source.name
