"""Network namespaces and partitions (jepsen_like/netns.py) against real sockets: a grudge really drops
packets, one-way drops only the named direction's packets at the receiver, healing restores
connectivity, and teardown leaves no namespace or /etc/netns file behind.  Needs root (skips saying so)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time

import pytest

from jepsen_like.cluster_control import Cluster
from jepsen_like.nemesis import grudge_for
from jepsen_like.netns import NETNS_ETC, Network, unavailable_reason

REASON = unavailable_reason()
BACKENDS = ["iprule"] + (["nft"] if shutil.which("nft") else [])

PROBE = """
import socket, sys
try:
    socket.create_connection((sys.argv[1], 7000), timeout=1.0).close(); print("ok")
except OSError as exc:
    print(type(exc).__name__)
"""


def _listen(net: Network, node: str) -> subprocess.Popen:
    server = ("import socket, time\ns = socket.socket(); s.bind((%r, 7000)); s.listen(64)\n"
              "print('up', flush=True)\ntime.sleep(60)\n") % net.addresses[node]
    proc = subprocess.Popen(["ip", "netns", "exec", net.ns(node), sys.executable, "-c", server],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "up"
    return proc


def _reach(net: Network, src: str, dst: str) -> str:
    return subprocess.run(["ip", "netns", "exec", net.ns(src), sys.executable, "-c", PROBE, net.addresses[dst]],
                          capture_output=True, text=True, timeout=20).stdout.strip()


def _our_namespaces(net: Network) -> list[str]:
    listing = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    return [line.split()[0] for line in listing.splitlines() if line.startswith(net.prefix + "-")]


@pytest.mark.skipif(REASON is not None, reason=f"network namespaces unavailable: {REASON}")
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.timeout(120)
def test_grudges_drop_packets_heal_restores_and_teardown_cleans(backend):
    net = Network(["n1", "n2", "n3"], backend=backend)
    servers = []
    try:
        net.setup()
        servers = [_listen(net, n) for n in net.nodes]
        assert _reach(net, "n2", "n1") == "ok" and _reach(net, "n3", "n1") == "ok"

        net.apply_grudge(grudge_for("one", net.nodes, None, target="n1"))   # isolate n1 both ways
        assert _reach(net, "n2", "n1") == "TimeoutError"
        assert _reach(net, "n1", "n3") == "TimeoutError"
        assert _reach(net, "n2", "n3") == "ok"

        net.apply_grudge({"n2": ["n3"]})        # replaces the previous grudge: only n2 drops n3 now
        assert _reach(net, "n3", "n2") == "TimeoutError"
        assert _reach(net, "n2", "n1") == "ok" and _reach(net, "n1", "n2") == "ok"

        net.heal()
        assert all(_reach(net, a, b) == "ok" for a in net.nodes for b in net.nodes if a != b)
        # hostnames resolve per namespace through /etc/netns/<ns>/hosts
        hosts = subprocess.run(["ip", "netns", "exec", net.ns("n1"), "getent", "hosts", "n3"],
                               capture_output=True, text=True).stdout
        assert net.addresses["n3"] in hosts
    finally:
        for proc in servers:
            proc.kill()
            proc.wait()
        net.teardown()
    assert _our_namespaces(net) == []
    assert not any((NETNS_ETC / net.ns(n)).exists() for n in net.nodes)


@pytest.mark.skipif(REASON is not None, reason=f"network namespaces unavailable: {REASON}")
def test_client_namespace_is_per_thread_and_left_on_teardown():
    net = Network(["n1"], pid=os.getpid() + 1_000_000)   # a name no other run uses
    home = os.readlink("/proc/thread-self/ns/net")
    try:
        net.setup()
        net.enter_client_ns()
        assert os.readlink("/proc/thread-self/ns/net") != home
    finally:
        net.teardown()
    assert os.readlink("/proc/thread-self/ns/net") == home
    assert _our_namespaces(net) == []


def test_no_netns_fallback_uses_loopback_and_says_partitions_are_off(tmp_path):
    cluster = Cluster(tmp_path, 3, overrides={}, repo_root=tmp_path, use_netns=False)
    assert not cluster.partitions_available and cluster.network is None
    assert "no network namespaces: --no-netns" in cluster.mode
    assert [n.host for n in cluster.nodes.values()] == ["127.0.0.1", "127.0.0.2", "127.0.0.3"]
    assert cluster.voters.count("@127.0.0.") == 3
    for i, node in enumerate(cluster.nodes.values(), 1):
        assert f"node.id={i}" in (node.data_dir / "meta.properties").read_text()
    started = time.monotonic()
    cluster.stop()   # nothing started: a no-op that must not fail
    assert time.monotonic() - started < 5
