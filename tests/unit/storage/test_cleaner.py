"""Log compaction: latest value per key, tombstones and their delete horizon, unchanged offsets,
producer headers kept, only durable non-active segments cleaned, crash-safe segment swap."""

from __future__ import annotations

import os

import pytest
from storage_testlib import NOW_MS, open_log, read_all

from cluster.storage import LogConfig, PartitionLog
from cluster.storage.cleaner import STAGING_CLEANED_DIR, STAGING_SWAP_DIR, clean_now
from cluster.wire.compression import LZ4
from cluster.wire.records import (
    DELETE_HORIZON_MASK,
    build_batch,
    decode_records,
    iter_batch_headers,
    validate_batch,
)

DAY_MS = 86_400_000


def compacted_log(path, **config) -> PartitionLog:
    config.setdefault("cleanup_policy", ("compact",))
    config.setdefault("segment_bytes", 300)
    return open_log(path, **config)


def put(log: PartitionLog, pairs, now_ms: int = NOW_MS, **kwargs) -> tuple[int, int]:
    """Appends one batch of (key, value) pairs."""
    batch = bytearray(build_batch([(k, v, [], now_ms) for k, v in pairs], **kwargs))
    return log.append(batch, validate_batch(batch), 0, now_ms)


def records_of(data: bytes) -> list[tuple[int, bytes | None, bytes | None]]:
    out = []
    for position, header in iter_batch_headers(data):
        for record in decode_records(data[position : position + header.size_in_bytes]):
            out.append((record.offset, record.key, record.value))
    return out


def fill(log: PartitionLog, rounds: int, keys: int = 3) -> dict[bytes, tuple[int, bytes]]:
    """``rounds`` batches each writing every key once; returns key -> (offset, value) of the latest."""
    latest = {}
    for r in range(rounds):
        pairs = [(b"k%d" % k, b"v%d-%d" % (k, r)) for k in range(keys)]
        base, _ = put(log, pairs)
        for i, (key, value) in enumerate(pairs):
            latest[key] = (base + i, value)
    return latest


def test_keeps_latest_value_per_key_with_unchanged_offsets(tmp_path) -> None:
    log = compacted_log(tmp_path / "t-0")
    latest = fill(log, 12)
    log.flush()
    assert log.segment_count > 3
    before = records_of(read_all(log))
    active_base = log.active_segment.base_offset
    active_before = [r for r in before if r[0] >= active_base]
    size_before = log.size_in_bytes
    end_before = log.log_end_offset

    assert clean_now(log, NOW_MS) == log.segment_count - 1
    after = records_of(read_all(log))
    offsets = [r[0] for r in after]
    assert offsets == sorted(set(offsets))
    assert set(after) <= set(before)  # offsets and payloads never change
    # The active segment is untouched; below it only each key's latest record remains.
    assert [r for r in after if r[0] >= active_base] == active_before
    cleaned = [r for r in after if r[0] < active_base]
    cleanable_before = [r for r in before if r[0] < active_base]
    by_key: dict[bytes, list[int]] = {}
    for offset, key, _ in cleaned:
        by_key.setdefault(key, []).append(offset)
    assert by_key == {
        key: [max(o for o, k, _ in cleanable_before if k == key)] for key in {k for _, k, _ in cleanable_before}
    }
    for key, (offset, value) in latest.items():
        assert (offset, key, value) in after
    assert log.size_in_bytes < size_before
    assert log.log_end_offset == end_before and log.log_start_offset == 0
    # Every offset is still readable: a fetch from a removed offset returns the next batch.
    for offset in range(0, end_before):
        data = log.read(offset, 1 << 20, end_before)
        assert records_of(data) and records_of(data)[-1][0] < end_before
    log.close()
    reopened = compacted_log(tmp_path / "t-0")
    assert records_of(read_all(reopened)) == after
    reopened.close()


