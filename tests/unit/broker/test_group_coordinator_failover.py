"""The broker's group coordinator follows leadership of ``__consumer_offsets`` partitions.

The runtime runs against a small stand-in for the broker: real ``PartitionLog``s for the offsets partitions
(so loading reads real RecordBatches), a replica manager that answers ``get`` only for led partitions, and
high-watermark futures the test resolves or fails, as replication would.  The tests play the metadata: they
flip a partition's role and leader epoch and call ``on_offsets_partitions_changed`` as cluster mode does.
What must hold: a partition being loaded answers COORDINATOR_LOAD_IN_PROGRESS, an unloaded one
NOT_COORDINATOR (so members look the coordinator up again), a commit whose write is overtaken by a
leadership change is not acknowledged, and regaining leadership in a new epoch reloads the groups and
offsets from the log.
"""

from __future__ import annotations

import asyncio
import uuid
from types import SimpleNamespace

import pytest

from cluster.broker import group_coordinator as runtime_module
from cluster.broker.group_coordinator import OFFSETS_TOPIC, GroupCoordinatorRuntime
from cluster.config import BrokerConfig
from cluster.core.clock import SystemClock
from cluster.core.errors import ErrorCode, KafkaError
from cluster.groups import coordinator as gc
from cluster.storage.config import LogConfig
from cluster.storage.partition_log import PartitionLog
from cluster.wire import records as wire_records

NUM_OFFSETS_PARTITIONS = 3
GROUP = "g-failover"
TOPIC = "orders"
PROTOCOLS = (("range", b"meta"),)


class FakePartition:
    """An offsets partition replica: a real log; the high watermark follows the log end unless ``hold``."""

    def __init__(self, log: PartitionLog) -> None:
        self.log = log
        self.is_leader = True
        self.leader_epoch = 0
        self.hold = False
        self._waiters: list[tuple[int, asyncio.Future]] = []

    @property
    def log_start_offset(self) -> int:
        return self.log.log_start_offset

    @property
    def log_end_offset(self) -> int:
        return self.log.log_end_offset

    def append_records(self, batch, now_ms: int, produce_version: int):
        header = wire_records.validate_batch(batch)
        base_offset, last_offset = self.log.append(bytearray(batch), header, self.leader_epoch, now_ms)
        return base_offset, last_offset, -1

    def wait_for_high_watermark(self, offset: int) -> asyncio.Future:
        future = asyncio.get_running_loop().create_future()
        if self.hold:
            self._waiters.append((offset, future))
        else:
            future.set_result(None)
        return future

    def release(self) -> None:
        for _offset, future in self._waiters:
            future.set_result(None)
        self._waiters = []

    def fail_waiters(self, error: ErrorCode) -> None:
        for _offset, future in self._waiters:
            future.set_exception(KafkaError(error, "leadership moved"))
        self._waiters = []


class FakeReplicaManager:
    def __init__(self, tmp_path) -> None:
        self.store = SimpleNamespace(topics={})
        self.clock = SystemClock()
        self.partitions: dict[tuple[str, int], FakePartition] = {}
        self._tmp_path = tmp_path

    def create_topic(self, name: str, num_partitions: int, replication_factor: int, configs: dict) -> None:
        self.store.topics[name] = SimpleNamespace(name=name, topic_id=uuid.uuid4(), num_partitions=num_partitions)
        for index in range(num_partitions):
            log = PartitionLog.open(str(self._tmp_path / f"{name}-{index}"), LogConfig(), 0)
            self.partitions[(name, index)] = FakePartition(log)

    def get(self, topic: str, index: int) -> FakePartition | None:
        partition = self.partitions.get((topic, index))
        return partition if partition is not None and partition.is_leader else None

    def missing_error(self, topic: str, index: int) -> ErrorCode:
        return ErrorCode.NOT_LEADER_OR_FOLLOWER if (topic, index) in self.partitions else \
            ErrorCode.UNKNOWN_TOPIC_OR_PARTITION


