"""AlterPartitionReassignments, ListPartitionReassignments (KIP-455) and ElectLeaders (KIP-460).

Why it exists: these admin APIs change or read replica placement and leadership, which only the active
controller decides, so every handler here forwards to it through the controller channel and maps
the per-partition results back onto Kafka's response shapes (a single node is a one-voter quorum: its own
controller answers).

Kafka's semantics kept here: a null replica list cancels a reassignment (NO_REASSIGNMENT_IN_PROGRESS when
there is none); a null topic list means "all" for List and ElectLeaders, and ElectLeaders then reports only
the partitions whose leader it moved.  ElectLeaders v0 has no election type (preferred) and no top-level error.
"""

from __future__ import annotations

from cluster.broker.handlers.context import RequestContext
from cluster.core.errors import ErrorCode, KafkaError
from cluster.wire.messages import alter_partition_reassignments_response as aprr
from cluster.wire.messages import elect_leaders_response as elr
from cluster.wire.messages import list_partition_reassignments_response as lprr

CONTROLLER_CALL_TIMEOUT_MS = 10_000  # as cluster_mode's: a request never waits longer for the controller
ELECTION_PREFERRED, ELECTION_UNCLEAN = 0, 1
LEADER_VISIBLE_TIMEOUT_S = 2.0  # an elected leader shows in this broker's metadata before we answer


def _timeout_ms(request_timeout_ms: int) -> int:
    return CONTROLLER_CALL_TIMEOUT_MS if request_timeout_ms <= 0 else min(request_timeout_ms,
                                                                            CONTROLLER_CALL_TIMEOUT_MS)


async def _ask_controller(context: RequestContext, op: str, args: dict, request_timeout_ms: int):
    """The active controller's answer to ``op``, or the KafkaError the call failed with."""
    try:
        return await context.services.controller.call_controller(op, args, timeout_ms=_timeout_ms(request_timeout_ms))
    except KafkaError as exc:
        return exc


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
    results = await _ask_controller(context, "alter_reassignments", {"partitions": wanted}, request.timeout_ms)
    if isinstance(results, KafkaError):
        return aprr.AlterPartitionReassignmentsResponse(error_code=results.error_code,
                                                        error_message=results.message or None, responses=[])
    return aprr.AlterPartitionReassignmentsResponse(
        throttle_time_ms=0, error_code=0, error_message=None,
        responses=[aprr.ReassignableTopicResponse(name=topic, partitions=[
            aprr.ReassignablePartitionResponse(partition_index=p, error_code=code, error_message=message)
            for p, code, message in partitions]) for topic, partitions in _group_by_topic(results).items()])


# ---- ListPartitionReassignments ------------------------------------------------------------------------------------


async def handle_list_partition_reassignments(context: RequestContext, request) -> lprr.ListPartitionReassignmentsResponse:
    wanted = None
    if request.topics is not None:
        wanted = [[t.name, p] for t in request.topics for p in t.partition_indexes]
    ongoing = await _ask_controller(context, "list_reassignments", {"partitions": wanted}, request.timeout_ms)
    if isinstance(ongoing, KafkaError):
        return lprr.ListPartitionReassignmentsResponse(error_code=ongoing.error_code,
                                                       error_message=ongoing.message or None, topics=[])
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
    services = context.services
    if election_type not in (ELECTION_PREFERRED, ELECTION_UNCLEAN):
        results = [[t, p, ErrorCode.INVALID_REQUEST, f"unknown election type {election_type}"]
                   for t, p in (wanted or [])]
    else:
        results = await _ask_controller(context, "elect_leaders",
                                        {"election_type": election_type, "partitions": wanted}, request.timeout_ms)
        if isinstance(results, KafkaError):
            if context.api_version >= 1:
                return elr.ElectLeadersResponse(error_code=results.error_code, replica_election_results=[])
            results = [[t, p, results.error_code, results.message] for t, p in (wanted or [])]
        if election_type == ELECTION_PREFERRED:
            elected = [(t, p) for t, p, code, _m in results if code == ErrorCode.NONE]
            await _until_leaders_visible(services.metadata, elected)
    return elr.ElectLeadersResponse(
        throttle_time_ms=0, error_code=0,
        replica_election_results=[elr.ReplicaElectionResult(topic=topic, partition_result=[
            elr.PartitionResult(partition_id=p, error_code=code, error_message=message)
            for p, code, message in partitions]) for topic, partitions in _group_by_topic(results).items()])


async def _until_leaders_visible(metadata, partitions: list[tuple[str, int]]) -> None:
    """A client that reads metadata right after ElectLeaders should see the leaders it asked for."""
    def visible() -> bool:
        for topic, partition in partitions:
            image_topic = metadata.image.topics.get_topic(topic)
            registration = None if image_topic is None else image_topic.partitions.get(partition)
            if registration is not None and registration.leader != registration.replicas[0]:
                return False
        return True

    if partitions:
        await metadata.wait_for_metadata(visible, LEADER_VISIBLE_TIMEOUT_S)
