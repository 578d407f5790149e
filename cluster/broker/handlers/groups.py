"""Consumer-group APIs: FindCoordinator, JoinGroup, SyncGroup, Heartbeat, LeaveGroup, OffsetCommit, OffsetFetch,
DescribeGroups, ListGroups, DeleteGroups.

Each handler only translates between a wire version's fields and the coordinator's own request/result types
(``cluster.groups.coordinator``); all semantics live there.  Version details handled here, as Kafka does:
JoinGroup v0 has no rebalance timeout (the session timeout is used), v4+ gets MEMBER_ID_REQUIRED first,
names that are nullable only in newer versions are sent as "" to older ones; LeaveGroup before v3 names one
member and reports its error at the top level; OffsetFetch v1 has no top-level error (a group-wide error is
repeated on every partition) and no "all topics" form; an OffsetCommit naming a topic that does not exist
gets UNKNOWN_TOPIC_OR_PARTITION for those partitions.  FindCoordinator answers for groups (key type 0);
transactional ids (type 1) get COORDINATOR_NOT_AVAILABLE until transactions exist.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from cluster.broker.group_coordinator import OFFSETS_TOPIC, offsets_topic_spec
from cluster.broker.handlers.context import RequestContext
from cluster.broker.handlers.topic_creation import create_topics_and_wait
from cluster.core.errors import ErrorCode, KafkaError
from cluster.groups import coordinator as gc
from cluster.groups.partitioning import partition_for
from cluster.wire.messages import delete_groups_response as dgr
from cluster.wire.messages import describe_groups_response as dsr
from cluster.wire.messages import find_coordinator_response as fcr
from cluster.wire.messages import heartbeat_response as hbr
from cluster.wire.messages import join_group_response as jgr
from cluster.wire.messages import leave_group_response as lgr
from cluster.wire.messages import list_groups_response as lsr
from cluster.wire.messages import offset_commit_response as ocr
from cluster.wire.messages import offset_fetch_response as ofr
from cluster.wire.messages import sync_group_response as sgr

KEY_TYPE_GROUP = 0
KEY_TYPE_TRANSACTION = 1
AUTHORIZED_OPERATIONS_OMITTED = -(2**31)
COORDINATOR_NOT_AVAILABLE_MESSAGE = "The coordinator is not available."
LOAD_WAIT_S = 0.5         # FindCoordinator waits this long for this broker to finish loading the group's partition


def _runtime(context: RequestContext):
    return context.services.groups


def _client_host(context: RequestContext) -> str:
    """Kafka reports a member's host as ``/<address>`` (InetAddress.toString)."""
    return "/" + context.peer.rsplit(":", 1)[0]


def _call(context: RequestContext, method: str, request: Any, respond: Callable[[Any], Any],
          fail: Callable[[ErrorCode], Any]):
    """Submits to the coordinator; answers at once when it did, else returns a coroutine awaiting the answer."""
    try:
        outcome = _runtime(context).submit(method, request)
    except KafkaError as exc:
        return fail(exc.error_code)
    if isinstance(outcome, asyncio.Future):
        return _await(outcome, respond, fail)
    return respond(outcome)


async def _await(future: asyncio.Future, respond, fail):
    try:
        return respond(await future)
    except KafkaError as exc:
        return fail(exc.error_code)


# -- FindCoordinator -----------------------------------------------------------------------------------