class FakeBroker:
    def __init__(self, tmp_path) -> None:
        self.config = BrokerConfig.from_sources(environ={}, overrides={
            "log.dirs": str(tmp_path), "offsets.topic.num.partitions": str(NUM_OFFSETS_PARTITIONS),
            "offsets.topic.replication.factor": "1", "group.initial.rebalance.delay.ms": "0"})
        self.replica_manager = FakeReplicaManager(tmp_path)


async def _answer(outcome):
    return await outcome if isinstance(outcome, asyncio.Future) else outcome


class Node:
    """A coordinator runtime on a fake broker, plus the requests the tests make of it."""

    def __init__(self, tmp_path) -> None:
        self.broker = FakeBroker(tmp_path)
        self.broker.replica_manager.create_topic(OFFSETS_TOPIC, NUM_OFFSETS_PARTITIONS, 1, {})
        self.runtime = GroupCoordinatorRuntime(self.broker.config, self.broker.replica_manager, lambda: None)
        self.broker.group_coordinator = self.runtime
        self.runtime.start()
        self.index = self.runtime.coordinator.partition_of(GROUP)

    @property
    def partition(self) -> FakePartition:
        return self.broker.replica_manager.partitions[(OFFSETS_TOPIC, self.index)]

    async def call(self, method: str, request):
        return await _answer(self.runtime.submit(method, request))

    async def join_stable(self) -> tuple[str, int]:
        join = gc.JoinGroupRequest(GROUP, "", None, 10_000, 10_000, "consumer", PROTOCOLS, "client")
        first = await self.call("join_group", join)
        assert first.error is ErrorCode.MEMBER_ID_REQUIRED
        joined = await self.call("join_group", gc.JoinGroupRequest(
            GROUP, first.member_id, None, 10_000, 10_000, "consumer", PROTOCOLS, "client"))
        assert joined.error is ErrorCode.NONE
        synced = await self.call("sync_group", gc.SyncGroupRequest(
            GROUP, joined.generation_id, joined.member_id, assignments=((joined.member_id, b"a"),)))
        assert synced.error is ErrorCode.NONE
        return joined.member_id, joined.generation_id

    def commit_request(self, member_id: str, generation: int, offset: int, partition: int = 0):
        return gc.OffsetCommitRequest(GROUP, generation, member_id,
                                      offsets=(gc.OffsetToCommit(TOPIC, partition, offset),))

    async def commit(self, member_id: str, generation: int, offset: int, partition: int = 0) -> ErrorCode:
        result = await self.call("commit_offsets", self.commit_request(member_id, generation, offset, partition))
        (_topic, _partition, error), = result.partitions
        return error

    async def fetch(self) -> gc.OffsetFetchResult:
        return await self.call("fetch_offsets", gc.OffsetFetchRequest(GROUP, ((TOPIC, 0), (TOPIC, 1))))

    async def heartbeat(self, member_id: str, generation: int) -> ErrorCode:
        return (await self.call("heartbeat", gc.HeartbeatRequest(GROUP, generation, member_id))).error

    # -- playing the metadata (what ReplicaManager.apply_local_changes and cluster mode do) ---------------
    def demote(self) -> None:
        self.partition.is_leader = False
        self.partition.fail_waiters(ErrorCode.NOT_LEADER_OR_FOLLOWER)
        self.runtime.on_offsets_partitions_changed({}, {self.index})

    def elect(self, leader_epoch: int) -> None:
        self.partition.is_leader = True
        self.partition.leader_epoch = leader_epoch
        self.runtime.on_offsets_partitions_changed({self.index: leader_epoch}, set())

    async def wait_loaded(self, timeout_s: float = 5.0) -> None:
        async with asyncio.timeout(timeout_s):
            while self.runtime.loading_partitions():
                await asyncio.sleep(0.005)


def run(tmp_path, scenario) -> None:
    async def main():
        node = Node(tmp_path)
        try:
            await node.wait_loaded()
            await scenario(node)
        finally:
            node.runtime.stop()
            for partition in node.broker.replica_manager.partitions.values():
                partition.log.close()
    asyncio.run(main())


