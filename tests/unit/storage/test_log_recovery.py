"""Recovery after kill -9 or power loss: torn and corrupt tails, bad indexes, stray files, checkpoints."""

from __future__ import annotations

import logging
import os
import struct

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

from cluster.storage.segment import LogSegment
from cluster.wire.records import iter_batch_headers

CONFIG = {"segment_bytes": 1_000, "index_interval_bytes": 150}


def crashed_log(path, count: int = 12, flush: bool = False, **config):
    """Appends ``count`` 2-record batches, then drops the log without a clean shutdown."""
    log = open_log(path, **{**CONFIG, **config})
    stored = append_many(log, count, records=2, value_bytes=60, epoch=1)
    if flush:
        log.flush()
        log.checkpoint_recovery_point()
    log.abandon()
    return stored


def last_segment(path) -> str:
    return os.path.join(path, segment_files(path)[-1])


def assert_recovered_prefix(log, stored, batches: int) -> None:
    assert log.log_end_offset == 2 * batches
    assert log.recovery_point == log.log_end_offset
    assert read_all(log) == b"".join(stored[:batches])
    # Appending continues with contiguous offsets.
    assert append(log, make_batch(records=2), epoch=2) == (2 * batches, 2 * batches + 1)
    assert base_offsets(read_all(log)) == list(range(0, 2 * batches + 2, 2))


def test_crash_without_damage_loses_nothing(tmp_path) -> None:
    path = tmp_path / "t-0"
    stored = crashed_log(path)
    log = open_log(path, **CONFIG)
    assert_recovered_prefix(log, stored, 12)
    log.close()


@pytest.mark.parametrize("cut", [1, 30, 61, 62])
def test_torn_last_batch(tmp_path, cut: int) -> None:
    path = tmp_path / "t-0"
    stored = crashed_log(path)
    size = os.path.getsize(last_segment(path))
    os.truncate(last_segment(path), size - len(stored[-1]) + cut)
    log = open_log(path, **CONFIG)
    assert_recovered_prefix(log, stored, 11)
    log.close()


def test_garbage_appended(tmp_path, caplog) -> None:
    path = tmp_path / "t-0"
    stored = crashed_log(path)
    with open(last_segment(path), "ab") as f:
        f.write(b"this is not a record batch, definitely not, but long enough to hold a header..")
    with caplog.at_level(logging.WARNING, logger="cluster.storage"):
        log = open_log(path, **CONFIG)
    assert_recovered_prefix(log, stored, 12)
    assert any(
        "recovery truncates" in r.message and segment_files(path)[-1] in r.message for r in caplog.records
    )
    log.close()


def test_zero_filled_tail_after_power_loss(tmp_path) -> None:
    path = tmp_path / "t-0"
    stored = crashed_log(path)
    with open(last_segment(path), "ab") as f:
        f.write(bytes(4096))
    log = open_log(path, **CONFIG)
    assert_recovered_prefix(log, stored, 12)
    log.close()


def test_zeroed_last_batch_in_place(tmp_path) -> None:
    path = tmp_path / "t-0"
    stored = crashed_log(path)
    size = os.path.getsize(last_segment(path))
    with open(last_segment(path), "r+b") as f:
        f.seek(size - len(stored[-1]))
        f.write(bytes(len(stored[-1])))
    log = open_log(path, **CONFIG)
    assert_recovered_prefix(log, stored, 11)
    log.close()


def flip_byte_in_batch(path, offset: int, byte_in_batch: int = 40) -> str:
    """Flips one byte under the CRC of the batch holding ``offset``; returns the file's name."""
    name = max((n for n in segment_files(path) if int(n[:20]) <= offset), key=lambda n: int(n[:20]))
    data = (path / name).read_bytes()
    position = next(pos for pos, h in iter_batch_headers(data) if h.base_offset <= offset <= h.last_offset)
    with open(path / name, "r+b") as f:
        f.seek(position + byte_in_batch)
        f.write(bytes([data[position + byte_in_batch] ^ 0x01]))
    return name


