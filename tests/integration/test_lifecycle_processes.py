"""Start-up, shutdown and controller hand-over as clients and operators see them (issue 16, item 4).

Real broker processes of a three-node cluster (every node a broker and a voter):

* shutdown: SIGTERM to all three at once, and one by one down to a last survivor without a quorum, ends every
  process within ``EXIT_BOUND_S`` with no traceback or ERROR in its log; a second SIGTERM during a shutdown
  that is waiting for a controller that will never answer ends the process at once;
* start-up: an AdminClient created the moment the first port of a fresh ``kraftpy local-cluster`` accepts creates
  an RF=3 topic within ``CREATE_BOUND_S`` of the quorum's first leader (the node logs say when it was elected);
* hand-over: right after the quorum leader is killed (-9), ``kraftpy cluster describe-quorum`` and the ``kraftpy``
  admin commands succeed through every surviving node's bootstrap address.

Every test stops what it started, also when it fails (the ``cluster`` fixture, ``_stop_local_cluster``; the helpers
SIGKILL after their timeout).
"""

from __future__ import annotations

import datetime
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from broker_process import REPO_ROOT, free_port_block  # tests/helpers is on sys.path (conftest.py)
from cluster_process import ProcessCluster, wait_for
from confluent_kafka.admin import AdminClient, NewTopic

from cluster.cli import main
from cluster.cli.broker import CONTROLLER_PORT_OFFSET

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

EXIT_BOUND_S = 15.0
SECOND_SIGNAL_BOUND_S = 1.5   # well below the controlled-shutdown bound (3 s) the first signal waits out
CREATE_BOUND_S = 5.0
CLI_TIMEOUT_S = 60.0
LEADER_LINE = re.compile(r"^(\S+) INFO .*metadata quorum leader is now (\d+) ", re.MULTILINE)
BAD_LINE = re.compile(r"Traceback|^\S+ (ERROR|CRITICAL) ", re.MULTILINE)


@pytest.fixture
def cluster(tmp_path):
    """A started three-node cluster of its own; stopped (SIGKILL after 10 s) also when the test fails."""
    made = ProcessCluster(tmp_path, "lifecycle-" + uuid.uuid4().hex[:10])
    try:
        made.start_all()
        yield made
    finally:
        made.stop_all()


def _sigterm(node) -> None:
    node.process.send_signal(signal.SIGTERM)


def _wait_exit(node, timeout_s: float) -> float | None:
    """Seconds until ``node``'s process exited, or None if it was still running after ``timeout_s``."""
    started = time.monotonic()
    try:
        node.process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        return None
    return time.monotonic() - started


def _shutdown_log(node) -> str:
    text = node.log_path.read_text(errors="replace")
    return text[text.rfind("shutting down"):] if "shutting down" in text else text


def _assert_clean_shutdown(node) -> None:
    text = _shutdown_log(node)
    assert "broker stopped" in text, f"{node.name} did not finish its shutdown:\n{text[-3000:]}"
    bad = BAD_LINE.search(text)
    assert bad is None, f"{node.name} logged {bad.group(0)!r} while shutting down:\n{text[-3000:]}"


# -- shutdown ----------------------------------------------------------------------------------------------------------
def test_sigterm_to_all_three_at_once_ends_every_process_cleanly(cluster):
    for node in cluster.nodes.values():
        _sigterm(node)
    waited = {node.name: _wait_exit(node, EXIT_BOUND_S) for node in cluster.nodes.values()}
    assert all(seconds is not None for seconds in waited.values()), f"still running after SIGTERM: {waited}"
    for node in cluster.nodes.values():
        _assert_clean_shutdown(node)


def test_sigterm_one_by_one_down_to_a_survivor_without_quorum(cluster):
    leader = cluster.quorum()["leader_id"]
    order = [leader] + [node_id for node_id in cluster.nodes if node_id != leader]   # the leader first
    for node_id in order:
        node = cluster.nodes[node_id]
        _sigterm(node)
        seconds = _wait_exit(node, EXIT_BOUND_S)
        assert seconds is not None, f"{node.name} still running {EXIT_BOUND_S} s after SIGTERM"
        _assert_clean_shutdown(node)


def test_second_sigterm_during_a_waiting_shutdown_exits_at_once(cluster):
    for node_id in (1, 2):
        cluster.nodes[node_id].stop()
    survivor = cluster.nodes[3]   # no quorum: its controlled shutdown waits for a controller in vain
    _sigterm(survivor)
    assert wait_for(lambda: "shutting down" in survivor.log_path.read_text(errors="replace"), 5.0)
    time.sleep(0.3)
    assert survivor.is_alive(), "the survivor stopped before the second signal: nothing was tested"
    _sigterm(survivor)
    seconds = _wait_exit(survivor, EXIT_BOUND_S)
    assert seconds is not None and seconds < SECOND_SIGNAL_BOUND_S, \
        f"second SIGTERM: exited after {seconds} s\n{_shutdown_log(survivor)[-3000:]}"
    assert "exiting now" in _shutdown_log(survivor)


