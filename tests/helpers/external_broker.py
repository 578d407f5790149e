"""KRAFTPY_IT_BOOTSTRAP: point the shared-broker end-to-end tests at a broker this harness did not start.

Useful to run the same client tests against a real Kafka for comparison.  Tests that need their own
broker process (restarts, config overrides) or its data directory skip, saying so.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pytest

ENV_VAR = "KRAFTPY_IT_BOOTSTRAP"
EXTERNAL_BOOTSTRAP = os.environ.get(ENV_VAR)


@dataclass
class ExternalBroker:
    """A broker this harness did not start: no process, no data directory."""
    bootstrap: str
    name: str = "external"
    data_dir: Path | None = None

    def partition_dir(self, topic: str, partition: int) -> Path:
        pytest.skip(f"external broker ({ENV_VAR}): its data directory is not visible")


def require_own_broker() -> None:
    if EXTERNAL_BOOTSTRAP:
        pytest.skip(f"needs a broker process started by the harness; {ENV_VAR} is set")
