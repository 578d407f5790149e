"""Loads a bench/ script as a module by its file path, for the tests of the benchmarks' own logic.

Why by path: putting bench/ on sys.path would let bench/cluster.py shadow the ``cluster`` package for every test
collected after the one that did it.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

BENCH_DIR = Path(__file__).resolve().parents[2] / "bench"


def load_bench_module(stem: str) -> ModuleType:
    """bench/<stem>.py as module ``bench_<stem>`` (registered in sys.modules, as dataclasses need)."""
    spec = importlib.util.spec_from_file_location(f"bench_{stem}", BENCH_DIR / f"{stem}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module