# -- start-up ----------------------------------------------------------------------------------------------------------
def _first_leader_at(log_paths: list[Path]) -> float | None:
    """Wall-clock time of the earliest "metadata quorum leader is now <id>" line in the node logs."""
    times = []
    for path in log_paths:
        for stamp, _leader in LEADER_LINE.findall(path.read_text(errors="replace")):
            times.append(datetime.datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp())
    return min(times, default=None)


def _wait_port(port: int, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return True
        except OSError:
            time.sleep(0.002)
    return False


def test_admin_client_created_as_the_first_port_opens_creates_a_topic_soon_after_the_first_leader(tmp_path):
    base = free_port_block([0, 1, 2, CONTROLLER_PORT_OFFSET, CONTROLLER_PORT_OFFSET + 1, CONTROLLER_PORT_OFFSET + 2])
    data_dir = tmp_path / "local"
    command = [sys.executable, "-m", "cluster", "local-cluster", "--nodes", "3", "--base-port", str(base),
               "--data-dir", str(data_dir), "--stop-timeout-s", "20"]
    with open(tmp_path / "local-cluster.out", "wb") as out:
        local = subprocess.Popen(command, cwd=str(REPO_ROOT), stdout=out, stderr=subprocess.STDOUT)
    try:
        ports = [base, base + 1, base + 2]
        assert wait_for(lambda: any(_wait_port(port, 0.01) for port in ports), 60.0, 0.0), "no port ever opened"
        admin = AdminClient({"bootstrap.servers": ",".join(f"127.0.0.1:{port}" for port in ports)})
        name = "first-" + uuid.uuid4().hex[:6]
        admin.create_topics([NewTopic(name, num_partitions=3, replication_factor=3)])[name].result(60)
        created_at = time.time()
        first_leader = _first_leader_at([data_dir / f"node-{i}.log" for i in (1, 2, 3)])
        assert first_leader is not None, "no node logged a quorum leader"
        assert created_at - first_leader < CREATE_BOUND_S, \
            f"topic created {created_at - first_leader:.1f} s after the first leader"
        replicas = admin.list_topics(name, timeout=5).topics[name].partitions[0].replicas
        assert len(replicas) == 3
    finally:
        _stop_local_cluster(local, tmp_path / "local-cluster.out")


def _stop_local_cluster(local: subprocess.Popen, output: Path) -> None:
    """SIGTERM (local-cluster forwards it and SIGKILLs stragglers); if it hangs, SIGKILL it and, by the pids it
    printed, its nodes (they run in their own sessions, so they would outlive it)."""
    local.send_signal(signal.SIGTERM)
    try:
        local.wait(timeout=30)
        return
    except subprocess.TimeoutExpired:
        local.kill()
        local.wait()
    for pid in re.findall(r"^node \d+: pid (\d+)", output.read_text(errors="replace"), re.MULTILINE):
        try:
            os.kill(int(pid), signal.SIGKILL)
        except ProcessLookupError:
            pass


# -- hand-over ---------------------------------------------------------------------------------------------------------
def _kraftpy(capsys, *args: str) -> tuple[int, str]:
    """Runs a ``kraftpy`` command in this process (no interpreter start-up: it runs right after the change)."""
    status = main(list(args))
    captured = capsys.readouterr()
    return status, (captured.err.strip() or captured.out.strip())[-1000:]


def test_cli_right_after_a_controller_change_succeeds_through_every_surviving_node(cluster, capsys):
    name = "before-" + uuid.uuid4().hex[:6]
    assert _kraftpy(capsys, "topics", "create", "--bootstrap-server", cluster.nodes[1].bootstrap, name,
                    "--partitions", "3", "--replication-factor", "3")[0] == 0
    leader = cluster.quorum()["leader_id"]
    cluster.nodes[leader].kill9()
    killed = time.monotonic()
    failures, ran = [], []
    for node_id, node in cluster.nodes.items():
        if node_id == leader:
            continue
        bootstrap = ["--bootstrap-server", node.bootstrap]
        # The commands that need the controller first, while the survivors may still be electing.
        commands = {
            "topics create": ["topics", "create", *bootstrap, f"after-{node_id}", "--partitions", "1",
                              "--replication-factor", "2"],
            "cluster describe-quorum": ["cluster", "describe-quorum", *bootstrap, "--json"],
            "groups list": ["groups", "list", *bootstrap],
            "cluster status": ["cluster", "status", *bootstrap, "--json"],
            "topics list": ["topics", "list", *bootstrap],
            "topics describe": ["topics", "describe", *bootstrap, name],
        }
        for what, argv in commands.items():
            status, output = _kraftpy(capsys, *argv)
            ran.append(f"node {node_id} {what}: exit {status} at {time.monotonic() - killed:.1f} s")
            # cluster status exits 1 for "answered: unhealthy" (the dead node's replicas); 2 is "unreachable".
            if status not in ((0, 1) if what == "cluster status" else (0,)):
                failures.append(f"node {node_id} {what}: exit {status}: {output}")
            elif what == "cluster describe-quorum" and json.loads(output)["leader_id"] == leader:
                failures.append(f"node {node_id} {what} names the dead leader: {output}")
    assert not failures, "\n".join(failures + ran)