def test_flipped_crc_byte_in_the_middle_drops_the_rest(tmp_path, caplog) -> None:
    path = tmp_path / "t-0"
    stored = crashed_log(path, count=20)
    assert len(segment_files(path)) >= 4
    # Damage batch 5 (offsets 10..11), in the middle of the log: every later segment must go.
    name = flip_byte_in_batch(path, 10)
    with caplog.at_level(logging.WARNING, logger="cluster.storage"):
        log = open_log(path, **CONFIG)
    assert_recovered_prefix(log, stored, 5)
    assert any("CRC-32C mismatch" in r.getMessage() and name in r.getMessage() for r in caplog.records)
    assert segment_files(path)[-1] == name
    log.close()


def test_only_segments_from_the_recovery_point_are_scanned(tmp_path, monkeypatch) -> None:
    path = tmp_path / "t-0"
    crashed_log(path, count=20, flush=True)
    scanned = []
    original = LogSegment.recover

    def spy(self, on_batch):
        scanned.append(self.base_offset)
        return original(self, on_batch)

    monkeypatch.setattr(LogSegment, "recover", spy)
    log = open_log(path, **CONFIG)
    bases = log.segment_base_offsets
    assert scanned == [bases[-1]]  # the active segment: its indexes were never synced
    log.abandon()
    os.unlink(path / "recovery-point-offset-checkpoint")
    scanned.clear()
    log = open_log(path, **CONFIG)
    assert scanned == bases  # no recovery point: everything
    log.close()
    scanned.clear()
    log = open_log(path, **CONFIG)
    assert scanned == []  # clean shutdown: nothing
    log.close()


def test_clean_marker_with_a_bad_tail_still_recovers(tmp_path) -> None:
    path = tmp_path / "t-0"
    log = open_log(path, **CONFIG)
    stored = append_many(log, 6, records=2, value_bytes=60)
    log.close()
    with open(last_segment(path), "ab") as f:
        f.write(b"\x00" * 100)
    log = open_log(path, **CONFIG)
    assert_recovered_prefix(log, stored, 6)
    log.close()


