"""AlterPartitionReassignments, ListPartitionReassignments (KIP-455) and ElectLeaders (KIP-460).

Why it exists: these admin APIs change or read replica placement and leadership, which only the active
controller decides, so every handler here forwards to it through ``broker.cluster.controller_channel`` and maps
the per-partition results back onto Kafka's response shapes.  A single-node broker (no cluster) has one replica
per partition on itself: it answers as Kafka would for such a cluster (nothing to move, no election needed,
any other broker id is not registered) without a controller.

Kafka's semantics kept here: a null replica list cancels a reassignment (NO_REASSIGNMENT_IN_PROGRESS when
there is none); a null topic list means "all" for List and ElectLeaders, and ElectLeaders then reports only
the partitions whose leader it moved.  ElectLeaders v0 has no election type (preferred) and no top-level error.
"""

from __future__ import annotations

import asyncio
import time

from cluster.broker.handlers.context import RequestContext
from cluster.core.errors import ErrorCode, KafkaError
from cluster.metadata.controller_api import (
    AlterReassignmentsRequest,
    ElectLeadersRequest,
    ListReassignmentsRequest,
    ReassignmentTarget,
)
from cluster.wire.messages import alter_partition_reassignments_response as aprr
from cluster.wire.messages import elect_leaders_response as elr
from cluster.wire.messages import list_partition_reassignments_response as lprr

CONTROLLER_CALL_TIMEOUT_MS = 10_000  # as cluster_mode's: a request never waits longer for the controller
ELECTION_PREFERRED, ELECTION_UNCLEAN = 0, 1
LEADER_VISIBLE_TIMEOUT_S = 2.0  # an elected leader shows in this broker's metadata before we answer


def _timeout_ms(request_timeout_ms: int) -> int:
    return CONTROLLER_CALL_TIMEOUT_MS if request_timeout_ms <= 0 else min(request_timeout_ms,
                                                                            CONTROLLER_CALL_TIMEOUT_MS)


def _group_by_topic(results) -> dict[str, list]:
    """[[topic, partition, ...]] -> {topic: [[partition, ...]]}, in first-seen topic order."""
    grouped: dict[str, list] = {}
    for topic, partition, *rest in results:
        grouped.setdefault(topic, []).append([partition, *rest])
    return grouped


# ---- AlterPartitionReassignments -----------------------------------------------------------------------------------


async def handle_alter_partition_reassignments(context: RequestContext, request) -> aprr.AlterPartitionReassignmentsResponse:
    wanted = [[t.name, p.partition_index, None if p.replicas is None else list(p.replicas)]
              for t in request.topics for p in t.partitions]
    cluster = getattr(context.broker, "cluster", None)
    if cluster is None:
        results = [[t, p, *_single_node_reassignment(context, t, p, r)] for t, p, r in wanted]
    else:
        try:
            replies = await cluster.controller_channel.alter_partition_reassignments(AlterReassignmentsRequest(
                tuple(ReassignmentTarget(t, p, None if r is None else tuple(r)) for t, p, r in wanted)),
                timeout_ms=_timeout_ms(request.timeout_ms))
            results = [[r.topic, r.partition, r.error_code, r.error_message] for r in replies]
        except KafkaError as exc:
            return aprr.AlterPartitionReassignmentsResponse(error_code=exc.error_code,
                                                            error_message=exc.message or None, responses=[])
    return aprr.AlterPartitionReassignmentsResponse(
        throttle_time_ms=0, error_code=0, error_message=None,
        responses=[aprr.ReassignableTopicResponse(name=topic, partitions=[
            aprr.ReassignablePartitionResponse(partition_index=p, error_code=code, error_message=message)
            for p, code, message in partitions]) for topic, partitions in _group_by_topic(results).items()])


def _single_node_partition_exists(context: RequestContext, topic: str, partition: int) -> bool:
    record = context.broker.replica_manager.store.topics.get(topic)
    return record is not None and 0 <= partition < record.num_partitions


def _single_node_reassignment(context: RequestContext, topic: str, partition: int,
                              replicas: list[int] | None) -> tuple[int, str | None]:
    node_id = context.broker.config.node_id
    if not _single_node_partition_exists(context, topic, partition):
        return ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, f"Unable to find partition {topic}-{partition}."
    if replicas is None:
        return ErrorCode.NO_REASSIGNMENT_IN_PROGRESS, f"No ongoing reassignment for partition {topic}-{partition}."
    if replicas == [node_id]:
        return ErrorCode.NONE, None
    unknown = next((b for b in replicas if b != node_id), None)
    if unknown is None or len(replicas) != len(set(replicas)):
        return ErrorCode.INVALID_REPLICA_ASSIGNMENT, "the replicas must be distinct registered brokers"
    return (ErrorCode.INVALID_REPLICA_ASSIGNMENT,
            f"The manual partition assignment includes broker {unknown}, but no such broker is registered.")


