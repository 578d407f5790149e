"""The follower side of partition replication: one fetcher task per leader broker (Kafka's ReplicaFetcherThread).

Each fetcher repeatedly asks the pure ``FollowerFetchState`` of every partition it follows which fetch to send
(none while the last fetched data is not yet fsynced: the fetch offset tells the leader what we hold
*durably*), sends the ready ones in one gRPC request, and carries out what the state machine decides with each
answer.  Unlike Kafka's fetcher it does not wait for that request before sending the next: partitions become
ready one by one as their fsyncs finish, and a ready partition must not wait behind a request the leader is
long-polling for others (a partition has at most one fetch in flight; the state machine enforces it).  Answers:
append the batches (the group-commit flusher then fsyncs them and wakes this fetcher), truncate to where the
logs agree (diverging epoch), restart the log at the leader's log start offset, or back off.  A partition moves
between fetchers when its leader changes; it leaves them when this broker becomes its leader or deletes it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

import grpc

from cluster.broker.partition import NO_LEADER, Partition
from cluster.broker.waits import stop_tasks, wait_event
from cluster.core.errors import ErrorCode
from cluster.replication import EpochEndOffset, FetchAction, TruncationBelowHighWatermarkError
from cluster.transport.replica_fetch_grpc import (
    PartitionFetch,
    PartitionFetchResult,
    ReplicaFetchClient,
    ReplicaFetchRequest,
    ReplicaFetchResponse,
)

log = logging.getLogger("cluster.broker.replica_fetcher")

IDLE_POLL_S = 0.1          # re-check backoffs at least this often while nothing can be fetched
STOP_TIMEOUT_S = 1.0       # stop(): how long a cancelled fetch may take to end before it is abandoned
MAX_REQUESTS_IN_FLIGHT = 8  # per leader; each covers the partitions that were ready when it was sent
RPC_GRACE_S = 5.0          # a fetch's deadline: the leader's long-poll plus this


class ReplicaFetcherManager:
    """Routes each follower partition to the fetcher of its leader."""

    def __init__(self, node_id: int, cluster_id: str, address_of: Callable[[int], str | None],
                 broker_epoch: Callable[[], int], config, now_ms: Callable[[], int], fault=None) -> None:
        self.node_id = node_id
        self.cluster_id = cluster_id
        self._address_of = address_of
        self._broker_epoch = broker_epoch
        self._config = config
        self._now_ms = now_ms
        self._fault = fault
        self._fetchers: dict[int, ReplicaFetcher] = {}
        self._leader_of: dict[int, int] = {}   # id(partition) -> leader it is fetched from

    def update(self, partition: Partition) -> None:
        """The partition follows ``partition.leader_id`` (maybe a new one, maybe none)."""
        self.remove(partition)
        leader_id = partition.leader_id
        if partition.follower_state is None or leader_id in (NO_LEADER, self.node_id):
            return
        fetcher = self._fetchers.get(leader_id)
        if fetcher is None:
            address = self._address_of(leader_id)
            if address is None:
                log.error("%s: no inter-node address for leader %d (not a controller.quorum.voters member); "
                          "cannot replicate", partition, leader_id)
                return
            fetcher = self._fetchers[leader_id] = ReplicaFetcher(self, leader_id, address)
        fetcher.add(partition)
        self._leader_of[id(partition)] = leader_id

    def remove(self, partition: Partition) -> None:
        leader_id = self._leader_of.pop(id(partition), None)
        if leader_id is not None and leader_id in self._fetchers:
            self._fetchers[leader_id].discard(partition)

    def wake(self) -> None:
        for fetcher in self._fetchers.values():
            fetcher.wakeup.set()

    async def stop(self) -> None:
        for fetcher in list(self._fetchers.values()):
            await fetcher.stop()
        self._fetchers.clear()


class ReplicaFetcher:
    """Fetches every partition this broker follows from one leader, in one long-polled request at a time."""

    def __init__(self, manager: ReplicaFetcherManager, leader_id: int, address: str) -> None:
        self.manager = manager
        self.leader_id = leader_id
        self.partitions: dict[int, Partition] = {}
        self._requests: set[asyncio.Task] = set()
        self.wakeup = asyncio.Event()
        self._stopping = False
        self._client = ReplicaFetchClient.connect(address)
        self._task = asyncio.create_task(self._run(), name=f"replica-fetcher-{leader_id}")

    def add(self, partition: Partition) -> None:
        self.partitions[id(partition)] = partition
        partition.fetcher_wakeup = self.wakeup
        self.wakeup.set()

    def discard(self, partition: Partition) -> None:
        self.partitions.pop(id(partition), None)
        if getattr(partition, "fetcher_wakeup", None) is self.wakeup:
            partition.fetcher_wakeup = None

    async def stop(self) -> None:
        """Bounded (cluster/broker/waits.py says why the loop also ends on a flag)."""
        self._stopping = True
        self.wakeup.set()
        await stop_tasks((self._task, *self._requests), STOP_TIMEOUT_S)
        await self._client.close()

    async def _run(self) -> None:
        while not self._stopping:
            self.wakeup.clear()
            fetches = self._next_fetches(self.manager._now_ms()) \
                if len(self._requests) < MAX_REQUESTS_IN_FLIGHT else []
            if fetches:
                request = asyncio.create_task(self._fetch_guarded(fetches), name=f"replica-fetch-{self.leader_id}")
                self._requests.add(request)
                request.add_done_callback(self._requests.discard)
                continue
            await wait_event(self.wakeup, IDLE_POLL_S)

    async def _fetch_guarded(self, fetches) -> None:
        try:
            await self._fetch(fetches)
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - the fetcher must outlive any one failure
            log.exception("replica fetch from leader %d failed; retrying", self.leader_id)
            now_ms = self.manager._now_ms()
            for partition, position in fetches:
                if partition.follower_state is not None:
                    partition.follower_state.on_fetch_failed(position, now_ms)
        finally:
            self.wakeup.set()   # the answered partitions may be ready again

    def _next_fetches(self, now_ms: int) -> list[tuple[Partition, object]]:
        fetches = []
        for partition in list(self.partitions.values()):
            state = partition.follower_state
            if partition.deleted or state is None or state.leader_id != self.leader_id:
                continue
            position = partition.replica.next_fetch(now_ms)
            if position is not None:
                fetches.append((partition, position))
        return fetches

    async def _fetch(self, fetches) -> None:
        manager = self.manager
        config = manager._config
        max_wait_ms = config.get("replica.fetch.wait.max.ms")
        request = ReplicaFetchRequest(
            manager.cluster_id, manager.node_id, manager._broker_epoch(), max_wait_ms,
            config.get("replica.fetch.response.max.bytes"),
            [PartitionFetch(p.topic_id, p.partition_index, pos.current_leader_epoch, pos.fetch_offset,
                            pos.last_fetched_epoch, pos.log_start_offset, config.get("replica.fetch.max.bytes"),
                            pos.durable_log_end_offset)
             for p, pos in fetches])
        try:
            if manager._fault is not None and manager._fault.blocks(self.leader_id):
                await asyncio.sleep(max_wait_ms / 1000)
                raise ConnectionError("dropped by the test fault hook")
            response = await self._client.fetch(request, max_wait_ms / 1000 + RPC_GRACE_S)
        except (grpc.aio.AioRpcError, ConnectionError) as exc:
            log.debug("fetch from leader %d failed: %s", self.leader_id, exc)
            now_ms = manager._now_ms()
            for partition, position in fetches:
                if partition.follower_state is not None:
                    partition.follower_state.on_fetch_failed(position, now_ms)
            return
        self._handle_response(fetches, response)

    def _handle_response(self, fetches, response: ReplicaFetchResponse) -> None:
        now_ms = self.manager._now_ms()
        by_key = {(r.topic_id, r.partition): r for r in response.partitions}
        for partition, position in fetches:
            state = partition.follower_state
            if state is None or partition.deleted:
                continue
            result = by_key.get((partition.topic_id, partition.partition_index))
            if result is None or response.error_code != 0:
                state.on_fetch_failed(position, now_ms)
                continue
            self._handle_partition(partition, state, position, result, now_ms)

    def _handle_partition(self, partition: Partition, state, position, result: PartitionFetchResult,
                          now_ms: int) -> None:
        diverging = None if result.diverging_epoch is None else EpochEndOffset(*result.diverging_epoch)
        try:
            outcome = state.on_fetch_response(position, now_ms, partition, error_code=ErrorCode(result.error_code),
                                              high_watermark=result.high_watermark,
                                              log_start_offset=result.log_start_offset, diverging_epoch=diverging)
        except TruncationBelowHighWatermarkError as exc:
            # Never drop committed data (KIP-101): stop replicating this partition and say so loudly.
            log.critical("%s: %s; replication of this partition stopped", partition, exc)
            self.discard(partition)
            return
        action = outcome.action
        if action is FetchAction.APPEND:
            started = time.perf_counter()
            try:
                partition.append_as_follower(result.records, now_ms)
            except Exception:
                state.on_records_appended(partition)   # leave the append state; the next fetch retries from our end
                raise
            state.on_records_appended(partition, result.log_end_offset)
            if state.fetch_ahead:
                self.wakeup.set()   # the leader has more: fetch it while this append is being fsynced
            if not result.records:
                self.wakeup.set()   # nothing to fsync: fetch again at once (the leader long-polls)
            elapsed = time.perf_counter() - started
            if elapsed > 0.5:
                log.warning("%s: appending %d fetched bytes took %.2f s", partition, len(result.records), elapsed)
        elif action is FetchAction.TRUNCATE:
            partition.truncate_to(outcome.offset)
            self.wakeup.set()
        elif action is FetchAction.RESET:
            partition.reset_to(outcome.offset)
        elif action in (FetchAction.BACKOFF, FetchAction.AWAIT_METADATA):
            log.debug("%s: fetch from leader %d answered %s", partition, self.leader_id,
                      ErrorCode(result.error_code).name)
