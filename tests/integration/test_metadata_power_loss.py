"""Acknowledged metadata survives every broker losing power at once (issue 4's correlated crash, for the quorum).

Three broker processes, all voters, run with the power-loss test hook (``kraftpy.test.lose.unsynced.on.crash``:
bytes a file had not fsynced vanish at restart) and a slow disk (each fsync of new bytes waits 50 ms, so the
metadata log nearly always holds unsynced entries).  Real admin clients create topics continuously; all three
brokers are killed with SIGKILL at the same instant and restarted.  Every topic whose CreateTopics was answered
without error must exist afterwards: the controller answers only once the record is committed, and the Raft
driver fsyncs a node's log before that node says it holds an entry.  The test also requires that the crash
really cut a metadata log (``raft.log``); otherwise it crashes again, up to three times.
"""

from __future__ import annotations

import os
import signal
import threading
import time
import uuid

import pytest
from broker_process import BrokerProcess
from cluster_process import ProcessCluster, topics, wait_for
from confluent_kafka.admin import AdminClient, NewTopic

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

POWER_LOSS = {
    "kraftpy.test.lose.unsynced.on.crash": "true",
    "kraftpy.test.fsync.delay.ms": "50",
    "controller.quorum.election.timeout.ms": "300",
    "controller.quorum.fetch.timeout.ms": "800",
    "broker.session.timeout.ms": "1500",
    "broker.heartbeat.interval.ms": "300",
}
CREATORS = 3
MAX_CRASHES = 3
CUT_LINE = "unsynced bytes of the previous run were dropped"


class TopicCreators:
    """``CREATORS`` threads, each with its own AdminClient, creating topics one after another; ``acked`` holds
    the names whose CreateTopics succeeded (a failed or unanswered one may or may not exist: not counted)."""

    def __init__(self, bootstrap: str, prefix: str) -> None:
        self.acked: list[str] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(bootstrap, f"{prefix}-{i}"), daemon=True)
                         for i in range(CREATORS)]
        for thread in self._threads:
            thread.start()

    def _run(self, bootstrap: str, prefix: str) -> None:
        client = AdminClient({"bootstrap.servers": bootstrap, "log_level": 0})
        sequence = 0
        while not self._stop.is_set():
            name = f"{prefix}-{sequence}"
            sequence += 1
            try:
                client.create_topics([NewTopic(name, num_partitions=1, replication_factor=1)],
                                     operation_timeout=5)[name].result(6)
            except Exception:  # noqa: BLE001 - the crash fails requests in flight; those are not acknowledged
                continue
            with self._lock:
                self.acked.append(name)

    def count(self) -> int:
        with self._lock:
            return len(self.acked)

    def stop(self) -> list[str]:
        self._stop.set()
        for thread in self._threads:
            thread.join(15)
        with self._lock:
            return list(self.acked)


def _metadata_log_cuts(node: BrokerProcess) -> int:
    """How many of the node's start-ups so far cut unsynced bytes off its metadata log."""
    return sum(1 for line in node.log_tail(2_000_000).splitlines() if CUT_LINE in line and "raft.log" in line)


def _crash_everyone_and_restart(brokers: ProcessCluster) -> None:
    for node in brokers.nodes.values():
        os.kill(node.pid, signal.SIGKILL)   # all at once: no node gets to fsync after another died
    for node in brokers.nodes.values():
        node.kill9()   # reaps the (already dead) process and records the crash in its log
    brokers.start_all(timeout_s=60)   # all at once: each accepts clients only once the quorum has unfenced it


def test_acknowledged_topic_creations_survive_every_broker_losing_power(tmp_path):
    brokers = ProcessCluster(tmp_path / "cluster", f"meta-{uuid.uuid4().hex[:10]}", overrides=POWER_LOSS)
    try:
        brokers.start_all()
        acked: list[str] = []
        cut_metadata = False
        for crash in range(MAX_CRASHES):
            cuts_before = sum(_metadata_log_cuts(node) for node in brokers.nodes.values())
            creators = TopicCreators(brokers.bootstrap, f"meta{crash}")
            assert wait_for(lambda c=creators: c.count() >= 15, 60, 0.05), "topic creation did not get going"
            time.sleep(0.2)
            _crash_everyone_and_restart(brokers)
            acked += creators.stop()
            cut_metadata = sum(_metadata_log_cuts(node) for node in brokers.nodes.values()) > cuts_before
            if cut_metadata:
                break
        assert cut_metadata, f"{MAX_CRASHES} crashes never caught a metadata log with unsynced entries"

        missing: set[str] = set(acked)

        def all_present() -> bool:
            missing.difference_update(topics(brokers.bootstrap))
            return not missing
        assert wait_for(all_present, 30, 0.5), (
            f"{len(missing)} of {len(acked)} acknowledged topic creations are gone: {sorted(missing)[:10]}")
    finally:
        for node in brokers.nodes.values():
            if node.is_alive():
                node.stop()
