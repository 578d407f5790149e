"""Deadline bookkeeping: rescheduling replaces, cancel removes, expiry is in deadline order."""

from __future__ import annotations

from cluster.groups.timers import Timers


def test_fires_in_deadline_order_and_reschedule_replaces():
    timers, fired = Timers(), []
    timers.schedule("a", 30, lambda now: fired.append(("a", now)))
    timers.schedule("b", 10, lambda now: fired.append(("b", now)))
    timers.schedule("a", 20, lambda now: fired.append(("a2", now)))
    assert timers.next_deadline_ms() == 10
    assert timers.pop_expired(5) is None
    while (callback := timers.pop_expired(25)) is not None:
        callback(25)
    assert fired == [("b", 25), ("a2", 25)]
    assert len(timers) == 0 and timers.next_deadline_ms() is None


def test_cancel_and_deadline_of():
    timers = Timers()
    timers.schedule("x", 10, lambda now: None)
    assert "x" in timers and timers.deadline_of("x") == 10
    timers.cancel("x")
    timers.cancel("missing")
    assert "x" not in timers and timers.next_deadline_ms() is None and timers.pop_expired(100) is None
