"""cluster/broker/waits.py: a loop that waits with ``wait_event`` ends when cancelled even if its event is set in
the same loop turn (the case in which Python 3.11's ``asyncio.wait_for`` swallows the cancellation and the loop
runs on forever), and ``stop_tasks`` is bounded even for a task that refuses to end."""

from __future__ import annotations

import asyncio
import time

from cluster.broker.waits import stop_tasks, wait_event


async def _woken_loop(wake: asyncio.Event, laps: list[int]) -> None:
    while True:
        laps.append(1)
        wake.clear()
        await wait_event(wake, 0.5)


def test_loop_cancelled_in_the_turn_its_event_is_set_ends():
    async def scenario() -> bool:
        wake, laps = asyncio.Event(), []
        task = asyncio.create_task(_woken_loop(wake, laps))
        for _ in range(20):   # many chances for the wake-up and the cancellation to meet
            await asyncio.sleep(0.001)
            wake.set()
        task.cancel()
        wake.set()
        done, _pending = await asyncio.wait({task}, timeout=2.0)
        return bool(done) and task.cancelled() and len(laps) > 1

    assert asyncio.run(scenario())


def test_wait_event_reports_set_and_timeout():
    async def scenario() -> tuple[bool, bool]:
        event = asyncio.Event()
        timed_out = await wait_event(event, 0.01)
        asyncio.get_running_loop().call_later(0.01, event.set)
        return timed_out, await wait_event(event, 2.0)

    assert asyncio.run(scenario()) == (False, True)


def test_stop_tasks_is_bounded_for_a_task_that_will_not_stop():
    async def stubborn(release: asyncio.Event) -> None:
        while not release.is_set():
            try:
                await release.wait()
            except asyncio.CancelledError:
                continue   # swallows every cancellation until released

    async def scenario() -> tuple[bool, float, bool]:
        release = asyncio.Event()
        quick = asyncio.create_task(asyncio.sleep(10))
        task = asyncio.create_task(stubborn(release))
        await asyncio.sleep(0)
        started = time.monotonic()
        stopped = await stop_tasks([quick, task], 0.2)
        elapsed = time.monotonic() - started
        release.set()
        await task
        return stopped, elapsed, quick.cancelled()

    stopped, elapsed, quick_cancelled = asyncio.run(scenario())
    assert not stopped and elapsed < 1.0 and quick_cancelled
