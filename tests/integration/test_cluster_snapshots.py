"""Metadata log snapshots on a real 3-process cluster (metadata.log.max.snapshot.interval.entries=5).

Every controller decision is one Raft entry, so creating a few dozen topics makes each node snapshot its image
several times and compact its metadata log.  Checked: snapshots are taken on every node; a node killed with
SIGKILL restarts from its own snapshot and serves every topic; a node stopped while the leader compacts its log
past the node's log end offset catches up through snapshot transfer (FetchSnapshot) and serves every topic.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from pathlib import Path

import pytest
from cluster_process import ProcessCluster, create_topic, wait_for  # tests/helpers is on sys.path

from cluster.broker.cluster_mode import METADATA_DIR
from cluster.client.connection import ApiKey, BrokerConnection
from cluster.storage.raft_store import RaftStore
from cluster.wire.messages import metadata_request as mq

pytestmark = pytest.mark.timeout(240)

CLUSTER_ID = "kraftpy-snap-" + uuid.uuid4().hex[:10]
SNAPSHOT_INTERVAL_ENTRIES = 5
_LOADED = re.compile(r"metadata snapshot loaded: end offset (\d+)")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    cluster = ProcessCluster(tmp_path_factory.mktemp("snapshots"), CLUSTER_ID, overrides={
        "metadata.log.max.snapshot.interval.entries": str(SNAPSHOT_INTERVAL_ENTRIES), "num.partitions": "1"})
    try:
        cluster.start_all()
        yield cluster
    finally:
        cluster.stop_all()


def topics_at(node) -> set[str]:
    """Topic names in ONE broker's own Metadata answer, from its image.

    Not through a Kafka client library: librdkafka sends Metadata to any broker it has learned of, so
    "listed through node N" would pass with node N down or empty.
    """
    async def ask() -> set[str]:
        connection = await BrokerConnection.open(node.host, node.port, connect_timeout_ms=2000,
                                                 request_timeout_ms=5000)
        try:
            response = await connection.request(ApiKey.METADATA, mq.MetadataRequest(
                topics=None, allow_auto_topic_creation=False))
        finally:
            await connection.close()
        return {t.name for t in response.topics if t.error_code == 0}
    try:
        return asyncio.run(ask())
    except Exception:  # noqa: BLE001 -- a broker still starting: "sees nothing yet", polled again
        return set()


def raft_dir(cluster: ProcessCluster, node_id: int) -> Path:
    return Path(cluster.nodes[node_id].data_dir) / METADATA_DIR


def latest_snapshot_end(cluster: ProcessCluster, node_id: int) -> int:
    """End offset of the node's latest metadata snapshot (= its log start offset), -1 if it has none."""
    ends = [int(path.name.split("-")[0]) for path in raft_dir(cluster, node_id).glob("*.snapshot")]
    return max(ends, default=-1)


def create_many(cluster: ProcessCluster, prefix: str, count: int) -> list[str]:
    names = [f"{prefix}-{i}-{uuid.uuid4().hex[:4]}" for i in range(count)]
    for name in names:
        create_topic(cluster.bootstrap, name, 1)
    return names


def a_follower(cluster: ProcessCluster) -> int:
    leader = cluster.quorum()["leader_id"]
    return next(node_id for node_id in sorted(cluster.nodes) if node_id != leader)


def test_every_node_snapshots_and_a_killed_node_restarts_from_its_snapshot(cluster):
    names = create_many(cluster, "snap", 6 * SNAPSHOT_INTERVAL_ENTRIES)
    for node_id, node in cluster.nodes.items():
        assert wait_for(lambda n=node: n.log_tail(500_000).count("metadata snapshot taken") >= 3, 10, 0.1), \
            f"node {node_id} took fewer than 3 snapshots"
        assert latest_snapshot_end(cluster, node_id) >= 5 * SNAPSHOT_INTERVAL_ENTRIES

    victim = a_follower(cluster)
    node = cluster.nodes[victim]
    snapshot_end = latest_snapshot_end(cluster, victim)
    node.kill9()
    mark = node.log_size()
    node.start()
    assert wait_for(lambda: set(names) <= topics_at(node), 15, 0.2), \
        f"restarted node {victim} misses {set(names) - topics_at(node)}"
    loaded = [int(m) for m in _LOADED.findall(node.log_since(mark, max_bytes=1_000_000))]
    assert loaded and loaded[0] >= snapshot_end, f"node {victim} did not start from its snapshot: {loaded}"
    print(f"\nnode {victim} restarted after kill -9 from its snapshot ending at {loaded[0]} ({len(names)} topics)")
    # the restarted node keeps taking part: a topic created now is visible through it
    [after] = create_many(cluster, "after-restart", 1)
    assert wait_for(lambda: after in topics_at(node), 10, 0.1)


def test_a_node_behind_the_leaders_log_start_catches_up_by_snapshot_transfer(cluster):
    behind = a_follower(cluster)
    node = cluster.nodes[behind]
    node.stop()
    store = RaftStore(raft_dir(cluster, behind), cluster_id=CLUSTER_ID, node_id=behind)
    try:
        behind_end = store.log_end_offset
    finally:
        store.close()

    # Create topics until every live node's log starts past the stopped node's log end offset: the stopped
    # node can then only catch up from a snapshot, whichever survivor leads when it returns.
    names: list[str] = []
    survivors = [n for n in cluster.nodes if n != behind]
    while min(latest_snapshot_end(cluster, n) for n in survivors) <= behind_end:
        assert len(names) < 20 * SNAPSHOT_INTERVAL_ENTRIES, "the survivors never compacted their logs"
        names += create_many(cluster, "while-down", SNAPSHOT_INTERVAL_ENTRIES)

    mark = node.log_size()
    node.start()
    assert wait_for(lambda: set(names) <= topics_at(node), 20, 0.2), \
        f"node {behind} misses {set(names) - topics_at(node)}"
    loaded = [int(m) for m in _LOADED.findall(node.log_since(mark, max_bytes=1_000_000))]
    assert any(end > behind_end for end in loaded), \
        f"node {behind} (log end {behind_end}) never loaded a leader snapshot: loaded {loaded}"
    print(f"\nnode {behind} stopped at log end {behind_end}; survivors' log start "
          f"{[latest_snapshot_end(cluster, n) for n in survivors]} after {len(names)} topics; snapshots loaded {loaded}")
    leader = cluster.nodes[cluster.quorum()["leader_id"]]
    assert wait_for(lambda: topics_at(node) == topics_at(leader), 10, 0.2)
    assert wait_for(lambda: max(cluster.quorum()["high_watermark"] - end
                                for _, end, _ in cluster.quorum()["voters"]) <= 1, 10, 0.2)
