"""A broker's way to the active controller, wherever it is (Kafka's ``NodeToControllerChannelManager``).

Why it exists: handlers, the broker lifecycle and the partition leaders call the controller with typed requests
and get typed results (cluster/metadata/controller_api.py), without knowing whether the active controller is
this node (the call runs on the local ``ControllerServer``) or another voter (the call goes over gRPC).  The
channel follows the metadata quorum: a call to another node is abandoned as soon as this node's Raft sees a new
quorum leader (a frozen controller never answers; its successor should hear from us at once, issue 16), a
follower's NOT_CONTROLLER answer names the leader to ask next, and while no leader is known the voters are asked
in turn, until the call's deadline.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import grpc

from cluster.broker.controller_server import CONTROLLER_CALL_TIMEOUT_MS, ControllerServer, NotControllerError
from cluster.core.clock import monotonic_ms
from cluster.core.errors import ErrorCode, KafkaError
from cluster.metadata import AlterPartitionResult, CreateTopicResult, HeartbeatResult
from cluster.metadata.controller_api import (
    AllocateProducerIdsRequest,
    AlterPartitionRequest,
    AlterReassignmentsRequest,
    ApiError,
    BrokerHeartbeatRequest,
    CreatePartitionsRequest,
    CreateTopicsRequest,
    DeleteTopicsRequest,
    ElectLeadersRequest,
    ListReassignmentsRequest,
    PartitionReassignment,
    PartitionResult,
    ProducerIdsBlock,
    RegisterBrokerRequest,
    RegisterBrokerResult,
    TopicError,
)
from cluster.transport.controller_grpc import ControllerClient
from cluster.transport.raft_grpc import FaultFilter

RETRY_BACKOFF_S = 0.05


class ControllerMovedError(KafkaError):
    """A controller call abandoned because the quorum leader changed while it was under way."""

    def __init__(self, old_leader_id: int, new_leader_id: int | None) -> None:
        super().__init__(ErrorCode.NOT_CONTROLLER,
                         f"quorum leader moved from {old_leader_id} to {new_leader_id} during the call")


class ControllerChannel:
    """Typed controller calls from this node; see the module docstring for where they go."""

    def __init__(self, node_id: int, voters: dict, cluster_id: str, server: ControllerServer | None,
                 leader_id: Callable[[], int | None], fault: FaultFilter, *,
                 broker_epoch: Callable[[], int] = lambda: -1, waits_on_a_moved_controller: bool = False) -> None:
        self.node_id = node_id
        self.voters = voters                  # node id -> Voter (its inter-node address)
        self.cluster_id = cluster_id
        self._server = server                 # this node's controller service
        self._leader_id = leader_id           # the quorum leader our Raft knows (None: none yet)
        self._fault = fault
        self._broker_epoch = broker_epoch     # this broker's registration (producer id blocks are asked with it)
        self._producer_ids: tuple[int, int] = (0, 0)   # next, end of this broker's current block
        self._clients: dict[int, ControllerClient] = {}
        self._controller_moved = asyncio.Event()   # set (and replaced) whenever the quorum leader changes
        # A deliberate bug for the fault harnesses (kraftpy.test.broken=short_session_on_new_controller): brokers
        # wait on a frozen controller until their call's deadline, as before issue 16.
        self._waits_on_a_moved_controller = waits_on_a_moved_controller

    # -- the quorum leader moves -----------------------------------------------------------------------------------
    @property
    def controller_moved(self) -> asyncio.Event:
        """Set when the quorum leader next changes (a fresh event after each change)."""
        return self._controller_moved

    def on_controller_moved(self) -> None:
        """Our Raft names a new quorum leader: calls under way to the old one are abandoned, and the next call
        goes to the new one at once."""
        self._controller_moved.set()
        self._controller_moved = asyncio.Event()

    async def close(self) -> None:
        for client in self._clients.values():
            await client.close()

    # -- the typed calls -------------------------------------------------------------------------------------------
    async def register_broker(self, request: RegisterBrokerRequest, *,
                              timeout_ms: int = CONTROLLER_CALL_TIMEOUT_MS) -> RegisterBrokerResult:
        return await self._call("register_broker", request, timeout_ms)

    async def broker_heartbeat(self, request: BrokerHeartbeatRequest, *, timeout_ms: int = CONTROLLER_CALL_TIMEOUT_MS,
                               attempt_timeout_ms: int | None = None) -> HeartbeatResult:
        return await self._call("broker_heartbeat", request, timeout_ms, attempt_timeout_ms)

    async def create_topics(self, request: CreateTopicsRequest, *,
                            timeout_ms: int = CONTROLLER_CALL_TIMEOUT_MS) -> tuple[CreateTopicResult, ...]:
        return await self._call("create_topics", request, timeout_ms)

    async def delete_topics(self, request: DeleteTopicsRequest, *,
                            timeout_ms: int = CONTROLLER_CALL_TIMEOUT_MS) -> tuple[TopicError, ...]:
        return await self._call("delete_topics", request, timeout_ms)

    async def create_partitions(self, request: CreatePartitionsRequest, *,
                                timeout_ms: int = CONTROLLER_CALL_TIMEOUT_MS) -> ApiError:
        return await self._call("create_partitions", request, timeout_ms)

    async def allocate_producer_ids(self, request: AllocateProducerIdsRequest, *,
                                    timeout_ms: int = CONTROLLER_CALL_TIMEOUT_MS) -> ProducerIdsBlock:
        return await self._call("allocate_producer_ids", request, timeout_ms)

    async def alter_partition(self, request: AlterPartitionRequest, *,
                              timeout_ms: int = CONTROLLER_CALL_TIMEOUT_MS) -> AlterPartitionResult:
        return await self._call("alter_partition", request, timeout_ms)

    async def alter_partition_reassignments(
            self, request: AlterReassignmentsRequest, *,
            timeout_ms: int = CONTROLLER_CALL_TIMEOUT_MS) -> tuple[PartitionResult, ...]:
        return await self._call("alter_partition_reassignments", request, timeout_ms)

    async def list_partition_reassignments(
            self, request: ListReassignmentsRequest, *,
            timeout_ms: int = CONTROLLER_CALL_TIMEOUT_MS) -> tuple[PartitionReassignment, ...]:
        return await self._call("list_partition_reassignments", request, timeout_ms)

    async def elect_leaders(self, request: ElectLeadersRequest, *,
                            timeout_ms: int = CONTROLLER_CALL_TIMEOUT_MS) -> tuple[PartitionResult, ...]:
        return await self._call("elect_leaders", request, timeout_ms)

    async def next_producer_id(self) -> int:
        """A producer id for InitProducerId, from this broker's current block (a new block when it is used up)."""
        next_id, end = self._producer_ids
        if next_id >= end:
            block = await self.allocate_producer_ids(AllocateProducerIdsRequest(self.node_id, self._broker_epoch()))
            if block.error_code != ErrorCode.NONE:
                raise KafkaError(block.error_code, "producer id block refused")
            next_id, end = block.producer_id_start, block.producer_id_start + block.producer_id_len
        self._producer_ids = (next_id + 1, end)
        return next_id

    # -- routing ---------------------------------------------------------------------------------------------------
    async def _call(self, method: str, request, timeout_ms: int, attempt_timeout_ms: int | None = None):
        """Runs ``method`` on the active controller, wherever it is; retries while there is none.

        A call to another node is abandoned as soon as our Raft sees a new quorum leader, and after
        ``attempt_timeout_ms`` if given.  Raises KafkaError(NOT_CONTROLLER) (retriable) when no controller
        answered within ``timeout_ms``.
        """
        deadline_ms = monotonic_ms() + timeout_ms
        last_error = "no metadata quorum leader"
        others = [voter for voter in self.voters if voter != self.node_id]
        probes, hint = 0, None
        while (remaining_ms := deadline_ms - monotonic_ms()) > 0:
            leader = self._leader_id()
            if leader is None and others:
                # Our Raft knows no leader (yet): ask the voters in turn; a follower's NOT_CONTROLLER names it.
                leader, hint = (hint if hint is not None else others[probes % len(others)]), None
                probes += 1
            try:
                if leader == self.node_id:
                    return await getattr(self._server, method)(request)
                if leader is not None and self._waits_on_a_moved_controller:   # the deliberate bug, see __init__
                    return await self._remote_call(leader, method, request, remaining_ms / 1000)
                if leader is not None:
                    attempt_ms = remaining_ms if attempt_timeout_ms is None else min(remaining_ms, attempt_timeout_ms)
                    return await self._call_until_controller_moves(leader, method, request, attempt_ms / 1000)
            except ControllerMovedError as exc:
                last_error = exc.message
                continue   # straight to the new leader
            except NotControllerError as exc:
                last_error = exc.message
                if exc.leader_id not in (None, leader, self.node_id):
                    hint = exc.leader_id
            except grpc.aio.AioRpcError as exc:
                last_error = f"controller {leader} unreachable: {exc.code()}"
            await asyncio.sleep(RETRY_BACKOFF_S)
        raise KafkaError(ErrorCode.NOT_CONTROLLER, f"no active controller answered {method}: {last_error}")

    async def _call_until_controller_moves(self, leader: int, method: str, request, timeout_s: float):
        """``_remote_call``, abandoned with ControllerMovedError when the quorum leader changes meanwhile."""
        moved = self._controller_moved
        call = asyncio.ensure_future(self._remote_call(leader, method, request, timeout_s))
        watch = asyncio.ensure_future(moved.wait())
        try:
            await asyncio.wait((call, watch), return_when=asyncio.FIRST_COMPLETED)
        finally:
            watch.cancel()
            abandoned = not call.done()
            if abandoned:
                call.cancel()   # takes effect when the call next runs: it is not done yet after this line
        if abandoned:
            raise ControllerMovedError(leader, self._leader_id())
        return call.result()

    async def _remote_call(self, leader: int, method: str, request, timeout_s: float):
        if self._fault.blocks(leader):   # test fault hook: as if the network lost the call
            await asyncio.sleep(min(timeout_s, 0.1))
            raise grpc.aio.AioRpcError(grpc.StatusCode.UNAVAILABLE, grpc.aio.Metadata(), grpc.aio.Metadata(),
                                       "dropped by the test fault hook")
        client = self._clients.get(leader)
        if client is None:
            client = self._clients[leader] = ControllerClient.connect(self.voters[leader].address)
        reply = await client.call(method, request, cluster_id=self.cluster_id, source_id=self.node_id,
                                  timeout_s=timeout_s)
        if reply.error_code == ErrorCode.NOT_CONTROLLER:
            raise NotControllerError(reply.leader_id)
        if reply.error_code != 0:
            raise KafkaError(ErrorCode(reply.error_code), reply.error_message)
        return reply.result
