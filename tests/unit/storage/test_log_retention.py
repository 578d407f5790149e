"""Retention by time and by size: which segments go, and what moves log_start_offset."""

from __future__ import annotations

import pytest
from storage_testlib import NOW_MS, append, append_many, make_batch, open_log, read_all, segment_files

from cluster.core.errors import OffsetOutOfRangeError

HOUR_MS = 3_600_000


def aged_log(path, **config):
    """Five segments of two batches each, stamped 5, 4, 3, 2 and 1 hours ago, all flushed."""
    log = open_log(path, segment_bytes=400, **config)
    for age in (5, 4, 3, 2, 1):
        for _ in range(2):
            append(log, make_batch(value_bytes=100, timestamp_ms=NOW_MS - age * HOUR_MS))
    assert log.segment_count == 5 and log.segment_base_offsets == [0, 2, 4, 6, 8]
    log.flush()
    return log


def test_retention_by_time(tmp_path) -> None:
    path = tmp_path / "t-0"
    log = aged_log(path, retention_ms=int(2.5 * HOUR_MS))
    assert log.delete_old_segments(NOW_MS) == 3
    assert (log.log_start_offset, log.segment_base_offsets) == (6, [6, 8])
    assert segment_files(path) == ["00000000000000000006.log", "00000000000000000008.log"]
    assert (path / "log-start-offset-checkpoint").read_text() == "0\n1\nt-0 6\n"
    with pytest.raises(OffsetOutOfRangeError):
        log.read(5, 100, 10)
    assert log.delete_old_segments(NOW_MS) == 0
    # Never the active segment, however old.
    assert log.delete_old_segments(NOW_MS + 100 * HOUR_MS) == 1
    assert log.segment_base_offsets == [8] and log.log_start_offset == 8
    log.close()
    reopened = open_log(path, segment_bytes=400)
    assert (reopened.log_start_offset, reopened.log_end_offset) == (8, 10)
    reopened.close()


def test_retention_by_size(tmp_path) -> None:
    log = aged_log(tmp_path / "t-0", retention_ms=-1)
    segment_size = log.size_in_bytes // 5
    assert log.delete_old_segments(NOW_MS + 100 * HOUR_MS) == 0  # retention.ms=-1: time never expires
    log.close()
    # As Kafka: a segment goes only if what remains is still at least retention.bytes.
    log = aged_log(tmp_path / "t-1", retention_ms=-1, retention_bytes=2 * segment_size + 10)
    assert log.delete_old_segments(NOW_MS) == 2
    assert log.segment_base_offsets == [4, 6, 8]
    log.close()
    log = aged_log(tmp_path / "t-2", retention_ms=-1, retention_bytes=2 * segment_size)
    assert log.delete_old_segments(NOW_MS) == 3
    assert log.segment_base_offsets == [6, 8] and log.size_in_bytes == 2 * segment_size
    log.close()


def test_retention_only_deletes_durable_data_below_the_high_watermark(tmp_path) -> None:
    log = open_log(tmp_path / "t-0", segment_bytes=400, retention_ms=1)
    append_many(log, 10, value_bytes=100, timestamp_ms=1)
    assert log.recovery_point == 0
    assert log.delete_old_segments(NOW_MS) == 0  # nothing fsynced yet
    log.flush()
    assert log.delete_old_segments(NOW_MS, high_watermark=5) == 2  # segments [0,2) and [2,4)
    assert log.log_start_offset == 4
    assert log.delete_old_segments(NOW_MS) == 2
    log.close()


def test_epoch_cache_follows_log_start(tmp_path) -> None:
    log = open_log(tmp_path / "t-0", segment_bytes=400, retention_ms=HOUR_MS)
    append_many(log, 3, value_bytes=100, epoch=1, timestamp_ms=NOW_MS - 10 * HOUR_MS)
    append_many(log, 3, value_bytes=100, epoch=2, timestamp_ms=NOW_MS - 10 * HOUR_MS)
    append_many(log, 2, value_bytes=100, epoch=3, timestamp_ms=NOW_MS)
    log.flush()
    assert log.epoch_entries == [(1, 0), (2, 3), (3, 6)]
    log.delete_old_segments(NOW_MS)
    assert log.log_start_offset == 6
    assert log.epoch_entries == [(3, 6)]
    assert read_all(log)[:1] != b""
    log.close()
