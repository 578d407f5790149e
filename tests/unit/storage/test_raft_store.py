"""RaftStore: the file-backed Raft log, snapshots and election state survive reopen and crashes."""

from __future__ import annotations

import os

import pytest

from cluster.core.errors import InvariantViolation
from cluster.raft.log import ElectionState, LogEntry, SnapshotId
from cluster.storage.raft_store import RaftStore, RaftStoreError, encode_record


def _open(path, node_id=1, cluster_id="c1") -> RaftStore:
    return RaftStore(path, cluster_id=cluster_id, node_id=node_id)


def _entries(start, end, epoch=1):
    return [LogEntry(o, epoch, f"p{o}".encode(), is_control=(o == 0)) for o in range(start, end)]


def test_fresh_directory_is_formatted_with_a_directory_id(tmp_path):
    store = _open(tmp_path)
    assert len(store.directory_id) == 32
    assert (store.log_start_offset, store.log_end_offset, store.latest_snapshot_id()) == (0, 0, None)
    assert store.election_state == ElectionState()
    store.close()
    assert _open(tmp_path).directory_id == store.directory_id


def test_wrong_cluster_or_node_id_is_refused(tmp_path):
    _open(tmp_path).close()
    with pytest.raises(RaftStoreError, match="cluster"):
        _open(tmp_path, cluster_id="other")
    with pytest.raises(RaftStoreError, match="node 1"):
        _open(tmp_path, node_id=2)


def test_entries_and_election_state_survive_reopen(tmp_path):
    store = _open(tmp_path)
    store.append(_entries(0, 5))
    store.append([LogEntry(5, 2, b"x")])
    store.sync()
    store.write_election_state(ElectionState(2, 3, 3))
    store.close()
    again = _open(tmp_path)
    assert list(again.read_entries(0, 6)) == _entries(0, 5) + [LogEntry(5, 2, b"x")]
    assert again.entry_epoch(5) == 2 and again.entry_epoch(0) == 1
    assert again.election_state == ElectionState(2, 3, 3)


def test_truncate_to_then_append_rewrites_the_tail(tmp_path):
    store = _open(tmp_path)
    store.append(_entries(0, 6))
    store.truncate_to(3)
    store.append([LogEntry(3, 2, b"new")])
    store.close()
    again = _open(tmp_path)
    assert again.log_end_offset == 4
    assert again.read_entries(3, 4)[0] == LogEntry(3, 2, b"new")


def test_append_must_continue_the_log(tmp_path):
    store = _open(tmp_path)
    store.append(_entries(0, 2, epoch=3))
    with pytest.raises(InvariantViolation):
        store.append([LogEntry(5, 3, b"gap")])
    with pytest.raises(InvariantViolation):
        store.append([LogEntry(2, 2, b"older epoch")])


@pytest.mark.parametrize("damage", ["torn_header", "torn_body", "bad_crc"])
def test_recovery_truncates_a_torn_or_corrupt_tail(tmp_path, damage):
    store = _open(tmp_path)
    store.append(_entries(0, 4))
    store.close()
    log_path = tmp_path / "raft.log"
    good_size = log_path.stat().st_size
    record = encode_record(LogEntry(4, 1, b"tail-record"))
    if damage == "torn_header":
        extra = record[:5]
    elif damage == "torn_body":
        extra = record[:-3]
    else:
        extra = record[:-1] + bytes([record[-1] ^ 0xFF])
    with open(log_path, "ab") as f:
        f.write(extra)
    again = _open(tmp_path)
    assert again.log_end_offset == 4
    assert again.truncated_bytes == len(extra)
    assert log_path.stat().st_size == good_size
    again.append([LogEntry(4, 1, b"after")])   # the log continues where the valid part ended
    again.close()
    assert _open(tmp_path).read_entries(4, 5)[0].payload == b"after"


