"""Offset and time indexes: append, lookups, truncation, file format, validation on load."""

from __future__ import annotations

import struct

import pytest

from cluster.storage.fs import LOCAL_FS
from cluster.storage.offset_index import OffsetIndex
from cluster.storage.time_index import TimeIndex


@pytest.fixture
def offset_index(tmp_path):
    return OffsetIndex(LOCAL_FS, str(tmp_path / "00000000000000000100.index"), 100, max_entries=4)


def test_offset_index_lookups(offset_index) -> None:
    assert offset_index.lookup(150) == 0 and offset_index.last_entry() is None
    for offset, position in [(110, 1_000), (120, 2_000), (135, 3_500)]:
        offset_index.append(offset, position)
    assert offset_index.lookup(100) == 0
    assert offset_index.lookup(109) == 0
    assert offset_index.lookup(110) == 1_000
    assert offset_index.lookup(119) == 1_000
    assert offset_index.lookup(134) == 2_000
    assert offset_index.lookup(10**9) == 3_500
    assert offset_index.floor_position(999) == 0
    assert offset_index.floor_position(2_000) == 2_000
    assert offset_index.floor_position(3_499) == 2_000
    assert offset_index.last_entry() == (135, 3_500)
    assert not offset_index.is_full
    offset_index.append(140, 4_000)
    assert offset_index.is_full and len(offset_index) == 4


def test_offset_index_file_format_and_truncation(offset_index, tmp_path) -> None:
    offset_index.append(110, 1_000)
    offset_index.append(120, 2_000)
    offset_index.append(130, 3_000)
    path = tmp_path / "00000000000000000100.index"
    assert not path.exists()  # entries reach the file only when synced (by a flush)
    offset_index.sync()
    assert path.read_bytes() == struct.pack(">iiiiii", 10, 1_000, 20, 2_000, 30, 3_000)
    assert offset_index.pending() == (3, 0, b"")
    offset_index.truncate_to_offset(120)
    assert offset_index.last_entry() == (110, 1_000)
    assert (tmp_path / "00000000000000000100.index").read_bytes() == struct.pack(">ii", 10, 1_000)
    offset_index.truncate_to_offset(10**9)  # nothing at or above: no change
    assert len(offset_index) == 1
    offset_index.append(140, 4_000)
    assert offset_index.pending() == (1, 1, struct.pack(">ii", 40, 4_000))
    offset_index.sync()
    assert path.read_bytes() == struct.pack(">iiii", 10, 1_000, 40, 4_000)


def test_offset_index_load_validates(tmp_path) -> None:
    index = OffsetIndex(LOCAL_FS, str(tmp_path / "x.index"), 100, max_entries=100)
    good = struct.pack(">iiii", 10, 1_000, 20, 2_000)
    assert index.load(good, segment_size=5_000, segment_next_offset=200) is None
    assert index.lookup(125) == 2_000
    cases = {
        "multiple": good + b"\x00",
        "does not increase": struct.pack(">iiii", 20, 1_000, 10, 2_000),
        "position": struct.pack(">iiii", 10, 1_000, 20, 1_000),
        "beyond the segment's 5000": struct.pack(">ii", 10, 5_000),
        "beyond the segment's end": struct.pack(">ii", 100, 10),
        "negative": struct.pack(">ii", -1, 10),
    }
    for expected, data in cases.items():
        reason = index.load(data, segment_size=5_000, segment_next_offset=200)
        assert reason is not None and (expected in reason or "increase" in reason), (expected, reason)
    assert index.lookup(125) == 2_000  # a rejected load leaves the entries as they were


def test_time_index(tmp_path) -> None:
    path = tmp_path / "00000000000000000100.timeindex"
    index = TimeIndex(LOCAL_FS, str(path), 100)
    assert index.lookup_below(10**15) is None
    index.maybe_append(1_000, 100)
    index.maybe_append(900, 105)  # not a new maximum: ignored
    index.maybe_append(1_000, 106)  # equal: ignored
    index.maybe_append(2_000, 110)
    index.maybe_append(-1, 111)  # no timestamp: ignored
    index.maybe_append(3_000, 120)
    assert len(index) == 3 and index.last_entry() == (3_000, 120)
    index.sync()
    assert path.read_bytes() == struct.pack(">qiqiqi", 1_000, 0, 2_000, 10, 3_000, 20)
    assert index.lookup_below(1_000) is None
    assert index.lookup_below(1_001) == 100
    assert index.lookup_below(2_000) == 100
    assert index.lookup_below(2_500) == 110
    assert index.lookup_below(10**15) == 120
    index.truncate_to_offset(110)
    assert index.last_entry() == (1_000, 100)
    assert path.read_bytes() == struct.pack(">qi", 1_000, 0)
    reloaded = TimeIndex(LOCAL_FS, str(path), 100)
    assert reloaded.load(path.read_bytes(), segment_next_offset=200) is None
    assert reloaded.last_entry() == (1_000, 100)
    assert "multiple" in reloaded.load(b"\x00" * 13, 200)
    assert "increase" in reloaded.load(struct.pack(">qiqi", 5, 0, 5, 1), 200)
    assert "beyond" in reloaded.load(struct.pack(">qi", 5, 150), 120)
