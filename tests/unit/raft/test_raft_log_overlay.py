"""The core's log overlay (durable view + unstable tail + pending snapshot) and MemoryRaftLog."""

from __future__ import annotations

import pytest

from cluster.core.errors import InvariantViolation
from cluster.raft._overlay import RaftLog
from cluster.raft.log import LogEntry, MemoryRaftLog, SnapshotId


def entries(*epochs: int, start: int = 0) -> list[LogEntry]:
    return [LogEntry(start + i, epoch, b"e%d" % (start + i)) for i, epoch in enumerate(epochs)]


def durable(*epochs: int) -> MemoryRaftLog:
    log = MemoryRaftLog()
    log.append(entries(*epochs))
    return log


def test_reads_span_durable_and_unstable_entries():
    view = durable(1, 1)
    log = RaftLog(view)
    log.append(LogEntry(2, 2, b"x"))
    assert log.log_end_offset == 3 and log.durable_end_offset == 2 and log.last_epoch == 2
    assert [e.offset for e in log.entries(1, 3)] == [1, 2]
    changes = log.pending_changes()
    assert changes.truncate_to is None and [e.offset for e in changes.append_entries] == [2]


def test_truncation_below_the_durable_end_is_handed_to_the_shell_then_cleared_by_advance():
    view = durable(1, 1, 1)
    log = RaftLog(view)
    log.truncate_to(1)
    log.append(LogEntry(1, 2, b"y"))
    changes = log.pending_changes()
    assert changes.truncate_to == 1 and [e.epoch for e in changes.append_entries] == [2]
    with pytest.raises(InvariantViolation):
        log.on_advance(changes, None)            # the shell did not apply it yet
    view.truncate_to(1)
    view.append(changes.append_entries)
    log.on_advance(changes, None)
    assert not log.has_pending_changes() and log.entry_epoch(1) == 2


@pytest.mark.parametrize("epoch, expected", [(0, (0, 0)), (1, (1, 2)), (2, (1, 2)), (3, (3, 5)), (9, (4, 6))])
def test_end_offset_for_epoch(epoch, expected):
    log = RaftLog(durable(1, 1, 3, 3, 3, 4))
    assert log.end_offset_for_epoch(epoch) == expected


def test_end_offset_for_epoch_with_a_snapshot_at_the_start():
    view = durable(1, 1, 2, 2, 3)
    view.compact_to_snapshot(SnapshotId(3, 2), b"snap")
    log = RaftLog(view)
    assert log.log_start_offset == 3 and log.epoch_before(3) == 2
    assert log.end_offset_for_epoch(2) == (2, 4)
    assert log.end_offset_for_epoch(1) is None     # compacted away: the leader must send the snapshot


def test_pending_snapshot_install_replaces_the_log():
    log = RaftLog(durable(1, 1))
    log.install_snapshot(SnapshotId(10, 3), b"data")
    assert (log.log_start_offset, log.log_end_offset, log.last_epoch) == (10, 10, 3)
    assert log.read_snapshot_chunk(SnapshotId(10, 3), 1, 2) == b"at"
    log.append(LogEntry(10, 4, b"z"))
    changes = log.pending_changes()
    assert changes.install_snapshot.snapshot_id == SnapshotId(10, 3) and changes.truncate_to is None


def test_append_must_continue_the_log():
    log = RaftLog(durable(2))
    with pytest.raises(InvariantViolation):
        log.append(LogEntry(5, 2, b"gap"))
    with pytest.raises(InvariantViolation):
        log.append(LogEntry(1, 1, b"older epoch"))


def test_memory_log_rejects_bad_writes_and_checks_snapshot_epochs():
    log = durable(1, 2)
    with pytest.raises(InvariantViolation):
        log.append([LogEntry(2, 1, b"older")])
    with pytest.raises(InvariantViolation):
        log.compact_to_snapshot(SnapshotId(2, 1), b"wrong epoch")
    with pytest.raises(InvariantViolation):
        log.truncate_to(3)
    copy = log.copy()
    log.truncate_to(0)
    assert copy.log_end_offset == 2 and log.log_end_offset == 0


def test_view_whose_start_does_not_match_its_snapshot_is_refused():
    view = durable(1, 1)
    view._start = 1          # noqa: SLF001 - simulate a shell that compacted without a snapshot
    with pytest.raises(InvariantViolation):
        RaftLog(view)
