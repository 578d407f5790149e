"""Make the repo-root `jepsen_like` package importable: pyproject's package list names only `cluster*`
(jepsen_like is an external tester, not part of the installed broker)."""

import sys
from pathlib import Path

REPO_ROOT = str(Path(__file__).resolve().parents[2])
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)
