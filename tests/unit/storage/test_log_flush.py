"""Group commit: flush tickets, the recovery point, and their safety under concurrent change."""

from __future__ import annotations

import os
import threading

import pytest
from storage_testlib import NOW_MS, append, append_many, make_batch, open_log, read_all

from cluster.storage import LogConfig, PartitionLog
from cluster.storage.fs import FileSystem


class SpyFS(FileSystem):
    """The real file system, recording syncs and optionally failing them."""

    def __init__(self) -> None:
        self.synced: list[int] = []
        self.dir_syncs = 0
        self.fail_sync = False

    def fdatasync(self, fd: int) -> None:
        if self.fail_sync:
            raise OSError(5, "Input/output error")
        self.synced.append(fd)
        super().fdatasync(fd)

    def fsync(self, fd: int) -> None:
        if self.fail_sync:
            raise OSError(5, "Input/output error")
        self.dir_syncs += 1
        super().fsync(fd)


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_ticket_advances_the_recovery_point(tmp_path) -> None:
    log = open_log(tmp_path / "t-0")
    assert log.prepare_flush() is None
    append_many(log, 3, records=2)
    assert log.recovery_point == 0
    ticket = log.prepare_flush()
    assert ticket is not None and ticket.target_offset == 6
    append_many(log, 1)  # appends after prepare are not covered
    ticket.run()
    log.complete_flush(ticket)
    assert log.recovery_point == 6
    ticket = log.prepare_flush()
    ticket.run()
    log.complete_flush(ticket)
    assert log.recovery_point == log.log_end_offset == 7
    assert log.prepare_flush() is None
    log.close()


def test_ticket_descriptors_are_released(tmp_path) -> None:
    log = open_log(tmp_path / "t-0", segment_bytes=300)
    append_many(log, 10)
    before = open_fds()
    ticket = log.prepare_flush()
    assert open_fds() > before
    ticket.run()
    log.complete_flush(ticket)
    assert open_fds() <= before
    unrun = (append_many(log, 1), log.prepare_flush())[1]
    unrun.close()
    log.complete_flush(unrun)  # a ticket that never ran changes nothing
    assert log.recovery_point == 10
    log.close()


def test_new_segments_sync_the_directory_and_rolled_indexes(tmp_path) -> None:
    fs = SpyFS()
    log = PartitionLog.open(
        str(tmp_path / "t-0"), LogConfig(segment_bytes=400, index_interval_bytes=50), NOW_MS, fs=fs
    )
    log.flush()
    append_many(log, 3, value_bytes=100)  # the epoch checkpoint written here syncs the directory too
    dir_syncs = fs.dir_syncs
    assert log.segment_count >= 2
    synced_before = len(fs.synced)
    log.flush()
    assert fs.dir_syncs == dir_syncs + 1
    # the data of both segments and the index files of the rolled one
    assert len(fs.synced) - synced_before >= 3
    dir_syncs = fs.dir_syncs
    append(log, make_batch(value_bytes=10))
    log.flush()
    assert fs.dir_syncs == dir_syncs  # nothing created: no directory sync
    log.close()


def test_failed_sync_leaves_the_recovery_point_alone(tmp_path) -> None:
    fs = SpyFS()
    log = PartitionLog.open(str(tmp_path / "t-0"), LogConfig(), NOW_MS, fs=fs)
    append_many(log, 4)
    ticket = log.prepare_flush()
    fs.fail_sync = True
    with pytest.raises(OSError):
        ticket.run()
    log.complete_flush(ticket)
    assert log.recovery_point == 0
    fs.fail_sync = False
    log.flush()  # a later ticket retries
    assert log.recovery_point == 4
    log.close()


