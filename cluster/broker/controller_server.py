"""The active controller's side of the controller service: one typed method per RPC, as Kafka's ``QuorumController``.

Why it exists: every node runs one, but only the Raft leader (the active controller) answers; the others refuse with
NotControllerError naming the leader they know.  Each method decides from the committed image
(``QuorumController``, pure), proposes the records, and answers only after they commit and have been replayed on
this node.  Decisions are serialised by one lock and each waits for the previous one's commit: simpler than Kafka's
pipelined replay-before-commit, and metadata writes are rare.  After winning an election the controller decides
nothing until everything the log held when it became leader is applied.

The same methods serve a call from this node's own broker (cluster/broker/controller_channel.py calls them
directly) and from the network (cluster/transport/controller_grpc.py converts the proto messages and calls them).
Here too run the controller's timers (``run_ticks``): fencing brokers whose session expired, and the periodic
preferred-leader rebalance.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import grpc

from cluster.broker.raft_driver import NotLeaderError, RaftDriver
from cluster.core.clock import monotonic_ms
from cluster.core.errors import ErrorCode, KafkaError
from cluster.metadata import (
    AlterPartitionResult,
    ControllerConfig,
    ControllerResult,
    CreateTopicResult,
    HeartbeatResult,
    QuorumController,
)
from cluster.metadata.controller_api import (
    AllocateProducerIdsRequest,
    AlterPartitionRequest,
    AlterReassignmentsRequest,
    ApiError,
    BrokerHeartbeatRequest,
    CreatePartitionsRequest,
    CreateTopicsRequest,
    DeleteTopicsRequest,
    DescribeQuorumRequest,
    ElectLeadersRequest,
    ListReassignmentsRequest,
    PartitionReassignment,
    PartitionResult,
    ProducerIdsBlock,
    RegisterBrokerRequest,
    RegisterBrokerResult,
    TopicError,
)
from cluster.metadata.records import encode_batch
from cluster.raft import QuorumInfo
from cluster.raft.state import Role
from cluster.transport.raft_grpc import FaultFilter

log = logging.getLogger("cluster.broker.controller")

CONTROLLER_CALL_TIMEOUT_MS = 10_000


def old_failover_bug(config) -> bool:
    """The deliberate bug the fault harnesses must catch (``kraftpy.test.broken=short_session_on_new_controller``):
    the whole failover of before issue 16, half a session on a new controller (here) and brokers that wait on a
    frozen controller until their call's deadline (ControllerChannel, BrokerLifecycleManager)."""
    return "short_session_on_new_controller" in config.get("kraftpy.test.broken")


class NotControllerError(KafkaError):
    def __init__(self, leader_id: int | None) -> None:
        super().__init__(ErrorCode.NOT_CONTROLLER, f"not the active controller (leader {leader_id})")
        self.leader_id = leader_id


def _partition_results(results) -> tuple[PartitionResult, ...]:
    """QuorumController's {(topic, partition): (error_code, message)} as typed results."""
    return tuple(PartitionResult(topic, partition, ErrorCode(code), message)
                 for (topic, partition), (code, message) in results.items())