async def handle_find_coordinator(context: RequestContext, request) -> fcr.FindCoordinatorResponse:
    """The coordinator of a group is the leader of its ``__consumer_offsets`` partition (from the image).

    The offsets topic is created through the controller on first use, as Kafka does; until its partition has
    a leader that has loaded it, the answer is COORDINATOR_NOT_AVAILABLE, which clients retry.
    """
    key_type = request.key_type if context.api_version >= 1 else KEY_TYPE_GROUP
    if key_type == KEY_TYPE_TRANSACTION:
        return _coordinator_response(ErrorCode.COORDINATOR_NOT_AVAILABLE, "Transactions are not supported yet.")
    if key_type != KEY_TYPE_GROUP:
        return _coordinator_response(ErrorCode.INVALID_REQUEST, f"Unknown coordinator key type {key_type}.")
    services = context.services
    metadata = services.metadata
    topic = metadata.image.topics.get_topic(OFFSETS_TOPIC)
    if topic is None:
        await create_topics_and_wait(services, [
            offsets_topic_spec(services.config, len(metadata.live_brokers()))])
        topic = metadata.image.topics.get_topic(OFFSETS_TOPIC)
        if topic is None:
            return _coordinator_response(ErrorCode.COORDINATOR_NOT_AVAILABLE, COORDINATOR_NOT_AVAILABLE_MESSAGE)
    registration = topic.partitions.get(partition_for(request.key, len(topic.partitions)))
    address = (metadata.broker_address(registration.leader, context.listener_name)
               if registration is not None else None)
    if address is None or (registration.leader == metadata.node_id
                           and not await _loaded_here(services.groups, request.key)):
        return _coordinator_response(ErrorCode.COORDINATOR_NOT_AVAILABLE, COORDINATOR_NOT_AVAILABLE_MESSAGE)
    return fcr.FindCoordinatorResponse(throttle_time_ms=0, error_code=0, error_message=None,
                                       node_id=registration.leader, host=address[0], port=address[1])


async def _loaded_here(runtime, group_id: str) -> bool:
    """Whether this broker serves the group's offsets partition, waiting (bounded) for a load under way: a
    single node that just created the topic answers at once instead of sending the client into a retry."""
    coordinator = runtime.coordinator

    def loaded() -> bool:
        return coordinator.num_partitions is not None and coordinator.owns_partition(coordinator.partition_of(group_id))

    return loaded() or await runtime.wait_until(loaded, LOAD_WAIT_S)


def _coordinator_response(code: ErrorCode, message: str) -> fcr.FindCoordinatorResponse:
    return fcr.FindCoordinatorResponse(throttle_time_ms=0, error_code=code, error_message=message,
                                       node_id=-1, host="", port=-1)


# -- JoinGroup / SyncGroup / Heartbeat / LeaveGroup ----------------------------------------------------------

def handle_join_group(context: RequestContext, request):
    version = context.api_version
    join = gc.JoinGroupRequest(
        group_id=request.group_id,
        member_id=request.member_id,
        group_instance_id=request.group_instance_id if version >= 5 else None,
        session_timeout_ms=request.session_timeout_ms,
        rebalance_timeout_ms=request.rebalance_timeout_ms if version >= 1 else request.session_timeout_ms,
        protocol_type=request.protocol_type,
        protocols=tuple((protocol.name, bytes(protocol.metadata)) for protocol in request.protocols),
        client_id=context.client_id or "",
        client_host=_client_host(context),
        require_known_member_id=version >= 4,
        supports_skip_assignment=version >= 9,
        reason=request.reason if version >= 8 else None,
    )

    def respond(result: gc.JoinGroupResult) -> jgr.JoinGroupResponse:
        nullable_names = version >= 7
        return jgr.JoinGroupResponse(
            throttle_time_ms=0,
            error_code=result.error,
            generation_id=result.generation_id,
            protocol_type=result.protocol_type if nullable_names else None,
            protocol_name=result.protocol_name if nullable_names else (result.protocol_name or ""),
            leader=result.leader_id,
            skip_assignment=result.skip_assignment,
            member_id=result.member_id,
            members=[jgr.JoinGroupResponseMember(member_id=member.member_id,
                                                 group_instance_id=member.group_instance_id,
                                                 metadata=member.metadata)
                     for member in result.members],
        )

    return _call(context, "join_group", join, respond,
                 lambda error: respond(gc.JoinGroupResult(error, request.member_id)))


