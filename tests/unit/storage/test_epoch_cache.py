"""Leader-epoch cache: Kafka's LeaderEpochFileCache semantics and its checkpoint file."""

from __future__ import annotations

import os

import pytest

from cluster.storage.epoch_cache import LeaderEpochCache, format_checkpoint, parse_checkpoint
from cluster.storage.fs import LOCAL_FS


@pytest.fixture
def cache(tmp_path):
    return LeaderEpochCache(LOCAL_FS, str(tmp_path))


def test_assign_only_moves_forward(cache) -> None:
    assert cache.latest_epoch is None and cache.entries() == []
    assert cache.assign(1, 0)
    assert not cache.assign(1, 5)  # the epoch's first offset is already known
    assert cache.assign(3, 10)
    assert cache.entries() == [(1, 0), (3, 10)]
    # An older epoch conflicts with everything after it (Kafka removes those entries).
    assert cache.assign(1, 0)
    assert cache.entries() == [(1, 0)]
    with pytest.raises(ValueError):
        cache.assign(-1, 3)


def test_assign_removes_conflicting_entries(cache) -> None:
    cache.assign(1, 0)
    cache.assign(3, 10)
    cache.assign(5, 20)
    assert cache.assign(4, 15)  # epoch 5 conflicts (epoch >= 4)
    assert cache.entries() == [(1, 0), (3, 10), (4, 15)]
    assert cache.assign(6, 12)  # entries starting at or after 12 conflict
    assert cache.entries() == [(1, 0), (3, 10), (6, 12)]
    assert cache.assign(3, 8)  # same epoch at an earlier offset replaces it
    assert cache.entries() == [(1, 0), (3, 8)]


def test_end_offset_for_matches_kafka(cache) -> None:
    assert cache.end_offset_for(1, 100) == (-1, -1)  # empty cache
    cache.assign(2, 10)
    cache.assign(4, 20)
    cache.assign(7, 35)
    assert cache.end_offset_for(-1, 50) == (-1, -1)
    assert cache.end_offset_for(7, 50) == (7, 50)  # latest: the log end
    assert cache.end_offset_for(4, 50) == (4, 35)
    assert cache.end_offset_for(5, 50) == (4, 35)  # largest epoch <= requested
    assert cache.end_offset_for(6, 50) == (4, 35)
    assert cache.end_offset_for(2, 50) == (2, 20)
    assert cache.end_offset_for(3, 50) == (2, 20)
    assert cache.end_offset_for(1, 50) == (1, 10)  # below every epoch: the first start offset
    assert cache.end_offset_for(8, 50) == (-1, -1)  # above the latest
    assert cache.epoch_for_offset(9) is None
    assert (
        cache.epoch_for_offset(10) == 2
        and cache.epoch_for_offset(34) == 4
        and cache.epoch_for_offset(99) == 7
    )
    assert cache.start_offset_of(4) == 20 and cache.start_offset_of(5) is None


def test_truncate_from_end(cache) -> None:
    for epoch, start in [(1, 0), (2, 10), (3, 20)]:
        cache.assign(epoch, start)
    assert not cache.truncate_from_end(25)
    assert cache.truncate_from_end(20)
    assert cache.entries() == [(1, 0), (2, 10)]
    assert cache.truncate_from_end(5)
    assert cache.entries() == [(1, 0)]
    assert not cache.truncate_from_end(-1)
    assert cache.truncate_from_end(0)
    assert cache.entries() == []


def test_truncate_from_start(cache) -> None:
    for epoch, start in [(1, 0), (2, 10), (3, 20)]:
        cache.assign(epoch, start)
    assert cache.truncate_from_start(15)
    assert cache.entries() == [(2, 15), (3, 20)]
    assert not cache.truncate_from_start(15)
    assert not cache.truncate_from_start(3)
    assert cache.truncate_from_start(20)
    assert cache.entries() == [(3, 20)]
    assert cache.truncate_from_start(50)
    assert cache.entries() == [(3, 50)]


def test_checkpoint_round_trip(cache, tmp_path) -> None:
    cache.assign(1, 0)
    cache.assign(4, 100)
    path = tmp_path / "leader-epoch-checkpoint"
    assert path.read_text() == "0\n2\n1 0\n4 100\n"
    assert not any(name.endswith(".tmp") for name in os.listdir(tmp_path))
    other = LeaderEpochCache(LOCAL_FS, str(tmp_path))
    assert other.load() and other.entries() == [(1, 0), (4, 100)]
    cache.truncate_from_end(100)
    assert path.read_text() == "0\n1\n1 0\n"
    cache.clear()
    assert path.read_text() == "0\n0\n"


def test_changes_without_flush_do_not_touch_the_file(cache, tmp_path) -> None:
    cache.assign(1, 0, flush=False)
    assert not (tmp_path / "leader-epoch-checkpoint").exists()
    cache.flush()
    assert (tmp_path / "leader-epoch-checkpoint").read_text() == "0\n1\n1 0\n"


@pytest.mark.parametrize(
    "content",
    [b"", b"1\n0\n", b"0\n2\n1 0\n", b"0\n1\n1\n", b"0\n1\n-1 4\n", b"0\nx\n", b"\xff\xfe"],
)
def test_malformed_checkpoint_is_ignored(cache, tmp_path, content: bytes) -> None:
    (tmp_path / "leader-epoch-checkpoint").write_bytes(content)
    assert not cache.load()
    assert cache.entries() == []


def test_kafka_written_checkpoint_parses() -> None:
    assert parse_checkpoint(b"0\n3\n0 0\n2 1543\n5 9001\n") == [(0, 0), (2, 1543), (5, 9001)]
    assert parse_checkpoint(format_checkpoint([(7, 70)])) == [(7, 70)]
