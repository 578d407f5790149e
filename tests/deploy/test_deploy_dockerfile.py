"""deploy/Dockerfile: hadolint passes, broken variants fail it, and the image keeps its promises.

Promises checked by parsing: the base image is a build ARG, the final stage runs as a numeric non-root user,
the health check and the start command are exec (JSON) form so the broker is PID 1 and gets SIGTERM, data
lives on a VOLUME and the ports are exposed.  The entrypoint's node.id rule is run for real with sh.
"""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest
from conftest import DEPLOY_DIR, DOCKERFILE, REPO_ROOT
from dockerfile_parse import DockerfileParser


def hadolint(binary: str, path) -> subprocess.CompletedProcess:
    return subprocess.run([binary, "--no-color", str(path)], capture_output=True, text=True, timeout=60)


def final_stage() -> list[dict]:
    """Instructions of the last build stage (after the last FROM)."""
    instructions = DockerfileParser(path=str(DOCKERFILE)).structure
    last_from = max(i for i, item in enumerate(instructions) if item["instruction"] == "FROM")
    return instructions[last_from:]


def values(stage: list[dict], instruction: str) -> list[str]:
    return [item["value"] for item in stage if item["instruction"] == instruction]


# -- hadolint -------------------------------------------------------------------------------------------------------
def test_hadolint_passes(hadolint_bin):
    result = hadolint(hadolint_bin, DOCKERFILE)
    assert result.returncode == 0, result.stdout + result.stderr


MUTATIONS = {
    "shell-form CMD": ('CMD ["kraftpy", "broker", "--config", "/etc/kraftpy/server.properties"]',
                       "CMD kraftpy broker --config /etc/kraftpy/server.properties", "DL3025"),
    "syntax error": ("RUN groupadd", "RUNN groupadd", "missing whitespace"),
    "root user": ("USER 10001:10001", "USER root", "DL3002"),
}


@pytest.mark.parametrize("name", sorted(MUTATIONS))
def test_hadolint_rejects_a_broken_dockerfile(hadolint_bin, tmp_path, name):
    old, new, expected = MUTATIONS[name]
    original = DOCKERFILE.read_text()
    assert old in original, f"mutation {name!r} no longer applies to deploy/Dockerfile"
    broken = tmp_path / "Dockerfile"
    broken.write_text(original.replace(old, new, 1))
    result = hadolint(hadolint_bin, broken)
    assert result.returncode != 0, f"{name}: hadolint accepted a broken Dockerfile"
    assert expected in result.stdout + result.stderr


def test_an_unmodified_copy_passes_hadolint(hadolint_bin, tmp_path):
    copy = tmp_path / "Dockerfile"
    shutil.copy(DOCKERFILE, copy)
    assert hadolint(hadolint_bin, copy).returncode == 0


# -- structure --------------------------------------------------------------------------------------------------------
def test_base_image_is_a_build_arg():
    parser = DockerfileParser(path=str(DOCKERFILE))
    instructions = parser.structure
    first_from = next(i for i, item in enumerate(instructions) if item["instruction"] == "FROM")
    global_args = [item["value"] for item in instructions[:first_from] if item["instruction"] == "ARG"]
    assert any(arg.startswith("BASE_IMAGE=") for arg in global_args)
    froms = [item["value"] for item in instructions if item["instruction"] == "FROM"]
    assert len(froms) >= 2, "multi-stage: the runtime image carries no build leftovers"
    assert all(value.split()[0] == "${BASE_IMAGE}" for value in froms)


def test_runs_as_numeric_non_root_user():
    (user,) = values(final_stage(), "USER")
    uid, _, gid = user.partition(":")
    assert uid.isdigit() and int(uid) != 0, "numeric, so Kubernetes runAsNonRoot can verify it"
    assert gid == "" or (gid.isdigit() and int(gid) != 0)


def test_healthcheck_is_json_form_and_hits_healthz():
    (healthcheck,) = values(final_stage(), "HEALTHCHECK")
    command = json.loads(healthcheck[healthcheck.index("CMD") + len("CMD"):].strip())
    assert command[0] == "python3"
    assert "http://127.0.0.1:9404/healthz" in command[-1]


def test_start_command_is_exec_form_and_entrypoint_execs():
    stage = final_stage()
    (entrypoint,) = values(stage, "ENTRYPOINT")
    (cmd,) = values(stage, "CMD")
    assert json.loads(entrypoint) == ["/usr/local/bin/kraftpy-entrypoint"]
    assert json.loads(cmd)[:2] == ["kraftpy", "broker"]
    assert values(stage, "STOPSIGNAL") in ([], ["SIGTERM"])
    script = (DEPLOY_DIR / "entrypoint.sh").read_text()
    assert script.rstrip().splitlines()[-1] == 'exec "$@"'


def test_volume_and_ports():
    stage = final_stage()
    (volume,) = values(stage, "VOLUME")
    assert json.loads(volume) == ["/var/lib/kraftpy"]
    exposed = {port for value in values(stage, "EXPOSE") for port in value.split()}
    assert {"9092", "9093", "9404"} <= exposed
    properties = (DEPLOY_DIR / "server.properties").read_text()
    assert "log.dirs=/var/lib/kraftpy/data" in properties
    assert "metrics.listener=0.0.0.0:9404" in properties


def test_build_context_ships_what_the_dockerfile_copies():
    ignore = (REPO_ROOT / ".dockerignore").read_text().splitlines()
    for source in ("pyproject.toml", "README.md", "cluster/", "deploy/server.properties", "deploy/entrypoint.sh"):
        assert "!" + source in ignore


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"HOSTNAME": "kraftpy-0"}, "1"),
        ({"HOSTNAME": "kraftpy-2"}, "3"),
        ({"HOSTNAME": "kraftpy-12"}, "13"),
        ({"HOSTNAME": "kraftpy-2", "KRAFTPY_NODE_ID": "7"}, "7"),  # explicit wins (docker-compose)
        ({"HOSTNAME": "3f2a9c1b"}, "unset"),  # no ordinal: node.id from the config file
        ({"HOSTNAME": "broker-x1"}, "unset"),
    ],
)
def test_entrypoint_derives_node_id_from_the_pod_ordinal(env, expected):
    sh = shutil.which("sh")
    if sh is None:
        pytest.skip("no POSIX sh on this machine")
    result = subprocess.run(
        [sh, str(DEPLOY_DIR / "entrypoint.sh"), sh, "-c", 'echo "${KRAFTPY_NODE_ID:-unset}"'],
        capture_output=True, text=True, timeout=10, env={"PATH": "/usr/bin:/bin", **env},
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == expected
