"""deploy/docker-compose.yml run for real, without a container engine: each service a process in its own
network namespace with its service name as hostname, its command and environment taken from the file.

What the issue asks to show: the three nodes come up and form a quorum; a real client (confluent-kafka, run
in a fourth "client" namespace where the service names resolve) produces and consumes through the service
names; the EXTERNAL listener advertises the host addresses instead; a node is stopped (SIGTERM, as
``docker compose stop`` does) and the cluster keeps serving metadata, produce and consume.

Like the container, each service runs through deploy/entrypoint.sh (the image's ENTRYPOINT), which formats its
empty data volume with KRAFTPY_CLUSTER_ID; each named volume becomes a temporary directory.  Namespaces come
from jepsen_like/netns.py (bridge in its own namespace, nothing touches the host network).  Needs root and
iproute2; skips with the reason otherwise.  Processes and namespaces are removed even when a step fails.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import yaml
from conftest import COMPOSE_FILE, DEPLOY_DIR, REPO_ROOT

from jepsen_like.netns import Network, unavailable_reason

REASON = unavailable_reason()
if REASON:
    print(f"test_compose_topology: skipped, network namespaces unavailable: {REASON}")
pytestmark = [pytest.mark.timeout(300),
              pytest.mark.skipif(REASON is not None, reason=f"network namespaces unavailable: {REASON}")]

CLIENT = Path(__file__).with_name("compose_client.py")
VENV_BIN = Path(sys.executable).parent


def broker_services() -> dict[str, dict]:
    compose = yaml.safe_load(COMPOSE_FILE.read_text())
    return {name: service for name, service in compose["services"].items() if "profiles" not in service}


class Topology:
    """The compose brokers as processes; ``client(...)`` runs compose_client.py in a namespace."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.services = broker_services()
        self.network = Network(list(self.services))
        self.processes: dict[str, subprocess.Popen] = {}

    def service_env(self, name: str) -> dict[str, str]:
        service = self.services[name]
        env = {key: value for key, value in os.environ.items() if not key.startswith("KRAFTPY_")}
        env["PATH"] = f"{VENV_BIN}:{env.get('PATH', '/usr/bin:/bin')}"   # `kraftpy` as in the image
        env["PYTHONUNBUFFERED"] = "1"
        mounts = {}
        for volume in service.get("volumes", []):
            _source, target = volume.split(":")[:2]
            mounts[target] = str(self.root / name / "volume")
        for key, value in service["environment"].items():
            value = str(value)
            for target, directory in mounts.items():
                if value == target or value.startswith(target + "/"):
                    value = directory + value[len(target):]
            env[key] = value
        return env

    def start(self, name: str) -> None:
        service = self.services[name]
        assert service["hostname"] == name
        command = [str(DEPLOY_DIR / "entrypoint.sh"), *service["command"]]
        (self.root / name).mkdir(parents=True, exist_ok=True)
        log = open(self.root / name / "broker.log", "ab")
        self.processes[name] = subprocess.Popen(
            self.network.exec_prefix(name) + command, env=self.service_env(name), cwd=str(self.root / name),
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()

    def stop(self, name: str, timeout_s: float = 30.0) -> int:
        process = self.processes[name]
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        return process.returncode

    def client(self, *args: str, namespace: str | None = None, timeout_s: float = 90) -> dict:
        ns = namespace or self.network.client_ns
        result = subprocess.run(["ip", "netns", "exec", ns, sys.executable, str(CLIENT), *args],
                                capture_output=True, text=True, timeout=timeout_s, cwd=str(REPO_ROOT))
        assert result.returncode == 0, f"client {args} failed: {result.stderr[-2000:]}"
        return json.loads(result.stdout.strip().splitlines()[-1])

    def internal_bootstrap(self, names=None) -> str:
        return ",".join(f"{name}:{self.internal_port(name)}" for name in (names or self.services))

    def internal_port(self, name: str) -> int:
        listeners = self.service_env(name)["KRAFTPY_LISTENERS"].split(",")
        (internal,) = [item for item in listeners if item.startswith("INTERNAL://")]
        return int(internal.rsplit(":", 1)[1])

    def logs(self) -> str:
        parts = []
        for name in self.services:
            path = self.root / name / "broker.log"
            if path.exists():
                parts.append(f"--- {name} ---\n" + path.read_text(errors="replace")[-3000:])
        return "\n".join(parts)

    def teardown(self) -> None:
        for name in list(self.processes):
            try:
                self.stop(name, timeout_s=15)
            except Exception:  # noqa: BLE001 -- keep tearing down the rest
                self.processes[name].kill()
        self.network.teardown()


def wait_for(predicate, timeout_s: float, interval_s: float = 0.5):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval_s)
    return None