@pytest.mark.parametrize(
    "damage",
    ["odd-size", "not-increasing", "past-the-end", "missing", "zeroed"],
)
def test_bad_index_of_an_old_segment_is_rebuilt(tmp_path, damage: str, caplog) -> None:
    path = tmp_path / "t-0"
    log = open_log(path, **CONFIG)
    stored = append_many(log, 20, records=2, value_bytes=60)
    log.close()
    first_index = path / "00000000000000000000.index"
    entries = first_index.read_bytes()
    assert len(entries) >= 16
    if damage == "odd-size":
        first_index.write_bytes(entries + b"\x01\x02\x03")
    elif damage == "not-increasing":
        first_index.write_bytes(entries[8:16] + entries[0:8] + entries[16:])
    elif damage == "past-the-end":
        first_index.write_bytes(entries + struct.pack(">ii", 1, 10**6))
    elif damage == "missing":
        first_index.unlink()
    else:
        first_index.write_bytes(entries + bytes(16))
    with caplog.at_level(logging.WARNING, logger="cluster.storage"):
        log = open_log(path, **CONFIG)
        for offset in range(0, 40):
            assert log.read(offset, 1, 40) == stored[offset // 2]
    assert first_index.read_bytes() == entries
    assert any("00000000000000000000" in r.getMessage() for r in caplog.records)
    log.close()


def test_bad_time_index_is_rebuilt(tmp_path) -> None:
    path = tmp_path / "t-0"
    log = open_log(path, **CONFIG)
    append_many(log, 20, records=2, value_bytes=60)
    targets = range(NOW_MS - 2, log.max_timestamp_and_offset()[0] + 2)
    expected = [log.offset_for_timestamp(t) for t in targets]
    assert expected[0] == (0, NOW_MS, 0) and expected[-1] is None
    log.close()
    time_index = path / "00000000000000000000.timeindex"
    good = time_index.read_bytes()
    time_index.write_bytes(good[12:] + good[:12])
    log = open_log(path, **CONFIG)
    got = [log.offset_for_timestamp(t) for t in targets]
    assert got == expected
    assert time_index.read_bytes() == good
    log.close()


def test_stray_files_are_cleaned(tmp_path) -> None:
    path = tmp_path / "t-0"
    stored = crashed_log(path, count=4)
    (path / "00000000000000000999.index").write_bytes(b"")
    (path / "00000000000000000999.timeindex").write_bytes(b"")
    (path / "leader-epoch-checkpoint.tmp").write_bytes(b"half written")
    (path / "partition.metadata").write_text("topic_id: x\n")  # someone else's file: left alone
    log = open_log(path, **CONFIG)
    names = set(os.listdir(path))
    assert "00000000000000000999.index" not in names and "leader-epoch-checkpoint.tmp" not in names
    assert "partition.metadata" in names
    assert read_all(log) == b"".join(stored)
    log.close()


def test_epoch_cache_is_truncated_to_the_recovered_end(tmp_path) -> None:
    path = tmp_path / "t-0"
    log = open_log(path, **CONFIG)
    stored = append_many(log, 5, records=2, value_bytes=60, epoch=1)
    stored += append_many(log, 5, records=2, value_bytes=60, epoch=2)
    assert log.epoch_entries == [(1, 0), (2, 10)]
    log.abandon()
    flip_byte_in_batch(path, 10)  # the first batch of epoch 2
    log = open_log(path, **CONFIG)
    assert log.log_end_offset == 10
    assert log.epoch_entries == [(1, 0)]
    assert (path / "leader-epoch-checkpoint").read_text() == "0\n1\n1 0\n"
    assert_recovered_prefix(log, stored, 5)
    log.close()


def test_epoch_cache_rebuilt_from_batches_when_checkpoint_is_lost(tmp_path, caplog) -> None:
    path = tmp_path / "t-0"
    log = open_log(path, **CONFIG)
    append_many(log, 5, records=2, epoch=1)
    append_many(log, 5, records=2, epoch=3)
    log.close()
    for content in (None, b"garbage\n"):
        if content is None:
            os.unlink(path / "leader-epoch-checkpoint")
        else:
            (path / "leader-epoch-checkpoint").write_bytes(content)
        log = open_log(path, **CONFIG)
        assert log.epoch_entries == [(1, 0), (3, 10)]
        log.close()


def test_malformed_offset_checkpoints_are_ignored(tmp_path) -> None:
    path = tmp_path / "t-0"
    stored = crashed_log(path, count=6, flush=True)
    (path / "recovery-point-offset-checkpoint").write_bytes(b"\xff\xfe nonsense")
    (path / "log-start-offset-checkpoint").write_text("0\n1\n")
    log = open_log(path, **CONFIG)
    assert (log.log_start_offset, log.log_end_offset) == (0, 12)
    assert read_all(log) == b"".join(stored)
    assert (path / "recovery-point-offset-checkpoint").read_text().endswith(" 12\n")
    log.close()


def test_segments_below_checkpointed_log_start_are_removed(tmp_path) -> None:
    path = tmp_path / "t-0"
    stored = crashed_log(path, count=20)
    segments = segment_files(path)
    start = int(segments[2][:20]) + 1
    (path / "log-start-offset-checkpoint").write_text(f"0\n1\nt-0 {start}\n")
    log = open_log(path, **CONFIG)
    assert segment_files(path) == segments[2:]
    assert log.log_start_offset == start
    assert log.read(start, 1, 40) == stored[start // 2]
    log.close()


def test_after_recovery_everything_is_durable(tmp_path) -> None:
    path = tmp_path / "t-0"
    crashed_log(path, count=10)
    log = open_log(path, **CONFIG)
    assert log.recovery_point == log.log_end_offset == 20
    assert log.prepare_flush() is None  # nothing left to sync
    log.close()
