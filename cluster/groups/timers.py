"""Deadlines for the group coordinator, driven by the ``now_ms`` its caller passes in.

Kafka's coordinator keeps one timer per key (a member's heartbeat, a group's join or sync phase) and
scheduling a key again replaces its deadline.  This is that, without a clock: the shell asks
``next_deadline_ms()`` and calls back with the current time; a simulator can do the same with a fake clock.
A heap with lazy deletion keeps rescheduling (every heartbeat) O(log n).
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable, Hashable

TimerCallback = Callable[[int], None]


class Timers:
    def __init__(self) -> None:
        self._heap: list[tuple[int, int, Hashable]] = []
        self._entries: dict[Hashable, tuple[int, int, TimerCallback]] = {}
        self._sequence = itertools.count()

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: Hashable) -> bool:
        return key in self._entries

    def schedule(self, key: Hashable, deadline_ms: int, callback: TimerCallback) -> None:
        """Fires ``callback(now_ms)`` once ``now_ms >= deadline_ms``, replacing any earlier timer of ``key``."""
        sequence = next(self._sequence)
        self._entries[key] = (deadline_ms, sequence, callback)
        heapq.heappush(self._heap, (deadline_ms, sequence, key))

    def cancel(self, key: Hashable) -> None:
        self._entries.pop(key, None)

    def deadline_of(self, key: Hashable) -> int | None:
        entry = self._entries.get(key)
        return entry[0] if entry is not None else None

    def next_deadline_ms(self) -> int | None:
        self._drop_stale()
        return self._heap[0][0] if self._heap else None

    def pop_expired(self, now_ms: int) -> TimerCallback | None:
        """The callback of the earliest timer due at ``now_ms`` (removed), or None.  One at a time, because a
        callback may schedule or cancel other timers."""
        self._drop_stale()
        if not self._heap or self._heap[0][0] > now_ms:
            return None
        _deadline, _sequence, key = heapq.heappop(self._heap)
        return self._entries.pop(key)[2]

    def _drop_stale(self) -> None:
        while self._heap:
            deadline, sequence, key = self._heap[0]
            entry = self._entries.get(key)
            if entry is not None and entry[1] == sequence:
                return
            heapq.heappop(self._heap)