def test_unload_answers_not_coordinator_and_reload_in_new_epoch_restores_offsets(tmp_path):
    async def scenario(node: Node):
        member, generation = await node.join_stable()
        assert await node.commit(member, generation, 42) is ErrorCode.NONE
        epoch = node.partition.leader_epoch

        node.demote()
        assert await node.heartbeat(member, generation) is ErrorCode.NOT_COORDINATOR
        assert (await node.fetch()).error is ErrorCode.NOT_COORDINATOR
        assert await node.commit(member, generation, 43) is ErrorCode.NOT_COORDINATOR
        assert node.runtime.coordinator.group(GROUP) is None  # groups dropped, not merely hidden

        node.elect(epoch + 1)
        # Loading has begun, synchronously with the metadata change: clients are told to wait, not to move.
        assert (await node.fetch()).error is ErrorCode.COORDINATOR_LOAD_IN_PROGRESS
        assert await node.heartbeat(member, generation) is ErrorCode.COORDINATOR_LOAD_IN_PROGRESS
        await node.wait_loaded()
        fetched = await node.fetch()
        assert fetched.error is ErrorCode.NONE
        assert [(p.partition, p.offset) for p in fetched.partitions] == [(0, 42), (1, -1)]
        # The member came back with the group's stored metadata: it keeps heartbeating in its generation.
        assert await node.heartbeat(member, generation) is ErrorCode.NONE
        assert node.runtime.coordinator.group(GROUP).state is gc.GroupState.STABLE
        assert await node.commit(member, generation, 44) is ErrorCode.NONE
        assert (await node.fetch()).partitions[0].offset == 44

    run(tmp_path, scenario)


def test_loading_is_chunked_and_yields_to_the_event_loop(tmp_path, monkeypatch):
    monkeypatch.setattr(runtime_module, "_LOAD_CHUNK_BYTES", 64)  # one batch per chunk

    async def scenario(node: Node):
        member, generation = await node.join_stable()
        for offset in range(1, 21):
            assert await node.commit(member, generation, offset, partition=offset % 2) is ErrorCode.NONE
        epoch = node.partition.leader_epoch
        node.demote()
        node.elect(epoch + 1)
        ticks = 0
        while node.runtime.loading_partitions():
            ticks += 1  # the loop keeps running other work while the partition loads
            await asyncio.sleep(0)
        assert ticks >= 10, f"loading 20+ batches took only {ticks} turns of the event loop"
        fetched = await node.fetch()
        assert [(p.partition, p.offset) for p in fetched.partitions] == [(0, 20), (1, 19)]

    run(tmp_path, scenario)


def test_losing_leadership_while_loading_abandons_the_load(tmp_path, monkeypatch):
    monkeypatch.setattr(runtime_module, "_LOAD_CHUNK_BYTES", 64)

    async def scenario(node: Node):
        member, generation = await node.join_stable()
        for offset in range(1, 6):
            assert await node.commit(member, generation, offset) is ErrorCode.NONE
        epoch = node.partition.leader_epoch
        node.demote()
        node.elect(epoch + 1)
        await asyncio.sleep(0)
        node.demote()
        await asyncio.sleep(0.05)
        assert not node.runtime.loading_partitions()
        assert (await node.fetch()).error is ErrorCode.NOT_COORDINATOR
        assert node.runtime.coordinator.group(GROUP) is None
        node.elect(epoch + 2)
        await node.wait_loaded()
        assert (await node.fetch()).partitions[0].offset == 5

    run(tmp_path, scenario)


def test_same_epoch_again_does_not_reload(tmp_path):
    async def scenario(node: Node):
        member, generation = await node.join_stable()
        epoch = node.partition.leader_epoch
        node.runtime.on_offsets_partitions_changed({node.index: epoch}, set())  # e.g. only the ISR changed
        assert not node.runtime.loading_partitions()
        assert await node.heartbeat(member, generation) is ErrorCode.NONE

    run(tmp_path, scenario)


