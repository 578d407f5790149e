"""PartitionLog: append, read, rolling, timestamps, epochs, truncation, follower append, lifecycle."""

from __future__ import annotations

import os

import pytest
from storage_testlib import (
    NOW_MS,
    append,
    append_many,
    base_offsets,
    make_batch,
    open_log,
    read_all,
    segment_files,
)

from cluster.core.errors import ErrorCode, InvariantViolation, KafkaError, OffsetOutOfRangeError
from cluster.wire.records import (
    LOG_APPEND_TIME,
    build_batch,
    iter_batch_headers,
    parse_batch_header,
    validate_batch,
)


def test_new_log_layout(tmp_path) -> None:
    path = tmp_path / "topic-0"
    log = open_log(path)
    assert (log.log_start_offset, log.log_end_offset, log.recovery_point) == (0, 0, 0)
    assert log.latest_epoch is None and log.segment_count == 1 and log.size_in_bytes == 0
    names = set(os.listdir(path))
    assert {
        "00000000000000000000.log",
        "00000000000000000000.index",
        "00000000000000000000.timeindex",
    } <= names
    assert (path / "leader-epoch-checkpoint").read_text() == "0\n0\n"
    assert log.read(0, 1000, 100) == b""
    assert log.offset_for_timestamp(0) is None and log.max_timestamp_and_offset() is None
    log.close()


def test_append_assigns_contiguous_offsets_and_stamps_in_place(tmp_path) -> None:
    log = open_log(tmp_path / "t-0")
    first = make_batch(records=3)
    assert append(log, first, epoch=7) == (0, 2)
    second = make_batch(records=2)
    assert append(log, second, epoch=7) == (3, 4)
    assert log.log_end_offset == 5
    header = parse_batch_header(second)
    assert (header.base_offset, header.partition_leader_epoch) == (3, 7)
    validate_batch(second)  # stamping left the CRC valid
    assert read_all(log) == bytes(first) + bytes(second)
    assert log.size_in_bytes == len(first) + len(second)
    log.close()


def test_epoch_cache_follows_appends(tmp_path) -> None:
    path = tmp_path / "t-0"
    log = open_log(path)
    append_many(log, 2, epoch=1)
    append_many(log, 3, epoch=1)
    append_many(log, 2, epoch=4)
    assert log.epoch_entries == [(1, 0), (4, 5)]
    assert log.latest_epoch == 4
    assert (path / "leader-epoch-checkpoint").read_text() == "0\n2\n1 0\n4 5\n"
    assert log.end_offset_for_epoch(1) == (1, 5)
    assert log.end_offset_for_epoch(2) == (1, 5)
    assert log.end_offset_for_epoch(4) == (4, 7)
    assert log.end_offset_for_epoch(0) == (0, 0)
    assert log.end_offset_for_epoch(5) == (-1, -1)
    with pytest.raises(InvariantViolation):
        append(log, make_batch(), epoch=3)
    log.assign_epoch_start(6)
    assert log.end_offset_for_epoch(4) == (4, 7)
    assert log.end_offset_for_epoch(6) == (6, 7)
    log.close()


def test_append_rejects_oversized_batch(tmp_path) -> None:
    log = open_log(tmp_path / "t-0", max_message_bytes=200)
    with pytest.raises(KafkaError) as err:
        append(log, make_batch(value_bytes=300))
    assert err.value.error_code == ErrorCode.MESSAGE_TOO_LARGE
    assert log.log_end_offset == 0 and log.size_in_bytes == 0
    log.close()


def test_log_append_time(tmp_path) -> None:
    log = open_log(tmp_path / "t-0", message_timestamp_type="LogAppendTime")
    batch = make_batch(records=2, timestamp_ms=5)
    log.append(batch, validate_batch(batch), 0, NOW_MS + 42)
    header = validate_batch(read_all(log))
    assert header.timestamp_type == LOG_APPEND_TIME and header.max_timestamp == NOW_MS + 42
    assert log.offset_for_timestamp(NOW_MS) == (0, NOW_MS + 42, 0)
    log.close()


# -- read ---------------------------------------------------------------------------------------------
@pytest.fixture
def ten_batches(tmp_path):
    """Ten 3-record batches (offsets 0..29) over several small segments, densely indexed."""
    log = open_log(tmp_path / "t-0", segment_bytes=1_000, index_interval_bytes=150)
    stored = append_many(log, 10, records=3, value_bytes=60)
    assert log.segment_count > 2
    yield log, stored
    log.close()


