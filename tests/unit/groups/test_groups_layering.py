"""cluster/groups is a pure state machine (DESIGN.md layers): it may import the standard library's harmless
parts, cluster.core and itself, nothing that does I/O or keeps time, and no other pure package."""

from __future__ import annotations

import ast
from pathlib import Path

import cluster.groups

FORBIDDEN = {"asyncio", "socket", "time", "os", "threading", "random", "grpc", "selectors", "subprocess"}
ALLOWED_CLUSTER = ("cluster.core", "cluster.groups")


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


def test_groups_package_stays_pure():
    package_dir = Path(cluster.groups.__file__).parent
    modules = sorted(package_dir.glob("*.py"))
    assert len(modules) >= 6
    for module in modules:
        for name in _imports(module):
            top = name.split(".")[0]
            assert top not in FORBIDDEN, f"{module.name} imports {name}"
            if top == "cluster":
                assert name.startswith(ALLOWED_CLUSTER), f"{module.name} imports {name}"