def test_compaction_keeps_snapshot_and_suffix(tmp_path):
    store = _open(tmp_path)
    store.append(_entries(0, 10))
    store.sync()
    store.compact_to_snapshot(SnapshotId(6, 1), b"state@6")
    assert (store.log_start_offset, store.log_end_offset) == (6, 10)
    assert store.snapshot_size_bytes(SnapshotId(6, 1)) == 7
    assert store.read_snapshot_chunk(SnapshotId(6, 1), 2, 3) == b"ate"
    assert store.read_snapshot_chunk(SnapshotId(5, 1), 0, 3) is None
    store.append([LogEntry(10, 2, b"later")])
    store.compact_to_snapshot(SnapshotId(8, 1), b"state@8")
    store.close()
    again = _open(tmp_path)
    assert again.latest_snapshot_id() == SnapshotId(8, 1)
    assert again.snapshot_data() == b"state@8"
    assert (again.log_start_offset, again.log_end_offset) == (8, 11)
    assert [e.offset for e in again.read_entries(8, 11)] == [8, 9, 10]
    assert len(list(tmp_path.glob("*.snapshot"))) == 1


def test_crash_after_snapshot_before_log_rewrite_finishes_compaction(tmp_path):
    """The snapshot is durable but the old log (entries below it) is still there: recovery drops them."""
    store = _open(tmp_path)
    store.append(_entries(0, 10))
    store.close()
    saved_log = (tmp_path / "raft.log").read_bytes()
    store = _open(tmp_path)
    store.compact_to_snapshot(SnapshotId(6, 1), b"s")
    store.close()
    (tmp_path / "raft.log").write_bytes(saved_log)     # as if we crashed before replacing the log
    again = _open(tmp_path)
    assert (again.log_start_offset, again.log_end_offset) == (6, 10)
    assert again.read_entries(6, 7)[0] == LogEntry(6, 1, b"p6")


def test_installed_snapshot_replaces_a_log_that_does_not_match(tmp_path):
    store = _open(tmp_path)
    store.append(_entries(0, 4, epoch=1))
    store.close()
    saved_log = (tmp_path / "raft.log").read_bytes()
    store = _open(tmp_path)
    store.install_snapshot(SnapshotId(20, 5), b"leader-state")
    assert (store.log_start_offset, store.log_end_offset) == (20, 20)
    store.close()
    (tmp_path / "raft.log").write_bytes(saved_log)     # crash before the log was emptied
    again = _open(tmp_path)
    assert (again.log_start_offset, again.log_end_offset) == (20, 20)
    assert again.snapshot_data() == b"leader-state"
    again.append([LogEntry(20, 5, b"next")])
    assert again.entry_epoch(20) == 5


def test_corrupt_snapshot_is_detected(tmp_path):
    store = _open(tmp_path)
    store.append(_entries(0, 3))
    store.compact_to_snapshot(SnapshotId(3, 1), b"snapshot-bytes")
    store.close()
    (path,) = tmp_path.glob("*.snapshot")
    raw = bytearray(path.read_bytes())
    raw[-1] ^= 0xFF
    path.write_bytes(bytes(raw))
    with pytest.raises(RaftStoreError, match="corrupt"):
        _open(tmp_path).snapshot_data()


def test_leftover_tmp_files_are_ignored(tmp_path):
    store = _open(tmp_path)
    store.write_election_state(ElectionState(4, 1, None))
    store.close()
    (tmp_path / "quorum-state.tmp").write_bytes(b"{half")
    again = _open(tmp_path)
    assert again.election_state == ElectionState(4, 1, None)
    assert not (tmp_path / "quorum-state.tmp").exists()


def test_peer_directory_ids_round_trip(tmp_path):
    store = _open(tmp_path)
    assert store.read_peer_directory_ids() == {}
    store.write_peer_directory_ids({2: "a" * 32, 3: "b" * 32})
    assert _open(tmp_path).read_peer_directory_ids() == {2: "a" * 32, 3: "b" * 32}
    assert os.path.exists(tmp_path / "peers.json")