# ---- ListPartitionReassignments ------------------------------------------------------------------------------------


async def handle_list_partition_reassignments(context: RequestContext, request) -> lprr.ListPartitionReassignmentsResponse:
    cluster = getattr(context.broker, "cluster", None)
    if cluster is None:
        ongoing = []  # one replica per partition: nothing can be moving
    else:
        wanted = None
        if request.topics is not None:
            wanted = [[t.name, p] for t in request.topics for p in t.partition_indexes]
        try:
            replies = await cluster.controller_channel.list_partition_reassignments(ListReassignmentsRequest(
                None if wanted is None else tuple((t, p) for t, p in wanted)), timeout_ms=_timeout_ms(request.timeout_ms))
            ongoing = [[r.topic, r.partition, r.replicas, r.adding_replicas, r.removing_replicas] for r in replies]
        except KafkaError as exc:
            return lprr.ListPartitionReassignmentsResponse(error_code=exc.error_code,
                                                           error_message=exc.message or None, topics=[])
    return lprr.ListPartitionReassignmentsResponse(
        throttle_time_ms=0, error_code=0, error_message=None,
        topics=[lprr.OngoingTopicReassignment(name=topic, partitions=[
            lprr.OngoingPartitionReassignment(partition_index=p, replicas=list(replicas),
                                              adding_replicas=list(adding), removing_replicas=list(removing))
            for p, replicas, adding, removing in partitions]) for topic, partitions in _group_by_topic(ongoing).items()])


# ---- ElectLeaders --------------------------------------------------------------------------------------------------


async def handle_elect_leaders(context: RequestContext, request) -> elr.ElectLeadersResponse:
    election_type = request.election_type if context.api_version >= 1 else ELECTION_PREFERRED
    wanted = None
    if request.topic_partitions is not None:
        wanted = [[t.topic, p] for t in request.topic_partitions for p in t.partitions]
    cluster = getattr(context.broker, "cluster", None)
    if election_type not in (ELECTION_PREFERRED, ELECTION_UNCLEAN):
        results = [[t, p, ErrorCode.INVALID_REQUEST, f"unknown election type {election_type}"]
                   for t, p in (wanted or [])]
    elif cluster is None:
        results = [[t, p, *_single_node_election(context, t, p)] for t, p in (wanted or [])]
    else:
        try:
            replies = await cluster.controller_channel.elect_leaders(ElectLeadersRequest(
                election_type, None if wanted is None else tuple((t, p) for t, p in wanted)),
                timeout_ms=_timeout_ms(request.timeout_ms))
            results = [[r.topic, r.partition, r.error_code, r.error_message] for r in replies]
        except KafkaError as exc:
            if context.api_version >= 1:
                return elr.ElectLeadersResponse(error_code=exc.error_code, replica_election_results=[])
            results = [[t, p, exc.error_code, exc.message] for t, p in (wanted or [])]
        if election_type == ELECTION_PREFERRED:
            await _until_leaders_visible(cluster, [(t, p) for t, p, code, _m in results if code == ErrorCode.NONE])
    return elr.ElectLeadersResponse(
        throttle_time_ms=0, error_code=0,
        replica_election_results=[elr.ReplicaElectionResult(topic=topic, partition_result=[
            elr.PartitionResult(partition_id=p, error_code=code, error_message=message)
            for p, code, message in partitions]) for topic, partitions in _group_by_topic(results).items()])


def _single_node_election(context: RequestContext, topic: str, partition: int) -> tuple[int, str | None]:
    if not _single_node_partition_exists(context, topic, partition):
        return ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, f"Unable to find partition {topic}-{partition}."
    return ErrorCode.ELECTION_NOT_NEEDED, "Leader election not needed for topic partition."


async def _until_leaders_visible(cluster, partitions: list[tuple[str, int]]) -> None:
    """A client that reads metadata right after ElectLeaders should see the leaders it asked for."""
    def visible() -> bool:
        for topic, partition in partitions:
            image_topic = cluster.image.topics.get_topic(topic)
            registration = None if image_topic is None else image_topic.partitions.get(partition)
            if registration is not None and registration.leader != registration.replicas[0]:
                return False
        return True

    deadline = time.monotonic() + LEADER_VISIBLE_TIMEOUT_S
    while partitions and not visible() and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