def test_only_durable_segments_below_the_active_one_are_cleaned(tmp_path) -> None:
    log = compacted_log(tmp_path / "t-0")
    fill(log, 12)
    assert clean_now(log, NOW_MS, force=True) == 0  # nothing fsynced yet: recovery point is 0
    log.flush()
    hw = log.segment_base_offsets[2]
    before = records_of(read_all(log))
    assert clean_now(log, NOW_MS, high_watermark=hw, force=True) == 2
    after = records_of(read_all(log))
    assert [r for r in after if r[0] >= hw] == [r for r in before if r[0] >= hw]
    log.close()


def test_min_compaction_lag_and_dirty_ratio(tmp_path) -> None:
    log = compacted_log(tmp_path / "t-0", min_compaction_lag_ms=60_000)
    fill(log, 12)
    log.flush()
    assert clean_now(log, NOW_MS + 1_000) == 0  # too young
    assert clean_now(log, NOW_MS + 60_001) > 0
    # Nothing new was written: the next pass is not due (dirty ratio 0), unless forced.
    assert log.prepare_cleaning(NOW_MS + 120_000) is None
    assert log.prepare_cleaning(NOW_MS + 120_000, force=True) is not None
    log.close()


def test_superseded_tombstone_is_removed_at_once(tmp_path) -> None:
    log = compacted_log(tmp_path / "t-0", delete_retention_ms=DAY_MS)
    fill(log, 4)
    tombstone_offset, _ = put(log, [(b"k0", None)])
    fill(log, 8)  # k0 is written again after its tombstone
    log.flush()
    assert clean_now(log, NOW_MS) > 0
    assert all(offset != tombstone_offset for offset, _, _ in records_of(read_all(log)))
    log.close()


def test_tombstone_delete_horizon(tmp_path) -> None:
    log = compacted_log(tmp_path / "t-0", delete_retention_ms=DAY_MS)
    fill(log, 4)
    tombstone_offset, _ = put(log, [(b"k0", None)])
    put(log, [(b"other%d" % i, b"z" * 40) for i in range(4)])
    put(log, [(b"other%d" % i, b"z" * 40) for i in range(4)])
    log.flush()
    clean_at = NOW_MS + 1_000
    assert clean_now(log, clean_at) > 0
    after = records_of(read_all(log))
    assert (tombstone_offset, b"k0", None) in after
    assert not [r for r in after if r[1] == b"k0" and r[0] != tombstone_offset]  # older values gone
    # The batch carrying the tombstone now records its delete horizon (KIP-534).
    data = read_all(log)
    header = next(h for _, h in iter_batch_headers(data) if h.base_offset <= tombstone_offset <= h.last_offset)
    assert header.attributes & DELETE_HORIZON_MASK and header.base_timestamp == clean_at + DAY_MS
    assert log.cleaner_delete_horizon_ms == clean_at + DAY_MS
    # Before the horizon the tombstone survives another pass; after it, a pass is due and removes it.
    assert clean_now(log, clean_at + DAY_MS - 1, force=True) > 0
    assert (tombstone_offset, b"k0", None) in records_of(read_all(log))
    assert log.prepare_cleaning(clean_at + DAY_MS - 1) is None
    assert clean_now(log, clean_at + DAY_MS) > 0
    assert all(r[1] != b"k0" for r in records_of(read_all(log)))
    log.close()


def test_partially_kept_batch_keeps_timestamps_and_compression(tmp_path) -> None:
    log = compacted_log(tmp_path / "t-0", segment_bytes=400)
    base, _ = put(log, [(b"a", b"1"), (b"b", b"1"), (b"c", b"1")], compression=LZ4)
    put(log, [(b"b", b"2")], compression=LZ4)
    put(log, [(b"filler%d" % i, b"f" * 60) for i in range(4)])
    put(log, [(b"filler%d" % i, b"f" * 60) for i in range(4)])
    log.flush()
    assert clean_now(log, NOW_MS, force=True) > 0
    data = read_all(log)
    first_position, first = next(iter_batch_headers(data))
    assert first.base_offset == base and first.last_offset_delta == 2 and first.records_count == 2
    assert first.compression_type == LZ4
    records = decode_records(data[first_position : first_position + first.size_in_bytes])
    assert [(r.offset, r.key, r.value, r.timestamp) for r in records] == [
        (base, b"a", b"1", NOW_MS),
        (base + 2, b"c", b"1", NOW_MS),
    ]
    log.close()