def handle_sync_group(context: RequestContext, request):
    version = context.api_version
    sync = gc.SyncGroupRequest(
        group_id=request.group_id,
        generation_id=request.generation_id,
        member_id=request.member_id,
        group_instance_id=request.group_instance_id if version >= 3 else None,
        protocol_type=request.protocol_type if version >= 5 else None,
        protocol_name=request.protocol_name if version >= 5 else None,
        assignments=tuple((item.member_id, bytes(item.assignment)) for item in request.assignments),
    )

    def respond(result: gc.SyncGroupResult) -> sgr.SyncGroupResponse:
        return sgr.SyncGroupResponse(throttle_time_ms=0, error_code=result.error,
                                     protocol_type=result.protocol_type, protocol_name=result.protocol_name,
                                     assignment=result.assignment or b"")

    return _call(context, "sync_group", sync, respond, lambda error: respond(gc.SyncGroupResult(error)))


def handle_heartbeat(context: RequestContext, request):
    heartbeat = gc.HeartbeatRequest(
        group_id=request.group_id,
        generation_id=request.generation_id,
        member_id=request.member_id,
        group_instance_id=request.group_instance_id if context.api_version >= 3 else None,
    )

    def respond(result: gc.HeartbeatResult) -> hbr.HeartbeatResponse:
        return hbr.HeartbeatResponse(throttle_time_ms=0, error_code=result.error)

    return _call(context, "heartbeat", heartbeat, respond, lambda error: respond(gc.HeartbeatResult(error)))


def handle_leave_group(context: RequestContext, request):
    version = context.api_version
    if version >= 3:
        members = tuple(gc.LeavingMember(member.member_id, member.group_instance_id,
                                         member.reason if version >= 5 else None)
                        for member in request.members)
    else:
        members = (gc.LeavingMember(request.member_id),)
    leave = gc.LeaveGroupRequest(group_id=request.group_id, members=members)

    def respond(result: gc.LeaveGroupResult) -> lgr.LeaveGroupResponse:
        if version < 3:
            # One member, no per-member list: its error is the request's error (LeaveGroupResponse.java).
            error = result.error
            if error is ErrorCode.NONE and result.members:
                error = result.members[0].error
            return lgr.LeaveGroupResponse(throttle_time_ms=0, error_code=error)
        return lgr.LeaveGroupResponse(
            throttle_time_ms=0, error_code=result.error,
            members=[lgr.MemberResponse(member_id=member.member_id, group_instance_id=member.group_instance_id,
                                        error_code=member.error) for member in result.members])

    return _call(context, "leave_group", leave, respond, lambda error: respond(gc.LeaveGroupResult(error)))


# -- OffsetCommit / OffsetFetch -------------------------------------------------------------------------------

def handle_offset_commit(context: RequestContext, request):
    version = context.api_version
    topics = context.services.replicas.store.topics
    early: dict[tuple[str, int], ErrorCode] = {}
    offsets = []
    for topic in request.topics:
        record = topics.get(topic.name)
        for partition in topic.partitions:
            if record is None or not 0 <= partition.partition_index < record.num_partitions:
                early[(topic.name, partition.partition_index)] = ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
                continue
            offsets.append(gc.OffsetToCommit(
                topic.name, partition.partition_index, partition.committed_offset,
                partition.committed_leader_epoch if version >= 6 else -1, partition.committed_metadata))
    commit = gc.OffsetCommitRequest(
        group_id=request.group_id,
        generation_id=request.generation_id_or_member_epoch,
        member_id=request.member_id,
        group_instance_id=request.group_instance_id if version >= 7 else None,
        retention_time_ms=request.retention_time_ms if 2 <= version <= 4 else -1,
        offsets=tuple(offsets),
        api_version=version,
    )

    def respond(errors: dict[tuple[str, int], ErrorCode]) -> ocr.OffsetCommitResponse:
        return ocr.OffsetCommitResponse(throttle_time_ms=0, topics=[
            ocr.OffsetCommitResponseTopic(name=topic.name, partitions=[
                ocr.OffsetCommitResponsePartition(
                    partition_index=partition.partition_index,
                    error_code=early.get((topic.name, partition.partition_index),
                                         errors.get((topic.name, partition.partition_index), ErrorCode.NONE)))
                for partition in topic.partitions])
            for topic in request.topics])

    if not offsets:
        return respond({})
    return _call(context, "commit_offsets", commit,
                 lambda result: respond({(topic, partition): error for topic, partition, error in result.partitions}),
                 lambda error: respond({(item.topic, item.partition): error for item in offsets}))