class ControllerServer:
    """The controller service of one node (answers only while this node leads the metadata quorum)."""

    def __init__(self, config, cluster_id: str, fault: FaultFilter, rng,
                 wait_applied: Callable[[int, float], Awaitable[None]]) -> None:
        self.config = config
        self.cluster_id = cluster_id
        self.controller = QuorumController(ControllerConfig(
            broker_session_timeout_ms=config.get("broker.session.timeout.ms"),
            num_partitions=config.get("num.partitions"),
            default_replication_factor=config.get("default.replication.factor"),
            unclean_leader_election_enable=bool(config.get("unclean.leader.election.enable")),
            delete_topic_enable=bool(config.get("delete.topic.enable"))), rng=rng)
        self.driver: RaftDriver | None = None   # set once the metadata quorum starts
        self._fault = fault
        self._wait_applied = wait_applied
        self._lock = asyncio.Lock()
        self._leader_start_offset = 0
        self._short_session_on_new_controller = old_failover_bug(config)   # see on_became_leader

    # -- leadership ----------------------------------------------------------------------------------------------
    def is_active_controller(self) -> bool:
        return self.driver is not None and self.driver.role is Role.LEADER

    def on_became_leader(self, log_end_offset: int) -> None:
        """This node won an election with ``log_end_offset`` entries in its log: decisions wait until they are
        applied, and every registered broker gets a whole session from now, as Kafka's BrokerHeartbeatManager
        starts empty on a new active controller (the brokers may still be waiting on the old controller)."""
        self._leader_start_offset = log_end_offset
        grace_ms = None
        if self._short_session_on_new_controller:   # the deliberate bug: half a session
            grace_ms = max(self.controller.config.broker_session_timeout_ms // 2,
                           2 * self.config.get("broker.heartbeat.interval.ms"))
        self.controller.reset_sessions(monotonic_ms(), grace_ms)

    async def decide(self, decide):
        """Runs ``decide(controller) -> ControllerResult`` and commits its records; returns the response.

        Every RPC below goes through here; so do the controller's timers and a one-off write such as the
        conversion of a legacy metadata file (cluster/broker/legacy_metadata.py)."""
        async with self._lock:
            if not self.is_active_controller():
                raise NotControllerError(self.driver.leader_id)
            await self._wait_applied(self._leader_start_offset, CONTROLLER_CALL_TIMEOUT_MS / 1000)
            result = decide(self.controller)
            if result.records:
                try:
                    offset = await self.driver.propose(encode_batch(result.records), CONTROLLER_CALL_TIMEOUT_MS)
                except NotLeaderError as exc:
                    raise NotControllerError(exc.leader_id) from None
                except TimeoutError:
                    raise KafkaError(ErrorCode.REQUEST_TIMED_OUT, "metadata records did not commit in time") from None
                await self._wait_applied(offset + 1, CONTROLLER_CALL_TIMEOUT_MS / 1000)
            return result.response

    # -- serving the network -------------------------------------------------------------------------------------
    async def admit(self, method: str, cluster_id: str | None, source_id: int | None, context) -> None:
        """A call from the network is served only from our own cluster (a tool's describe_quorum names none)."""
        if self._fault.blocks(source_id):
            await context.abort(grpc.StatusCode.UNAVAILABLE, "dropped by the test fault hook")
        if cluster_id != self.cluster_id and method != "describe_quorum":
            log.error("controller call %s from a node of cluster %r refused: this is cluster %r",
                      method, cluster_id, self.cluster_id)
            raise KafkaError(ErrorCode.INCONSISTENT_CLUSTER_ID, "wrong cluster id")

    # -- the RPCs ------------------------------------------------------------------------------------------------
    # Broker sessions run on monotonic time (a skewed wall clock must not expire them), read when the decision
    # runs: a heartbeat that waited for the controller's lock still counts from when it was decided.
    async def register_broker(self, request: RegisterBrokerRequest) -> RegisterBrokerResult:
        error, epoch = await self.decide(lambda c: c.register_broker(
            request.broker_id, request.incarnation_id, list(request.endpoints), request.rack, monotonic_ms(),
            max(self.driver.store.log_end_offset, 0)))
        return RegisterBrokerResult(ErrorCode(error), epoch)

    async def broker_heartbeat(self, request: BrokerHeartbeatRequest) -> HeartbeatResult:
        return await self.decide(lambda c: c.broker_heartbeat(
            request.broker_id, request.broker_epoch, request.current_metadata_offset, False, request.want_shutdown,
            monotonic_ms()))

    async def create_topics(self, request: CreateTopicsRequest) -> tuple[CreateTopicResult, ...]:
        return tuple(await self.decide(lambda c: c.create_topics(request.topics, request.validate_only)))

    async def delete_topics(self, request: DeleteTopicsRequest) -> tuple[TopicError, ...]:
        results = await self.decide(lambda c: c.delete_topics(request.names))
        return tuple(TopicError(name, ErrorCode(code), message) for name, (code, message) in results.items())

    async def create_partitions(self, request: CreatePartitionsRequest) -> ApiError:
        code, message = await self.decide(lambda c: c.create_partitions(
            request.name, request.count, request.assignments))
        return ApiError(ErrorCode(code), message)

    async def allocate_producer_ids(self, request: AllocateProducerIdsRequest) -> ProducerIdsBlock:
        code, start, length = await self.decide(lambda c: c.allocate_producer_ids(
            request.broker_id, request.broker_epoch))
        return ProducerIdsBlock(ErrorCode(code), start, length)

    async def alter_partition(self, request: AlterPartitionRequest) -> AlterPartitionResult:
        return await self.decide(lambda c: c.alter_partition(
            request.broker_id, request.broker_epoch, request.topic_id, request.partition, request.leader_epoch,
            request.partition_epoch, [m.broker_id for m in request.new_isr],
            {m.broker_id: m.broker_epoch for m in request.new_isr}))

    async def describe_quorum(self, request: DescribeQuorumRequest) -> QuorumInfo:
        if not self.is_active_controller():
            raise NotControllerError(self.driver.leader_id)
        return self.driver.quorum_info()

    async def alter_partition_reassignments(self, request: AlterReassignmentsRequest) -> tuple[PartitionResult, ...]:
        targets = [(t.topic, t.partition, t.replicas) for t in request.partitions]
        return _partition_results(await self.decide(lambda c: c.alter_partition_reassignments(targets)))

    async def list_partition_reassignments(
            self, request: ListReassignmentsRequest) -> tuple[PartitionReassignment, ...]:
        # A read: run under the lock (so it sees every earlier decision committed), commit nothing.
        found = await self.decide(lambda c: ControllerResult((), c.list_partition_reassignments(request.partitions)))
        return tuple(PartitionReassignment(topic, partition, r.replicas, r.adding_replicas, r.removing_replicas)
                     for (topic, partition), r in sorted(found.items()))

    async def elect_leaders(self, request: ElectLeadersRequest) -> tuple[PartitionResult, ...]:
        return _partition_results(await self.decide(lambda c: c.elect_leaders(
            request.election_type, request.partitions)))

    # -- timers --------------------------------------------------------------------------------------------------
    async def run_ticks(self) -> None:
        """On the active controller: fence brokers whose session expired; every
        ``leader.imbalance.check.interval.seconds`` (with ``auto.leader.rebalance.enable``) move leadership
        back to preferred replicas on brokers above ``leader.imbalance.per.broker.percentage``."""
        config = self.config
        rebalance = bool(config.get("auto.leader.rebalance.enable"))
        interval_ms = config.get("leader.imbalance.check.interval.seconds") * 1000
        percentage = config.get("leader.imbalance.per.broker.percentage")
        next_rebalance_ms = monotonic_ms() + interval_ms
        # A dead broker is fenced (and its leaderships move) at most a tenth of its session late.
        tick_s = min(0.5, config.get("broker.session.timeout.ms") / 10_000)
        while True:
            await asyncio.sleep(tick_s)
            if not self.is_active_controller():
                continue
            try:
                fenced = await self.decide(lambda c: c.tick(monotonic_ms()))
                if fenced:
                    log.warning("fenced brokers %s: session expired", list(fenced))
                if rebalance and monotonic_ms() >= next_rebalance_ms:
                    next_rebalance_ms = monotonic_ms() + interval_ms
                    moved = await self.decide(lambda c: c.rebalance_leaders(percentage))
                    if moved:
                        log.info("preferred leader election moved %d partition(s): %s", len(moved), list(moved))
            except KafkaError as exc:
                log.debug("controller tick: %s", exc)