def test_truncation_voids_tickets_in_flight(tmp_path) -> None:
    log = open_log(tmp_path / "t-0")
    append_many(log, 10)
    ticket = log.prepare_flush()
    log.truncate_to(4)
    append_many(log, 10)  # new data at the old offsets, not covered by the ticket
    ticket.run()
    log.complete_flush(ticket)
    assert log.recovery_point <= 4
    log.flush()
    assert log.recovery_point == 14
    log.close()


def test_ticket_survives_retention_deleting_its_segments(tmp_path) -> None:
    log = open_log(tmp_path / "t-0", segment_bytes=400, retention_bytes=0)
    append_many(log, 10, value_bytes=100)
    log.flush()
    append_many(log, 3, value_bytes=100)
    ticket = log.prepare_flush()
    assert log.delete_old_segments(NOW_MS) > 0
    ticket.run()  # its duplicated descriptors outlive the deleted files
    log.complete_flush(ticket)
    assert log.recovery_point == log.log_end_offset == 13
    log.close()


def test_recovery_point_file_is_persisted_lazily_and_never_ahead(tmp_path) -> None:
    path = tmp_path / "t-0"
    log = open_log(path, segment_bytes=400, recovery_point_checkpoint_interval_ms=1_000)
    checkpoint = path / "recovery-point-offset-checkpoint"
    assert checkpoint.read_text() == "0\n1\nt-0 0\n"
    append_many(log, 10, value_bytes=100)
    ticket = log.prepare_flush(now_ms=NOW_MS + 10)  # within the interval of open's write
    ticket.run()
    log.complete_flush(ticket)
    assert checkpoint.read_text() == "0\n1\nt-0 0\n"
    append_many(log, 1, value_bytes=100)
    ticket = log.prepare_flush(now_ms=NOW_MS + 5_000)
    ticket.run()
    log.complete_flush(ticket)
    # Stops at the active segment, whose index files no ticket syncs.
    active_base = log.segment_base_offsets[-1]
    assert 0 < active_base < log.recovery_point
    assert checkpoint.read_text() == f"0\n1\nt-0 {active_base}\n"
    log.truncate_to(2)  # below the persisted value: rewritten at once
    assert log.log_end_offset == 2
    assert checkpoint.read_text() == "0\n1\nt-0 2\n"
    log.close()


def test_flush_in_a_thread_while_appending_and_rolling(tmp_path) -> None:
    path = tmp_path / "t-0"
    log = open_log(path, segment_bytes=2_000, index_interval_bytes=200, retention_bytes=6_000)
    stored = []
    worker = None
    ticket = None
    recovery_points = []
    for i in range(400):
        batch = make_batch(records=2, value_bytes=50, timestamp_ms=NOW_MS + i)
        append(log, batch)
        stored.append(bytes(batch))
        if worker is not None and i % 100 == 99:
            worker.join()  # make sure several tickets complete however slow the disk is
        if i % 7 == 0:
            log.delete_old_segments(NOW_MS)  # closes and unlinks segments, perhaps under a running ticket
        if worker is not None and not worker.is_alive():
            worker.join()
            log.complete_flush(ticket)
            recovery_points.append(log.recovery_point)
            worker = None
        if worker is None:
            ticket = log.prepare_flush(now_ms=NOW_MS + i)
            if ticket is not None:
                worker = threading.Thread(target=ticket.run)
                worker.start()
    if worker is not None:
        worker.join()
        log.complete_flush(ticket)
    log.flush()
    log.delete_old_segments(NOW_MS)
    assert recovery_points == sorted(recovery_points) and len(recovery_points) > 3
    assert log.recovery_point == log.log_end_offset == 800
    assert log.log_start_offset > 0 and log.size_in_bytes <= 6_000 + 2_000
    start_batch = log.log_start_offset // 2
    assert read_all(log) == b"".join(stored[start_batch:])
    log.abandon()
    reopened = open_log(path, segment_bytes=2_000, index_interval_bytes=200)
    assert reopened.log_end_offset == 800 and read_all(reopened) == b"".join(stored[start_batch:])
    reopened.close()