def test_commit_overtaken_by_leadership_change_is_not_acknowledged(tmp_path):
    async def scenario(node: Node):
        member, generation = await node.join_stable()
        assert await node.commit(member, generation, 7) is ErrorCode.NONE
        # Appended, but not yet committed (followers have not fetched it) when leadership moves: the high
        # watermark wait fails with NOT_LEADER_OR_FOLLOWER, which the client must see as NOT_COORDINATOR.
        node.partition.hold = True
        pending = node.runtime.submit("commit_offsets", node.commit_request(member, generation, 8))
        assert isinstance(pending, asyncio.Future)
        await asyncio.sleep(0.01)
        assert not pending.done()
        node.demote()
        result = await asyncio.wait_for(pending, 5)
        assert [error for _t, _p, error in result.partitions] == [ErrorCode.NOT_COORDINATOR]

    run(tmp_path, scenario)


def test_commit_reported_durable_after_demotion_is_not_acknowledged(tmp_path):
    async def scenario(node: Node):
        member, generation = await node.join_stable()
        node.partition.hold = True
        pending = node.runtime.submit("commit_offsets", node.commit_request(member, generation, 8))
        # Leadership moves without the waiters failing first; then the high watermark report arrives.
        node.partition.is_leader = False
        node.runtime.on_offsets_partitions_changed({}, {node.index})
        node.partition.release()
        result = await asyncio.wait_for(pending, 5)
        assert [error for _t, _p, error in result.partitions] == [ErrorCode.NOT_COORDINATOR]

    run(tmp_path, scenario)


def test_commit_acknowledged_once_committed(tmp_path):
    async def scenario(node: Node):
        member, generation = await node.join_stable()
        node.partition.hold = True
        pending = node.runtime.submit("commit_offsets", node.commit_request(member, generation, 8))
        await asyncio.sleep(0.01)
        assert not pending.done()  # answered only once the high watermark covers it
        assert (await node.fetch()).partitions[0].offset == -1
        node.partition.release()
        result = await asyncio.wait_for(pending, 5)
        assert [error for _t, _p, error in result.partitions] == [ErrorCode.NONE]
        assert (await node.fetch()).partitions[0].offset == 8

    run(tmp_path, scenario)


def test_write_in_a_newer_epoch_not_yet_reloaded_is_refused(tmp_path):
    async def scenario(node: Node):
        member, generation = await node.join_stable()
        node.partition.leader_epoch += 1  # metadata moved on; the coordinator has not heard yet
        end = node.partition.log_end_offset
        assert await node.commit(member, generation, 9) is ErrorCode.NOT_COORDINATOR
        assert node.partition.log_end_offset == end  # nothing written from possibly stale state

    run(tmp_path, scenario)


def test_a_restarted_node_loads_everything_it_leads_at_start(tmp_path):
    async def first(node: Node):
        member, generation = await node.join_stable()
        assert await node.commit(member, generation, 11) is ErrorCode.NONE

    run(tmp_path, first)

    async def restarted():
        node = Node(tmp_path)
        try:
            # start() loads every led partition in the background; a load that finishes wakes the waiters.
            assert await node.runtime.wait_until(lambda: not node.runtime.loading_partitions(), 5.0)
            assert (await node.fetch()).partitions[0].offset == 11
        finally:
            node.runtime.stop()
            for partition in node.broker.replica_manager.partitions.values():
                partition.log.close()
    asyncio.run(restarted())


@pytest.mark.parametrize("not_led_first", [True, False])
def test_topic_partitions_not_led_are_not_served(tmp_path, not_led_first):
    async def scenario(node: Node):
        await node.join_stable()
        others = [index for index in range(NUM_OFFSETS_PARTITIONS) if index != node.index]
        node.runtime.on_offsets_partitions_changed({}, set(others))
        owned = [index for index in range(NUM_OFFSETS_PARTITIONS) if node.runtime.coordinator.owns_partition(index)]
        assert owned == [node.index]
        if not_led_first:
            node.demote()
            assert not any(node.runtime.coordinator.owns_partition(i) for i in range(NUM_OFFSETS_PARTITIONS))

    run(tmp_path, scenario)