def test_read_returns_the_batch_containing_the_offset(ten_batches) -> None:
    log, stored = ten_batches
    for offset in range(30):
        data = log.read(offset, 1, 30)  # min_one_batch: exactly the containing batch
        assert data == stored[offset // 3], offset


def test_read_everything_spans_segments(ten_batches) -> None:
    log, stored = ten_batches
    assert log.read(0, 1 << 30, 30) == b"".join(stored)
    assert log.read(16, 1 << 30, 30) == b"".join(stored[5:])


def test_read_respects_max_bytes_in_whole_batches(ten_batches) -> None:
    log, stored = ten_batches
    size = len(stored[0])
    for batches in range(1, 10):
        data = log.read(0, batches * size + size // 2, 30)
        assert base_offsets(data) == [3 * i for i in range(batches)]
    assert log.read(0, size - 1, 30, min_one_batch=True) == stored[0]
    assert log.read(0, size - 1, 30, min_one_batch=False) == b""
    assert log.read(0, 0, 30, min_one_batch=False) == b""


def test_read_respects_max_offset(ten_batches) -> None:
    log, stored = ten_batches
    assert log.read(0, 1 << 30, 9) == b"".join(stored[:3])
    assert log.read(0, 1 << 30, 10) == b"".join(stored[:3])  # batch 9..11 not wholly visible
    assert log.read(3, 1 << 30, 12) == b"".join(stored[1:4])
    assert log.read(12, 1 << 30, 12) == b""
    assert log.read(13, 1 << 30, 12) == b""
    assert log.read(30, 1 << 30, 30) == b""  # at the log end: nothing, no error
    assert log.read(0, 1 << 30, 10**9) == b"".join(stored)


def test_read_out_of_range(ten_batches) -> None:
    log, _ = ten_batches
    with pytest.raises(OffsetOutOfRangeError):
        log.read(31, 100, 100)
    with pytest.raises(OffsetOutOfRangeError):
        log.read(-1, 100, 100)


def test_read_with_sparse_and_dense_indexes_agree(tmp_path) -> None:
    results = []
    for interval in (0, 100, 10**9):
        log = open_log(tmp_path / f"t-{interval}", index_interval_bytes=interval)
        stored = append_many(log, 50, records=2, value_bytes=30)
        got = [log.read(offset, 3 * len(stored[0]) + 5, 90 + offset % 7) for offset in range(100)]
        results.append(got)
        log.close()
    assert results[0] == results[1] == results[2]
    assert base_offsets(results[0][33]) == [32, 34, 36]


def test_iter_batch_headers(ten_batches) -> None:
    log, _ = ten_batches
    assert [h.base_offset for h in log.iter_batch_headers()] == list(range(0, 30, 3))
    assert [h.base_offset for h in log.iter_batch_headers(10)] == list(range(9, 30, 3))
    assert list(log.iter_batch_headers(30)) == []


# -- rolling ------------------------------------------------------------------------------------------
def test_roll_by_size(tmp_path) -> None:
    path = tmp_path / "t-0"
    log = open_log(path, segment_bytes=1_000)
    stored = append_many(log, 20, value_bytes=100)
    per_segment = 1_000 // len(stored[0])
    assert log.segment_count == -(-20 // per_segment)
    assert log.segment_base_offsets == list(range(0, 20, per_segment))
    assert segment_files(path) == [f"{b:020d}.log" for b in log.segment_base_offsets]
    for name in segment_files(path):
        assert os.path.getsize(path / name) <= 1_000
    # A batch larger than a segment still goes in, alone.
    big = make_batch(value_bytes=3_000)
    append(log, big)
    assert os.path.getsize(path / f"{log.segment_base_offsets[-1]:020d}.log") == len(big)
    assert read_all(log) == b"".join(stored) + bytes(big)
    log.close()


def test_roll_by_time(tmp_path) -> None:
    log = open_log(tmp_path / "t-0", segment_ms=1_000)
    assert not log.maybe_roll(NOW_MS + 10_000)  # an empty segment never rolls
    append(log, make_batch(), now_ms=NOW_MS)
    append(log, make_batch(), now_ms=NOW_MS + 999)
    assert log.segment_count == 1
    append(log, make_batch(), now_ms=NOW_MS + 1_500)
    assert log.segment_count == 2 and log.segment_base_offsets == [0, 2]
    assert not log.maybe_roll(NOW_MS + 2_000)
    assert log.maybe_roll(NOW_MS + 2_501)
    assert log.segment_base_offsets == [0, 2, 3]
    assert not log.maybe_roll(NOW_MS + 100_000)  # the new active segment is empty
    append(log, make_batch(), now_ms=NOW_MS + 100_000)
    assert log.segment_base_offsets == [0, 2, 3]
    log.close()


def test_roll_when_index_is_full(tmp_path) -> None:
    log = open_log(tmp_path / "t-0", index_interval_bytes=0, segment_index_bytes=16)
    append_many(log, 7)
    # Each segment holds its unindexed first batch plus two indexed ones.
    assert log.segment_base_offsets == [0, 3, 6]
    log.close()


# -- timestamps ---------------------------------------------------------------------------------------
def test_offset_for_timestamp(tmp_path) -> None:
    path = tmp_path / "t-0"
    log = open_log(path, segment_bytes=400, index_interval_bytes=100)
    timestamps = [100, 200, 150, 300, 250, 400, 400, 500, 50, 600]
    for i, ts in enumerate(timestamps):
        append(
            log, bytearray(build_batch([(None, b"x" * 40, [], ts), (None, b"y", [], ts + 5)])), epoch=i // 4
        )
    assert log.segment_count > 2

    def expected(target):
        for i, ts in enumerate(timestamps):
            for j, t in enumerate((ts, ts + 5)):
                if t >= target:
                    return 2 * i + j, t, i // 4
        return None

    for target in [
        0,
        50,
        100,
        101,
        104,
        105,
        106,
        151,
        155,
        156,
        199,
        200,
        301,
        399,
        400,
        404,
        405,
        406,
        601,
        605,
        606,
    ]:
        assert log.offset_for_timestamp(target) == expected(target), target
    assert log.offset_for_timestamp(400, max_offset=10) is None
    assert log.offset_for_timestamp(400, max_offset=11) == (10, 400, 1)
    assert log.max_timestamp_and_offset() == (605, 19, 2)
    log.close()
    log = open_log(path, segment_bytes=400, index_interval_bytes=100)  # lazily loaded indexes
    for target in [0, 151, 399, 406, 606]:
        assert log.offset_for_timestamp(target) == expected(target), target
    assert log.max_timestamp_and_offset() == (605, 19, 2)
    log.close()


def test_max_timestamp_inside_a_compressed_batch(tmp_path) -> None:
    log = open_log(tmp_path / "t-0")
    append(log, bytearray(build_batch([(None, b"a", [], t) for t in (10, 20)])), epoch=1)
    append(log, bytearray(build_batch([(None, b"b", [], t) for t in (15, 90, 30)], compression=4)), epoch=2)
    assert log.max_timestamp_and_offset() == (90, 3, 2)
    assert log.offset_for_timestamp(16) == (1, 20, 1)
    assert log.offset_for_timestamp(21) == (3, 90, 2)
    assert log.offset_for_timestamp(11) == (1, 20, 1)
    log.close()


# -- truncation ---------------------------------------------------------------------------------------
def test_truncate_to_across_segments_then_append(tmp_path) -> None:
    path = tmp_path / "t-0"
    log = open_log(path, segment_bytes=500)
    stored = append_many(log, 6, records=2, value_bytes=50, epoch=1)
    stored += append_many(log, 6, records=2, value_bytes=50, epoch=2)
    assert log.segment_count > 3 and log.epoch_entries == [(1, 0), (2, 12)]
    log.truncate_to(9)  # inside the batch 8..9: the whole batch goes
    assert log.log_end_offset == 8
    assert read_all(log) == b"".join(stored[:4])
    assert log.epoch_entries == [(1, 0)]
    assert segment_files(path) == [f"{b:020d}.log" for b in log.segment_base_offsets]
    assert log.recovery_point <= 8
    assert append(log, make_batch(records=2), epoch=3) == (8, 9)
    assert log.epoch_entries == [(1, 0), (3, 8)]
    log.truncate_to(100)  # beyond the end: no-op
    assert log.log_end_offset == 10
    log.close()
    reopened = open_log(path, segment_bytes=500)
    assert reopened.log_end_offset == 10 and reopened.epoch_entries == [(1, 0), (3, 8)]
    assert read_all(reopened)[: len(b"".join(stored[:4]))] == b"".join(stored[:4])
    reopened.close()


def test_truncate_to_segment_boundary_keeps_an_empty_segment(tmp_path) -> None:
    log = open_log(tmp_path / "t-0", segment_bytes=400)
    append_many(log, 10, value_bytes=100)
    bases = log.segment_base_offsets
    log.truncate_to(bases[2])
    assert log.segment_base_offsets == bases[:3]
    assert log.log_end_offset == bases[2]
    assert append(log, make_batch()) == (bases[2], bases[2])
    assert log.segment_base_offsets == bases[:3]
    log.close()


def test_truncate_below_log_start_restarts_the_log(tmp_path) -> None:
    path = tmp_path / "t-0"
    log = open_log(path, segment_bytes=400, retention_ms=1)
    append_many(log, 10, value_bytes=100, timestamp_ms=1)
    log.flush()
    assert log.delete_old_segments(NOW_MS) > 0
    start = log.log_start_offset
    log.truncate_to(start - 1)
    assert (log.log_start_offset, log.log_end_offset, log.segment_count) == (start - 1, start - 1, 1)
    assert log.epoch_entries == []
    assert append(log, make_batch(), epoch=5) == (start - 1, start - 1)
    log.close()
    reopened = open_log(path)
    assert (reopened.log_start_offset, reopened.log_end_offset) == (start - 1, start)
    reopened.close()


# -- follower append ----------------------------------------------------------------------------------
def test_append_as_follower_copies_the_leader(tmp_path) -> None:
    leader = open_log(tmp_path / "leader-0", segment_bytes=700)
    append_many(leader, 4, records=2, epoch=3)
    append_many(leader, 4, records=2, epoch=5)
    follower = open_log(tmp_path / "follower-0", segment_bytes=700)
    fetched = leader.read(0, 1 << 20, leader.log_end_offset)
    torn = fetched + fetched[:30]  # a fetch response may end with a partial batch
    assert follower.append_as_follower(torn, NOW_MS) == (0, 15)
    assert read_all(follower) == read_all(leader)
    assert follower.epoch_entries == leader.epoch_entries == [(3, 0), (5, 8)]
    assert follower.append_as_follower(fetched[:30], NOW_MS) is None
    with pytest.raises(KafkaError):
        follower.append_as_follower(fetched, NOW_MS)  # offsets below the log end
    more = make_batch()
    append(leader, more, epoch=5)
    damaged = bytearray(more)
    damaged[-1] ^= 1
    with pytest.raises(KafkaError) as err:
        follower.append_as_follower(damaged, NOW_MS)
    assert err.value.error_code == ErrorCode.CORRUPT_MESSAGE
    assert follower.append_as_follower(more, NOW_MS) == (16, 16)
    leader.close()
    follower.close()


# -- lifecycle ----------------------------------------------------------------------------------------
def test_clean_close_and_reopen(tmp_path) -> None:
    path = tmp_path / "t-0"
    log = open_log(path, segment_bytes=800, index_interval_bytes=100)
    stored = append_many(log, 20, records=2, epoch=2)
    log.close()
    assert (path / "clean-shutdown").exists()
    assert (path / "recovery-point-offset-checkpoint").read_text() == "0\n1\nt-0 40\n"
    reopened = open_log(path, segment_bytes=800, index_interval_bytes=100)
    assert not (path / "clean-shutdown").exists()
    assert (reopened.log_end_offset, reopened.recovery_point, reopened.epoch_entries) == (40, 40, [(2, 0)])
    assert read_all(reopened) == b"".join(stored)
    assert append(reopened, make_batch(), epoch=2) == (40, 40)
    reopened.close()


def test_closed_log_refuses_work_and_delete_removes_everything(tmp_path) -> None:
    path = tmp_path / "t-0"
    log = open_log(path)
    append_many(log, 3)
    log.close()
    log.close()  # idempotent
    with pytest.raises(InvariantViolation):
        log.read(0, 10, 10)
    with pytest.raises(InvariantViolation):
        append(log, make_batch())
    log.delete()
    assert not path.exists()
    other = open_log(tmp_path / "t-1")
    append_many(other, 2)
    other.delete()
    assert not (tmp_path / "t-1").exists()


def test_size_and_segment_count(tmp_path) -> None:
    log = open_log(tmp_path / "t-0", segment_bytes=500)
    stored = append_many(log, 12, value_bytes=60)
    assert log.size_in_bytes == sum(len(b) for b in stored)
    assert log.segment_count == len(log.segment_base_offsets) > 1
    assert [h.base_offset for _, h in iter_batch_headers(read_all(log))] == list(range(12))
    log.close()