def handle_offset_fetch(context: RequestContext, request):
    version = context.api_version
    if request.topics is None:
        partitions = None
    else:
        partitions = tuple((topic.name, index) for topic in request.topics for index in topic.partition_indexes)
    fetch = gc.OffsetFetchRequest(group_id=request.group_id, partitions=partitions,
                                  require_stable=request.require_stable if version >= 7 else False)

    def respond(result: gc.OffsetFetchResult) -> ofr.OffsetFetchResponse:
        fetched = list(result.partitions)
        if result.error is not ErrorCode.NONE and version < 2 and partitions is not None:
            # v0-v1 have no top-level error: every partition carries it.
            fetched = [gc.FetchedOffset(topic, index, -1, -1, "", result.error) for topic, index in partitions]
        by_topic: dict[str, list] = {}
        for item in fetched:
            by_topic.setdefault(item.topic, []).append(ofr.OffsetFetchResponsePartition(
                partition_index=item.partition, committed_offset=item.offset,
                committed_leader_epoch=item.leader_epoch, metadata=item.metadata, error_code=item.error))
        return ofr.OffsetFetchResponse(
            throttle_time_ms=0, error_code=result.error,
            topics=[ofr.OffsetFetchResponseTopic(name=name, partitions=items) for name, items in by_topic.items()])

    return _call(context, "fetch_offsets", fetch, respond, lambda error: respond(gc.OffsetFetchResult(error)))


# -- DescribeGroups / ListGroups / DeleteGroups ------------------------------------------------------------------

def handle_describe_groups(context: RequestContext, request):
    group_ids = tuple(request.groups)

    def respond(result: gc.DescribeGroupsResult) -> dsr.DescribeGroupsResponse:
        return dsr.DescribeGroupsResponse(throttle_time_ms=0, groups=[
            dsr.DescribedGroup(
                error_code=group.error, group_id=group.group_id, group_state=group.state,
                protocol_type=group.protocol_type, protocol_data=group.protocol_data,
                members=[dsr.DescribedGroupMember(
                    member_id=member.member_id, group_instance_id=member.group_instance_id,
                    client_id=member.client_id, client_host=member.client_host,
                    member_metadata=member.metadata, member_assignment=member.assignment)
                    for member in group.members],
                authorized_operations=AUTHORIZED_OPERATIONS_OMITTED)
            for group in result.groups])

    return _call(context, "describe_groups", group_ids, respond, lambda error: respond(gc.DescribeGroupsResult(
        tuple(gc.DescribedGroup(error, group_id, "", "", "", ()) for group_id in group_ids))))


def handle_list_groups(context: RequestContext, request):
    states = tuple(request.states_filter) if context.api_version >= 4 else ()

    def respond(result: gc.ListGroupsResult) -> lsr.ListGroupsResponse:
        return lsr.ListGroupsResponse(throttle_time_ms=0, error_code=result.error, groups=[
            lsr.ListedGroup(group_id=group.group_id, protocol_type=group.protocol_type, group_state=group.state,
                            group_type="classic")
            for group in result.groups])

    return _call(context, "list_groups", states, respond, lambda error: respond(gc.ListGroupsResult(error)))


def handle_delete_groups(context: RequestContext, request):
    group_ids = tuple(request.groups_names)

    def respond(result: gc.DeleteGroupsResult) -> dgr.DeleteGroupsResponse:
        return dgr.DeleteGroupsResponse(throttle_time_ms=0, results=[
            dgr.DeletableGroupResult(group_id=group_id, error_code=error) for group_id, error in result.results])

    return _call(context, "delete_groups", group_ids, respond, lambda error: respond(gc.DeleteGroupsResult(
        tuple((group_id, error) for group_id in group_ids))))
