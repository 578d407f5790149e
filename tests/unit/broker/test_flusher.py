"""Group commit: every dirty partition is flushed, in rounds of bounded size."""

import asyncio

from cluster.broker import flusher as flusher_module
from cluster.broker.flusher import GroupCommitFlusher


class FakeTicket:
    def __init__(self, log):
        self.log = log

    def run(self):
        self.log.synced += 1


class FakeLog:
    def __init__(self):
        self.synced = 0
        self.completed = 0

    def prepare_flush(self):
        return FakeTicket(self)

    def complete_flush(self, ticket):
        self.completed += 1


class FakePartition:
    deleted = False

    def __init__(self):
        self.log = FakeLog()
        self.flushed = 0

    def on_flushed(self):
        self.flushed += 1


def test_many_dirty_partitions_are_flushed_in_bounded_rounds():
    partitions = [FakePartition() for _ in range(2 * flusher_module.MAX_PARTITIONS_PER_ROUND + 10)]
    round_sizes = []

    async def scenario():
        flusher = GroupCommitFlusher()
        original = flusher._take_dirty_batch

        def recording_take():
            batch = original()
            round_sizes.append(len(batch))
            return batch

        flusher._take_dirty_batch = recording_take
        task = asyncio.create_task(flusher.run())
        for partition in partitions:
            flusher.mark_dirty(partition)
        for _ in range(200):
            await asyncio.sleep(0.01)
            if all(partition.flushed for partition in partitions):
                break
        await flusher.stop()
        await asyncio.wait_for(task, 5)
        flusher.shutdown_executor()

    asyncio.run(scenario())
    assert all((p.log.synced, p.log.completed, p.flushed) == (1, 1, 1) for p in partitions)
    assert max(round_sizes) == flusher_module.MAX_PARTITIONS_PER_ROUND
    assert len([size for size in round_sizes if size]) >= 3
