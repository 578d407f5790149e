"""SimDisk: writes are visible at once, durable only after fsync; a crash keeps a prefix of unsynced writes."""

from __future__ import annotations

import random

from cluster.raft import ElectionState, LogEntry, SnapshotId
from cluster.testing.sim_disk import SimDisk


def entries(start: int, count: int, epoch: int = 1) -> list[LogEntry]:
    return [LogEntry(start + i, epoch, b"e%d" % (start + i)) for i in range(count)]


class KeepNone(random.Random):
    def randint(self, a, b):
        return a


class KeepAll(random.Random):
    def randint(self, a, b):
        return b


def test_unsynced_writes_are_visible_but_lost_on_crash():
    disk = SimDisk()
    disk.append(entries(0, 2))
    disk.fsync()
    disk.append(entries(2, 3))
    disk.write_election_state(ElectionState(4, 2, None))
    assert disk.log.log_end_offset == 5 and disk.election_state.epoch == 4
    lost = disk.crash(KeepNone())
    assert lost == 2 and disk.log.log_end_offset == 2 and disk.election_state == ElectionState()


def test_synced_writes_survive_and_a_crash_may_keep_an_ordered_prefix():
    disk = SimDisk()
    disk.write_election_state(ElectionState(1, 1, None))
    disk.fsync()
    disk.append(entries(0, 3))
    disk.truncate_to(1)
    disk.append(entries(1, 1, epoch=2))
    disk.crash(KeepAll())
    assert disk.election_state == ElectionState(1, 1, None)
    assert [e.epoch for e in disk.log.read_entries(0, 2)] == [1, 2]


def test_every_crash_prefix_is_a_state_the_writes_passed_through():
    for seed in range(30):
        disk = SimDisk()
        disk.append(entries(0, 4))
        disk.truncate_to(2)
        disk.append(entries(2, 1, epoch=3))
        disk.crash(random.Random(seed))
        end = disk.log.log_end_offset
        assert end in (0, 4, 2, 3)
        if end == 3:
            assert disk.log.entry_epoch(2) == 3


def test_snapshot_compaction_is_durable_after_fsync():
    disk = SimDisk()
    disk.append(entries(0, 4))
    disk.compact_to_snapshot(SnapshotId(3, 1), b"snap")
    disk.fsync()
    disk.crash(random.Random(0))
    assert disk.log.log_start_offset == 3 and disk.log.latest_snapshot_id() == SnapshotId(3, 1)
    assert disk.log.snapshot_data() == b"snap"
