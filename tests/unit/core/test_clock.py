"""cluster/core/clock.py: the skewable wall clock reads its offset file at most every 100 ms."""

from __future__ import annotations

import time

import pytest

from cluster.core import clock


@pytest.fixture(autouse=True)
def _reset():
    yield
    clock.use_offset_file(None)


def test_without_a_file_it_is_the_plain_wall_clock():
    clock.use_offset_file(None)
    before = time.time_ns() // 1_000_000
    assert before <= clock.wall_clock_ms() <= time.time_ns() // 1_000_000


def test_offset_applies_and_is_polled_not_read_per_call(tmp_path, monkeypatch):
    path = tmp_path / "offset"
    path.write_text("+60000\n")
    clock.use_offset_file(str(path))
    assert clock.wall_clock_ms() - time.time_ns() // 1_000_000 >= 59_000
    reads = []
    real = clock._read_offset_ms
    monkeypatch.setattr(clock, "_read_offset_ms", lambda p: reads.append(p) or real(p))
    path.write_text("-5000")
    for _ in range(1000):
        clock.wall_clock_ms()
    assert len(reads) <= 1          # within 100 ms of the first read: not re-read at all
    time.sleep(0.11)
    skew = clock.wall_clock_ms() - time.time_ns() // 1_000_000
    assert -5_100 <= skew <= -4_900
    assert len(reads) >= 1


def test_missing_or_garbage_file_means_no_offset(tmp_path):
    clock.use_offset_file(str(tmp_path / "absent"))
    assert abs(clock.offset_ms()) == 0
    (tmp_path / "bad").write_text("soon")
    clock.use_offset_file(str(tmp_path / "bad"))
    assert clock.offset_ms() == 0
