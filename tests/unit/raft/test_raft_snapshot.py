"""Snapshots: when the core asks for one, chunked FetchSnapshot to a far-behind follower, restart from one."""

from __future__ import annotations

import dataclasses

from raft_testlib import CONFIG, Harness

from cluster.core.errors import ErrorCode
from cluster.raft import (
    FetchRequest,
    FetchResponse,
    FetchSnapshotRequest,
    FetchSnapshotResponse,
    Role,
    SnapshotId,
)

SNAPSHOTTING = dataclasses.replace(CONFIG, snapshot_interval_entries=4, snapshot_chunk_bytes=16)


def test_core_asks_for_a_snapshot_after_the_interval_and_the_log_is_compacted():
    harness = Harness(config=SNAPSHOTTING)
    harness.elect(1)
    for index in range(4):
        harness.propose(1, b"p%d" % index)
        harness.settle()
    created = [r.create_snapshot for r in harness.shells[1].readies if r.create_snapshot]
    assert created and created[0] == SnapshotId(4, 1)
    assert harness.shells[1].log.log_start_offset == created[-1].end_offset
    assert harness.nodes[1].log_start_offset == created[-1].end_offset


def test_far_behind_follower_gets_a_snapshot_in_chunks_then_catches_up():
    harness = Harness(config=SNAPSHOTTING)
    harness.elect(1)
    harness.crash(3)
    for index in range(9):
        harness.propose(1, b"p%d" % index)
        harness.settle()
    leader_log = harness.shells[1].log
    assert leader_log.log_start_offset > 0
    harness.start(3)
    harness.advance(CONFIG.begin_quorum_epoch_resend_ms, [1])
    harness.settle()
    follower = harness.nodes[3]
    assert follower.role is Role.FOLLOWER
    readies = harness.shells[3].readies
    installs = [r.install_snapshot for r in readies if r.install_snapshot]
    assert installs and installs[0].snapshot_id.end_offset >= leader_log.log_start_offset
    assert len(installs[0].data) > SNAPSHOTTING.snapshot_chunk_bytes     # it really took several chunks
    assert any(r.load_snapshot == installs[0].snapshot_id for r in readies)
    assert harness.payloads(3) == harness.payloads(1) == [b"p%d" % i for i in range(9)]


def test_leader_answers_a_fetch_below_its_log_start_with_its_snapshot_id():
    harness = Harness(config=SNAPSHOTTING)
    harness.elect(1)
    for index in range(5):
        harness.propose(1, b"p%d" % index)
        harness.settle()
    harness.deliver(FetchRequest(2, 1, 1, 0, 0, 0))
    (reply,) = harness.take(lambda m: isinstance(m, FetchResponse))
    assert reply.snapshot_id == harness.shells[1].log.latest_snapshot_id() and reply.entries == ()


def test_fetch_snapshot_errors():
    harness = Harness(config=SNAPSHOTTING)
    harness.elect(1)
    for index in range(5):
        harness.propose(1, b"p%d" % index)
        harness.settle()
    snapshot_id = harness.shells[1].log.latest_snapshot_id()
    harness.deliver(FetchSnapshotRequest(2, 1, 1, SnapshotId(99, 1), 0))
    harness.deliver(FetchSnapshotRequest(2, 1, 1, snapshot_id, 10_000))
    harness.deliver(FetchSnapshotRequest(2, 1, 0, snapshot_id, 0))
    replies = harness.take(lambda m: isinstance(m, FetchSnapshotResponse))
    assert [r.error_code for r in replies] == [ErrorCode.SNAPSHOT_NOT_FOUND, ErrorCode.POSITION_OUT_OF_RANGE,
                                               ErrorCode.FENCED_LEADER_EPOCH]


def test_restart_loads_the_snapshot_before_applying_the_rest():
    harness = Harness(voters=(1,), config=SNAPSHOTTING)
    harness.elect(1)
    for index in range(6):
        harness.propose(1, b"p%d" % index)
    harness.crash(1)
    harness.shells[1].readies.clear()
    snapshot_id = harness.shells[1].log.latest_snapshot_id()
    harness.start(1)
    harness.elect(1)
    readies = harness.shells[1].readies
    assert snapshot_id is not None and readies[0].load_snapshot == snapshot_id
    assert readies[0].committed_entries == () or readies[0].committed_entries[0].offset == snapshot_id.end_offset
    assert harness.payloads(1) == [b"p%d" % i for i in range(6)]
