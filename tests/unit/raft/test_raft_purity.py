"""The Raft core stays sans-I/O: no clock, socket, file, thread or global randomness is imported at runtime,
and no function grows past the style limit of 70 lines."""

from __future__ import annotations

import ast
import pathlib

import cluster.raft

FORBIDDEN = {"asyncio", "grpc", "socket", "time", "random", "os", "pathlib", "threading", "prometheus_client"}
RAFT_DIR = pathlib.Path(cluster.raft.__file__).parent


def runtime_imports(tree: ast.Module) -> set[str]:
    names = set()
    for node in tree.body:        # top level only; ``if TYPE_CHECKING:`` blocks are not executed
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module.split(".")[0])
    for node in ast.walk(tree):   # and no import hidden inside a function
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for inner in ast.walk(node):
                if isinstance(inner, ast.Import):
                    names |= {alias.name.split(".")[0] for alias in inner.names}
                elif isinstance(inner, ast.ImportFrom) and inner.module:
                    names.add(inner.module.split(".")[0])
    return names


def test_core_modules_import_nothing_that_does_io_or_global_randomness():
    sources = sorted(RAFT_DIR.glob("*.py"))
    assert len(sources) >= 9
    for source in sources:
        imported = runtime_imports(ast.parse(source.read_text()))
        assert not imported & FORBIDDEN, (source.name, imported & FORBIDDEN)


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
