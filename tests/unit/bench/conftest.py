"""The benchmarks' tests load bench/ scripts through tests/helpers/bench_modules.py."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "helpers"))