def test_last_batch_of_an_idempotent_producer_stays_as_an_empty_header(tmp_path) -> None:
    log = compacted_log(tmp_path / "t-0")
    put(log, [(b"k", b"old")], producer_id=7, producer_epoch=1, base_sequence=0)
    put(log, [(b"k", b"older-producer-superseded")], producer_id=8, producer_epoch=0, base_sequence=0)
    put(log, [(b"k", b"x"), (b"k", b"y")], producer_id=7, producer_epoch=1, base_sequence=1)
    put(log, [(b"k", b"new")])
    fill(log, 10, keys=2)
    log.flush()
    assert clean_now(log, NOW_MS, force=True) > 0
    headers = [h for _, h in iter_batch_headers(read_all(log))]
    by_producer = {h.producer_id: h for h in headers if h.producer_id >= 0}
    # Producer 7's first batch is gone (not its last); its last batch and producer 8's only
    # batch stay as empty headers with their sequences and offsets.
    assert [h.base_offset for h in headers if h.producer_id == 7] == [2]
    last7 = by_producer[7]
    assert (last7.records_count, last7.last_offset_delta, last7.base_sequence, last7.producer_epoch) == (0, 1, 1, 1)
    assert by_producer[8].records_count == 0 and by_producer[8].base_offset == 1
    log.close()
    reopened = compacted_log(tmp_path / "t-0")  # recovery accepts the empty batches
    assert [h for h in reopened.iter_batch_headers(0) if h.producer_id == 7][-1].last_sequence == 2
    reopened.close()


def test_read_during_cleaning_sees_consistent_data(tmp_path) -> None:
    log = compacted_log(tmp_path / "t-0")
    fill(log, 12)
    log.flush()
    before = read_all(log)
    task = log.prepare_cleaning(NOW_MS, force=True)
    assert task is not None
    task.run()
    # The worker is done but the swap has not happened: readers still see the old segments.
    assert read_all(log) == before
    put(log, [(b"k0", b"during")])  # appends continue meanwhile
    assert log.complete_cleaning(task) > 0
    after = records_of(read_all(log))
    assert [r[0] for r in after] == sorted(r[0] for r in after)
    assert after[-1][1:] == (b"k0", b"during")
    log.close()


def test_cleaning_skips_segments_deleted_meanwhile(tmp_path) -> None:
    log = compacted_log(tmp_path / "t-0", cleanup_policy=("compact", "delete"), retention_ms=1000)
    fill(log, 12)
    log.flush()
    task = log.prepare_cleaning(NOW_MS, force=True)
    task.run()
    deleted = log.delete_old_segments(NOW_MS + 10_000)
    assert deleted > 0
    remaining = log.segment_count - 1
    assert log.complete_cleaning(task) == remaining
    assert not os.path.exists(tmp_path / "t-0" / STAGING_CLEANED_DIR)
    assert not os.path.exists(tmp_path / "t-0" / STAGING_SWAP_DIR)
    log.close()


def test_compact_only_topics_ignore_time_and_size_retention(tmp_path) -> None:
    log = compacted_log(tmp_path / "t-0", retention_ms=1, retention_bytes=1)
    fill(log, 12)
    log.flush()
    assert log.delete_old_segments(NOW_MS + DAY_MS) == 0
    log.close()


