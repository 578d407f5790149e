"""The broker's one wall-clock function, with an offset a fault-injection test can set per process.

Jepsen's clock nemesis bumps and strobes node clocks to find code that trusts wall time across nodes
(timestamps, retention, session expiry).  Changing the machine's clock would hit every process on it, and
libfaketime also skews the monotonic clock (reference/fault-injection.md §2(e)), so the broker instead reads
wall time only through ``wall_clock_ms()``, which adds the offset written in a file a test names with
``kraftpy.test.clock.offset.file`` (a signed integer of milliseconds).  The file is re-read at most every
100 ms, never on each call; a missing or unreadable file means offset 0.  Monotonic time is never skewed:
timeouts and elections keep using ``time.monotonic``.  Without ``use_offset_file`` the function is plain
``time.time()`` in milliseconds.
"""

from __future__ import annotations

import time

__all__ = ["POLL_INTERVAL_NS", "SystemClock", "monotonic_ms", "offset_ms", "use_offset_file", "wall_clock_ms"]

POLL_INTERVAL_NS = 100_000_000


class _Offset:
    path: str | None = None
    value_ms = 0
    next_read_ns = 0


def use_offset_file(path: str | None) -> None:
    """Makes ``wall_clock_ms`` add the offset held in ``path`` (None or "" switches it off)."""
    _Offset.path = path or None
    _Offset.value_ms = 0
    _Offset.next_read_ns = 0


def _read_offset_ms(path: str) -> int:
    try:
        with open(path, "rb") as f:
            return int(f.read(64).strip() or b"0")
    except (OSError, ValueError):
        return 0


def offset_ms() -> int:
    """The offset now in force (re-reading the file if 100 ms have passed since the last read)."""
    path = _Offset.path
    if path is None:
        return 0
    now_ns = time.monotonic_ns()
    if now_ns >= _Offset.next_read_ns:
        _Offset.value_ms = _read_offset_ms(path)
        _Offset.next_read_ns = now_ns + POLL_INTERVAL_NS
    return _Offset.value_ms


def wall_clock_ms() -> int:
    if _Offset.path is None:
        return time.time_ns() // 1_000_000
    return time.time_ns() // 1_000_000 + offset_ms()


def monotonic_ms() -> int:
    """Milliseconds of ``time.monotonic``: for durations a skewed wall clock must not stretch or shrink (broker
    sessions: a clock that jumps ahead on the controller must not expire every session at once)."""
    return time.monotonic_ns() // 1_000_000


class SystemClock:
    """The one clock object of a broker process, handed to the parts that read time (built once in app.py).

    ``wall_ms`` is wall time with the fault-injection offset (record timestamps, retention, offset expiry);
    ``monotonic_ms`` is for durations (sessions, deadlines).  A test can hand the same parts a clock of its own.
    """

    @staticmethod
    def wall_ms() -> int:
        return wall_clock_ms()

    @staticmethod
    def monotonic_ms() -> int:
        return monotonic_ms()
