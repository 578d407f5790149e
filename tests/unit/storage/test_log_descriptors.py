"""Descriptor budget: an idle replica holds about one descriptor, and index entries written only
at flush time are never lost nor trusted before they are on disk."""

from __future__ import annotations

import logging
import os
import shutil

import pytest
from storage_testlib import NOW_MS, append_many, open_log, read_all

from cluster.storage import LogConfig, PartitionLog
from cluster.storage.fs import FileSystem
from cluster.storage.partition_log import _MAX_OPEN_ROLLED_SEGMENTS, RECOVERY_POINT_FILE

CONFIG = {"segment_bytes": 1_000, "index_interval_bytes": 100}


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def flush_with_ticket(log: PartitionLog, now_ms: int = NOW_MS) -> None:
    ticket = log.prepare_flush(now_ms=now_ms)
    if ticket is not None:
        ticket.run()
        log.complete_flush(ticket)


def index_files(path) -> dict[str, bytes]:
    return {name: (path / name).read_bytes() for name in sorted(os.listdir(path)) if name.endswith(".index")}


def test_idle_logs_hold_about_one_descriptor_each(tmp_path) -> None:
    count = 60
    before = open_fds()
    logs = []
    for i in range(count):
        log = open_log(tmp_path / f"t-{i}", **CONFIG)
        append_many(log, 30, records=2, value_bytes=60)  # several rolled segments, index entries
        flush_with_ticket(log, NOW_MS + 10_000)
        append_many(log, 2, records=2, value_bytes=60)
        flush_with_ticket(log, NOW_MS + 20_000)
        logs.append(log)
    assert all(log.segment_count >= 3 for log in logs)
    per_log = (open_fds() - before) / count
    assert per_log <= 1.2, per_log
    for log in logs:
        log.close()
    assert open_fds() <= before


def test_reads_of_rolled_segments_keep_a_bounded_number_open(tmp_path) -> None:
    log = open_log(tmp_path / "t-0", **CONFIG)
    stored = append_many(log, 40, records=2, value_bytes=60)
    log.flush()
    before = open_fds()
    assert log.segment_count > _MAX_OPEN_ROLLED_SEGMENTS + 2
    assert read_all(log) == b"".join(stored)  # opens every rolled segment in turn
    assert open_fds() - before <= _MAX_OPEN_ROLLED_SEGMENTS
    assert read_all(log) == b"".join(stored)  # evicted descriptors reopen on demand
    log.close()


def test_reopened_log_holds_only_the_active_segment_open(tmp_path) -> None:
    path = tmp_path / "t-0"
    log = open_log(path, **CONFIG)
    append_many(log, 40, records=2, value_bytes=60)
    log.abandon()  # crash: recovery scans segments from the recovery point on
    before = open_fds()
    reopened = open_log(path, **CONFIG)
    assert reopened.segment_count > 3
    assert open_fds() - before == 1
    reopened.close()


def test_crash_with_unflushed_index_entries_recovers_correct_indexes(tmp_path, caplog) -> None:
    path = tmp_path / "t-0"
    log = open_log(path, **CONFIG)
    stored = append_many(log, 20, records=2, value_bytes=60)
    flush_with_ticket(log, NOW_MS + 10_000)  # rolled segments' index entries reach their files
    # index entries only in memory (and timestamps going on from NOW_MS + 40)
    stored += append_many(log, 20, records=2, value_bytes=60, timestamp_ms=NOW_MS + 40)
    log.abandon()
    reopened = open_log(path, **CONFIG)
    assert reopened.log_end_offset == 80
    with caplog.at_level(logging.WARNING, logger="cluster.storage"):
        assert read_all(reopened) == b"".join(stored)  # loads every segment's indexes
        for offset in range(0, 80, 7):  # every fetch starts at the batch holding the offset
            assert reopened.read(offset, 1, 80) == stored[offset // 2]
        for offset in range(0, 80, 5):
            assert reopened.offset_for_timestamp(NOW_MS + offset)[0] == offset
    assert "rebuilding indexes" not in caplog.text
    reopened.close()

    # A log rebuilt from the data files alone has the same offset indexes.
    rebuilt_path = tmp_path / "rebuilt"
    shutil.copytree(path, rebuilt_path)
    for name in os.listdir(rebuilt_path):
        if name.endswith((".index", ".timeindex", "clean-shutdown", RECOVERY_POINT_FILE)):
            os.unlink(rebuilt_path / name)
    open_log(rebuilt_path, **CONFIG).close()
    assert index_files(path) == index_files(rebuilt_path)
    assert all(data for data in index_files(path).values())


class FailingIndexWrites(FileSystem):
    """Fails positional writes (index entries) while ``fail`` is set."""

    def __init__(self) -> None:
        self.fail = False

    def pwrite(self, fd: int, data, position: int) -> None:
        if self.fail:
            raise OSError(5, "Input/output error")
        super().pwrite(fd, data, position)


def test_failed_index_write_is_retried_and_never_trusted(tmp_path) -> None:
    fs = FailingIndexWrites()
    path = tmp_path / "t-0"
    log = PartitionLog.open(str(path), LogConfig(**CONFIG), NOW_MS, fs=fs)
    append_many(log, 20, records=2, value_bytes=60)
    ticket = log.prepare_flush(now_ms=NOW_MS + 10_000)
    fs.fail = True
    with pytest.raises(OSError):
        ticket.run()
    log.complete_flush(ticket)
    assert log.recovery_point == 0
    assert (path / RECOVERY_POINT_FILE).read_text() == "0\n1\nt-0 0\n"
    fs.fail = False
    flush_with_ticket(log, NOW_MS + 100_000)  # the next ticket writes the same entries
    assert log.recovery_point == 40
    rolled = log.segment_base_offsets[:-1]
    assert f"t-0 {log.segment_base_offsets[-1]}" in (path / RECOVERY_POINT_FILE).read_text()
    log.abandon()
    reopened = PartitionLog.open(str(path), LogConfig(**CONFIG), NOW_MS, fs=fs)
    assert reopened.segment_base_offsets[:-1] == rolled
    reopened.close()
    rebuilt_path = tmp_path / "rebuilt"
    shutil.copytree(path, rebuilt_path)
    for name in os.listdir(rebuilt_path):
        if name.endswith((".index", ".timeindex", "clean-shutdown", RECOVERY_POINT_FILE)):
            os.unlink(rebuilt_path / name)
    open_log(rebuilt_path, **CONFIG).close()
    assert index_files(path) == index_files(rebuilt_path)


def test_ticket_voided_by_truncation_writes_no_stale_entries(tmp_path) -> None:
    path = tmp_path / "t-0"
    log = open_log(path, **CONFIG)
    append_many(log, 20, records=2, value_bytes=60)
    log.maybe_roll(NOW_MS + 10**9)  # the segment with most entries is now a rolled one
    ticket = log.prepare_flush()
    log.truncate_to(5)  # back into the first segment, which becomes the active one again
    append_many(log, 1, records=2, value_bytes=20)  # fewer, other index entries than captured
    ticket.run()
    log.complete_flush(ticket)
    log.flush()
    log.close()
    rebuilt_path = tmp_path / "rebuilt"
    shutil.copytree(path, rebuilt_path)
    for name in os.listdir(rebuilt_path):
        if name.endswith((".index", ".timeindex", "clean-shutdown", RECOVERY_POINT_FILE)):
            os.unlink(rebuilt_path / name)
    open_log(rebuilt_path, **CONFIG).close()
    assert index_files(path) == index_files(rebuilt_path)
