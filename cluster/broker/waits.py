"""Waiting with a timeout, and stopping a task, without trusting ``asyncio.wait_for``.

Why it exists: on Python 3.11, ``asyncio.wait_for`` swallows a cancellation that arrives in the same loop turn
as the awaited future completes (CPython gh-86296, fixed in 3.12).  A loop that waits on
``wait_for(event.wait(), timeout)`` and is woken often -- the Raft driver, by every inbound message -- then
survives ``task.cancel()``, and whoever awaits the task after cancelling it waits forever.  That is how a broker
that had logged "shutting down" kept running, electing itself and answering fetches, for twenty minutes.
So the loops that run until stopped wait with ``wait_event`` and end on a flag, and whoever stops them does so
with ``stop_tasks``, which is bounded whatever the task does.
"""

from __future__ import annotations

import asyncio
import logging
import time

log = logging.getLogger(__name__)


async def wait_event(event: asyncio.Event, timeout_s: float) -> bool:
    """True if ``event`` is set within ``timeout_s``; a cancellation of the caller always propagates."""
    if event.is_set():
        return True
    waiter = asyncio.ensure_future(event.wait())
    try:
        done, _pending = await asyncio.wait({waiter}, timeout=max(0.0, timeout_s))
    finally:
        waiter.cancel()
    return bool(done)


async def stop_tasks(tasks, timeout_s: float, *, cancel: bool = True) -> bool:
    """Waits at most ``timeout_s`` for every task of ``tasks`` to end (cancelling them first unless ``cancel`` is
    False, for a task told to stop by a flag); True if all ended.  Their results or exceptions are consumed:
    they are being stopped."""
    tasks = set(tasks)
    if not tasks:
        return True
    if cancel:
        for task in tasks:
            task.cancel()
    done, pending = await asyncio.wait(tasks, timeout=timeout_s)
    for task in done:
        if not task.cancelled():
            task.exception()   # retrieved, so asyncio does not log it as never retrieved
    if pending and cancel:   # a task told to stop by a flag may just need the cancellation that follows
        log.error("tasks %s did not stop within %.1f s; abandoning them",
                  sorted(task.get_name() for task in pending), timeout_s)
    return not pending


class Pulse:
    """Wakes every waiter each time something changed (a load finished, a new image was published); each waiter
    re-checks its own condition, so nobody polls with ``sleep``."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def pulse(self) -> None:
        self._event.set()
        self._event = asyncio.Event()

    async def wait_until(self, predicate, timeout_s: float) -> bool:
        """True once ``predicate()`` holds, False if it still does not after ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        while not predicate():
            remaining_s = deadline - time.monotonic()
            if remaining_s <= 0:
                return False
            await wait_event(self._event, remaining_s)
        return True
