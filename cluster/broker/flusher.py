"""Group commit: fsync partition logs off the event loop, many appends per fsync.

An fsync costs ~130 µs to ~1 ms here (reference/performance.md §4) and far more on consumer disks, so syncing
per request would cap a partition near a few thousand requests a second.  Instead every append marks its
partition dirty; one flusher task repeatedly takes the whole dirty set, captures each log's flush target on
the loop thread (``prepare_flush``), fsyncs them all in one worker-thread call, and then, back on the loop,
advances each recovery point (``complete_flush``) and wakes the partition's waiters (``on_flushed``).
Appends that arrive during an fsync are covered by the next round, so the batch size adapts to the load.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import time
from collections.abc import Callable
from typing import Any

log = logging.getLogger("cluster.broker.flusher")

MAX_PARTITIONS_PER_ROUND = 1024


class GroupCommitFlusher:
    def __init__(self) -> None:
        self._dirty: dict[int, Any] = {}  # id(partition) -> partition, insertion-ordered
        self._wakeup = asyncio.Event()
        self._executor = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="fsync")
        self._stopping = False
        self.rounds = 0
        self.flushed_partitions = 0
        self.on_round: Callable[[float], None] | None = None  # seconds one fsync round took (metrics)

    def mark_dirty(self, partition: Any) -> None:
        self._dirty[id(partition)] = partition
        self._wakeup.set()

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while not self._stopping or self._dirty:
            await self._wakeup.wait()
            self._wakeup.clear()
            if not self._dirty:
                continue
            dirty = self._take_dirty_batch()
            work = [(partition, partition.log.prepare_flush()) for partition in dirty if not partition.deleted]
            work = [(partition, ticket) for partition, ticket in work if ticket is not None]
            if not work:
                continue
            started = time.perf_counter()
            try:
                await loop.run_in_executor(self._executor, _run_tickets, [ticket for _, ticket in work])
            except OSError:
                # A failed fsync leaves data of unknown durability: never acknowledge it (the fsyncgate lesson).
                log.critical("fsync failed; stopping the broker to protect acknowledged data", exc_info=True)
                raise
            for partition, ticket in work:
                if partition.deleted:
                    continue
                partition.log.complete_flush(ticket)
                partition.on_flushed()
            self.rounds += 1
            self.flushed_partitions += len(work)
            if self.on_round is not None:
                self.on_round(time.perf_counter() - started)

    def _take_dirty_batch(self) -> list[Any]:
        """Up to ``MAX_PARTITIONS_PER_ROUND`` dirty partitions, oldest first; the rest wait for the next round.

        Each flush ticket holds a duplicated descriptor of its log until the round ends, so the bound keeps a
        broker with tens of thousands of busy partitions under its file-descriptor limit.
        """
        if len(self._dirty) <= MAX_PARTITIONS_PER_ROUND:
            dirty, self._dirty = list(self._dirty.values()), {}
            return dirty
        keys = list(self._dirty)[:MAX_PARTITIONS_PER_ROUND]
        dirty = [self._dirty.pop(key) for key in keys]
        self._wakeup.set()  # the remainder is flushed in the next round without waiting for new appends
        return dirty

    async def stop(self) -> None:
        """Flushes what is dirty, then ends ``run``."""
        self._stopping = True
        self._wakeup.set()

    def shutdown_executor(self) -> None:
        self._executor.shutdown(wait=True)


def _run_tickets(tickets: list[Any]) -> None:
    for ticket in tickets:
        ticket.run()