@pytest.fixture(scope="module")
def topology(tmp_path_factory):
    topo = Topology(tmp_path_factory.mktemp("compose"))
    try:
        topo.network.setup()
        for name in topo.services:
            topo.start(name)
        yield topo
    finally:
        topo.teardown()
        leftover = [ns for ns in topo.network.created]
        assert not leftover, f"namespaces left behind: {leftover}"


def expected_internal(topo: Topology, names) -> dict[str, str]:
    return {str(topo.service_env(name)["KRAFTPY_NODE_ID"]): f"{name}:{topo.internal_port(name)}" for name in names}


def test_the_compose_cluster_serves_through_service_names_and_survives_a_stopped_node(topology):
    topo = topology
    everyone = list(topo.services)
    bootstrap = topo.internal_bootstrap()
    want = expected_internal(topo, everyone)
    seen = wait_for(lambda: (m := topo.client("metadata", bootstrap)).get("brokers") == want and m, 90)
    assert seen, f"brokers never all registered and unfenced through the service names\n{topo.logs()}"
    assert seen["controller_id"] in {int(i) for i in want}
    for name in everyone:   # each data volume was formatted by the entrypoint with the compose cluster id
        meta = (topo.root / name / "volume" / "data" / "meta.properties").read_text()
        assert f"cluster.id={topo.service_env(name)['KRAFTPY_CLUSTER_ID']}" in meta

    # EXTERNAL: asked through the host-side listener (here from inside broker1's namespace, where
    # localhost:19092 is that listener), metadata names the host addresses, not the service names.
    external = topo.client("metadata", "localhost:19092", namespace=topo.network.ns("broker1"))
    assert sorted(external["brokers"].values()) == ["localhost:19092", "localhost:19093", "localhost:19094"]

    topic = f"compose-{uuid.uuid4().hex[:8]}"
    created = topo.client("create", bootstrap, topic, "3", "3")
    assert created == {"created": topic}, created
    produced = topo.client("produce", bootstrap, topic, "60", "before")
    assert produced["undelivered"] == 0 and produced["error_count"] == 0, produced
    consumed = topo.client("consume", bootstrap, topic, f"g-{topic}", "60", "60")
    assert consumed["values"] == sorted(f"before-{i}" for i in range(60))

    # Stop one node as `docker compose stop broker3` would (SIGTERM), then keep serving on the other two.
    victim = everyone[-1]
    survivors = everyone[:-1]
    assert topo.stop(victim) == 0, topo.logs()
    survivor_bootstrap = topo.internal_bootstrap(survivors)
    want = expected_internal(topo, survivors)
    assert wait_for(lambda: topo.client("metadata", survivor_bootstrap).get("brokers") == want, 60), topo.logs()
    produced = topo.client("produce", bootstrap, topic, "60", "after")   # the dead name in bootstrap is fine
    assert produced["undelivered"] == 0 and produced["error_count"] == 0, f"{produced}\n{topo.logs()}"
    consumed = topo.client("consume", survivor_bootstrap, topic, f"g2-{topic}", "120", "90")
    assert consumed["values"] == sorted([f"before-{i}" for i in range(60)] + [f"after-{i}" for i in range(60)])
    metadata = topo.client("metadata", survivor_bootstrap)
    leaders = {p["leader"] for p in metadata["topics"][topic].values()}
    assert leaders and leaders <= {int(i) for i in want}, metadata["topics"][topic]