@pytest.mark.parametrize("stage", ["cleaned", "swap-started", "swap-half-done"])
def test_crash_during_cleaning_recovers(tmp_path, stage) -> None:
    path = tmp_path / "t-0"
    log = compacted_log(path)
    fill(log, 12)
    log.flush()
    before = records_of(read_all(log))
    expected = records_of(read_all(_cleaned_copy(tmp_path, path)))
    task = log.prepare_cleaning(NOW_MS, force=True)
    task.run()
    staging = path / STAGING_CLEANED_DIR
    swap = path / STAGING_SWAP_DIR
    if stage != "cleaned":
        os.replace(staging, swap)
    if stage == "swap-half-done":
        names = sorted(os.listdir(swap))
        for name in names[: len(names) // 2 + 1]:
            os.replace(swap / name, path / name)
    log.abandon()  # the crash

    reopened = compacted_log(path)
    assert not staging.exists() and not swap.exists()
    data = records_of(read_all(reopened))
    assert data == (before if stage == "cleaned" else expected)
    # The indexes agree with the logs: every offset resolves.
    for offset in range(reopened.log_end_offset):
        assert records_of(reopened.read(offset, 1 << 20, reopened.log_end_offset))
    reopened.close()


def _cleaned_copy(tmp_path, path) -> PartitionLog:
    """The same log, cleaned without interruption, for comparison."""
    import shutil

    copy = tmp_path / "copy-0"
    shutil.copytree(path, copy)
    log = compacted_log(copy)
    clean_now(log, NOW_MS, force=True)
    return log


def test_log_config_parses_cleaner_settings() -> None:
    config = LogConfig.from_topic_configs(
        {
            "cleanup.policy": "compact,delete",
            "delete.retention.ms": "5",
            "min.compaction.lag.ms": "6",
            "min.cleanable.dirty.ratio": "0.25",
        }
    )
    assert config.cleanup_policy == ("compact", "delete") and config.compact and config.delete
    assert (config.delete_retention_ms, config.min_compaction_lag_ms, config.min_cleanable_dirty_ratio) == (
        5,
        6,
        0.25,
    )
    assert LogConfig().cleanup_policy == ("delete",) and LogConfig().delete_retention_ms == DAY_MS
    with pytest.raises(ValueError, match="cleanup.policy"):
        LogConfig.from_topic_configs({"cleanup.policy": "shred"})
    with pytest.raises(ValueError, match="min.cleanable.dirty.ratio"):
        LogConfig(min_cleanable_dirty_ratio=1.5)


def test_swap_failing_half_way_keeps_serving_and_completes_on_open(tmp_path, monkeypatch) -> None:
    import cluster.storage.cleaner as cleaner

    path = tmp_path / "t-0"
    log = compacted_log(path)
    fill(log, 12)
    log.flush()
    before = records_of(read_all(log))
    expected = records_of(read_all(_cleaned_copy(tmp_path, path)))
    task = log.prepare_cleaning(NOW_MS, force=True)
    task.run()
    real_replace = os.replace
    calls = []

    def failing_replace(src, dst):
        calls.append(src)
        if len(calls) == 3:  # the staging rename and one file move succeed
            raise OSError(28, "No space left on device")
        real_replace(src, dst)

    monkeypatch.setattr(cleaner.os, "replace", failing_replace)
    with pytest.raises(OSError):
        log.complete_cleaning(task)
    monkeypatch.undo()
    # The old segments still serve every offset from their descriptors and loaded indexes.
    assert records_of(read_all(log)) == before
    for offset in range(log.log_end_offset):
        got = records_of(log.read(offset, 1 << 20, log.log_end_offset))
        assert got[0][0] <= offset <= got[-1][0]
    assert log.prepare_cleaning(NOW_MS, force=True) is None  # never clean over a pending swap
    log.abandon()
    reopened = compacted_log(path)
    assert records_of(read_all(reopened)) == expected
    reopened.close()
