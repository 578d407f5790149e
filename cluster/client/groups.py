"""Consumer-group administration for our client: find the coordinator, list, describe, delete, read and
write committed offsets.

These are what ``kafka-consumer-groups.sh`` does through the Java AdminClient, and what ``kraftpy groups``
and the tests need; the client does not join groups itself (real consumers do that).  Every group request
except ListGroups goes to the group's coordinator, found with FindCoordinator; COORDINATOR_NOT_AVAILABLE,
COORDINATOR_LOAD_IN_PROGRESS and NOT_COORDINATOR mean "ask again (perhaps elsewhere) shortly", so the
coordinator is looked up again and the request retried, as Kafka's AdminClient does.  ListGroups goes to
every broker, since each one answers only for the groups it coordinates; a broker that cannot be reached is
asked again, with fresh metadata, until it answers or leaves the metadata (a dead broker is listed until its
session times out and the controller fences it) or the request timeout passes.

A member's assignment comes back as opaque bytes; for groups of protocol type ``consumer`` it is a
ConsumerProtocolAssignment preceded by its int16 version, decoded by ``decode_consumer_assignment``.
"""

from __future__ import annotations

import asyncio
import struct
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from cluster.client.connection import ApiKey
from cluster.client.errors import BrokerConnectionError, KafkaResponseError, error_from_code
from cluster.client.types import TopicPartition
from cluster.core.errors import ErrorCode, ProtocolDecodeError
from cluster.wire.messages import consumer_protocol_assignment as cpa
from cluster.wire.messages import delete_groups_request as dgq
from cluster.wire.messages import describe_groups_request as dsq
from cluster.wire.messages import find_coordinator_request as fcq
from cluster.wire.messages import list_groups_request as lgq
from cluster.wire.messages import offset_commit_request as ocq
from cluster.wire.messages import offset_fetch_request as ofq

__all__ = [
    "CONSUMER_PROTOCOL_TYPE",
    "COORDINATOR_RETRIABLE",
    "CommittedOffset",
    "GroupDescription",
    "GroupListing",
    "GroupMember",
    "GroupsMixin",
    "decode_consumer_assignment",
]

CONSUMER_PROTOCOL_TYPE = "consumer"
_KEY_TYPE_GROUP = 0
_NO_OFFSET = -1

# Errors after which a group request may succeed once the coordinator is found again.
COORDINATOR_RETRIABLE = frozenset({
    ErrorCode.COORDINATOR_NOT_AVAILABLE,
    ErrorCode.COORDINATOR_LOAD_IN_PROGRESS,
    ErrorCode.NOT_COORDINATOR,
})


@dataclass(frozen=True, slots=True)
class GroupListing:
    group_id: str
    protocol_type: str
    state: str  # "" from brokers that answer ListGroups below v4


@dataclass(slots=True)
class GroupMember:
    member_id: str
    group_instance_id: str | None
    client_id: str
    client_host: str
    # topic -> sorted partitions; empty when the group is not Stable or its protocol is not "consumer".
    assignment: dict[str, list[int]] = field(default_factory=dict)

    @property
    def assigned_partitions(self) -> list[TopicPartition]:
        return [(topic, p) for topic in sorted(self.assignment) for p in self.assignment[topic]]


@dataclass(slots=True)
class GroupDescription:
    group_id: str
    state: str
    protocol_type: str
    protocol: str  # the selected assignor (e.g. "range"), "" unless Stable
    members: list[GroupMember]
    coordinator_id: int


@dataclass(frozen=True, slots=True)
class CommittedOffset:
    offset: int
    leader_epoch: int
    metadata: str | None


def decode_consumer_assignment(data: bytes | bytearray | memoryview | None) -> dict[str, list[int]]:
    """The ``{topic: [partitions]}`` in a consumer member's assignment bytes.

    Empty bytes mean "no assignment" (a member between generations).  A version newer than our codec
    is read with the newest layout we know, as Kafka's ConsumerProtocol does: later versions only append
    fields.  Raises ProtocolDecodeError for bytes that are not an assignment.
    """
    if not data:
        return {}
    if len(data) < 2:
        raise ProtocolDecodeError(f"consumer assignment of {len(data)} bytes has no version")
    (version,) = struct.unpack_from(">h", data, 0)
    if version < 0:
        raise ProtocolDecodeError(f"consumer assignment has negative version {version}")
    body, _ = cpa.decode(bytes(data), 2, min(version, cpa.VALID_VERSIONS[1]))
    out: dict[str, set[int]] = defaultdict(set)
    for item in body.assigned_partitions:
        out[item.topic].update(item.partitions)
    return {topic: sorted(partitions) for topic, partitions in out.items()}


class GroupsMixin:
    """Group APIs of ``KafkaClient`` (which provides send, metadata, cluster, retries, retry_backoff_ms)."""

    async def find_coordinator(self, group_id: str) -> int:
        """The node id of ``group_id``'s coordinator; retries while no coordinator is available."""
        for attempt in range(self.retries + 1):
            response = await self.send(ApiKey.FIND_COORDINATOR,
                                       fcq.FindCoordinatorRequest(key=group_id, key_type=_KEY_TYPE_GROUP))
            if response.error_code in COORDINATOR_RETRIABLE and attempt < self.retries:
                await self._group_backoff(attempt)
                continue
            if response.error_code:
                raise error_from_code(response.error_code, response.error_message, api="FindCoordinator",
                                      resource=_group_resource(group_id))
            if response.node_id not in self.cluster.brokers:
                await self.metadata([])  # a broker we have not heard of yet
            return response.node_id
        raise AssertionError("unreachable")

    async def _group_backoff(self, attempt: int) -> None:
        await asyncio.sleep(self.retry_backoff_ms * (attempt + 1) / 1000)

    async def _coordinator_request(self, group_id: str, api_key: int, request, error_of):
        """Sends ``request`` to the group's coordinator, finding it again after coordinator errors.

        ``error_of(response)`` names the error that decides whether to retry (0 when none did).
        """
        for attempt in range(self.retries + 1):
            node_id = await self.find_coordinator(group_id)
            response = await self.send(api_key, request, node_id=node_id)
            if error_of(response) in COORDINATOR_RETRIABLE and attempt < self.retries:
                await self._group_backoff(attempt)
                continue
            return node_id, response
        raise AssertionError("unreachable")

    async def list_groups(self, states: Sequence[str] = ()) -> list[GroupListing]:
        """Every group of every broker, sorted by id; ``states`` filters (e.g. ["Stable"]) where the broker
        supports it (ListGroups v4+), and is applied here too for older brokers."""
        await self.metadata([])
        node_ids = sorted(self.cluster.brokers) or [None]
        responses = await asyncio.gather(*(self._list_groups_from(node_id, states) for node_id in node_ids))
        wanted = {state.lower() for state in states}
        groups: dict[str, GroupListing] = {}
        for response in responses:
            for group in response.groups if response is not None else ():
                if wanted and group.group_state and group.group_state.lower() not in wanted:
                    continue
                groups[group.group_id] = GroupListing(group.group_id, group.protocol_type, group.group_state)
        return [groups[group_id] for group_id in sorted(groups)]

    async def _list_groups_from(self, node_id: int | None, states: Sequence[str]):
        request = lgq.ListGroupsRequest(states_filter=list(states), types_filter=[])
        for attempt in range(self.retries + 1):
            response = await self._send_while_listed(ApiKey.LIST_GROUPS, request, node_id)
            if response is None:
                return None   # that broker is gone, and with it the groups it coordinated
            if response.error_code == ErrorCode.COORDINATOR_LOAD_IN_PROGRESS and attempt < self.retries:
                await self._group_backoff(attempt)
                continue
            if response.error_code:
                raise error_from_code(response.error_code, None, api="ListGroups", resource=f"node {node_id}")
            return response
        raise AssertionError("unreachable")

    async def _send_while_listed(self, api_key: int, request, node_id: int | None):
        """``send`` to ``node_id``, retried while it cannot be reached but is still a broker of the metadata;
        None once it is not (it died and was fenced).  Bounded by the request timeout."""
        deadline = asyncio.get_running_loop().time() + self.request_timeout_ms / 1000
        while True:
            try:
                return await self.send(api_key, request, node_id=node_id)
            except BrokerConnectionError:
                if node_id is None or asyncio.get_running_loop().time() >= deadline:
                    raise
            await asyncio.sleep(self.retry_backoff_ms / 1000)
            await self.metadata([])
            if node_id not in self.cluster.brokers:
                return None

    async def describe_group(self, group_id: str) -> GroupDescription:
        """One group's state, protocol and members (state "Dead" when the group does not exist)."""
        node_id, response = await self._coordinator_request(
            group_id, ApiKey.DESCRIBE_GROUPS, dsq.DescribeGroupsRequest(groups=[group_id]),
            lambda r: r.groups[0].error_code if r.groups else 0)
        described = next((g for g in response.groups if g.group_id == group_id), None)
        if described is None:
            raise KafkaResponseError(ErrorCode.UNKNOWN_SERVER_ERROR, f"DescribeGroups omitted group '{group_id}'",
                                     api="DescribeGroups", resource=_group_resource(group_id))
        if described.error_code:
            raise error_from_code(described.error_code, None, api="DescribeGroups",
                                  resource=_group_resource(group_id))
        return _convert_group(described, node_id)

    async def describe_groups(self, group_ids: Iterable[str]) -> dict[str, GroupDescription]:
        """``describe_group`` for several groups (each at its own coordinator); raises the first error."""
        ids = list(dict.fromkeys(group_ids))
        described = await asyncio.gather(*(self.describe_group(group_id) for group_id in ids))
        return dict(zip(ids, described, strict=True))

    async def offset_fetch(
        self, group_id: str, partitions: Iterable[TopicPartition] | None = None
    ) -> dict[TopicPartition, CommittedOffset]:
        """The group's committed offsets (all of them when ``partitions`` is None); partitions without a
        committed offset are left out."""
        topics = None
        if partitions is not None:
            by_topic: dict[str, list[int]] = defaultdict(list)
            for topic, partition in partitions:
                by_topic[topic].append(partition)
            topics = [ofq.OffsetFetchRequestTopic(name=t, partition_indexes=ps) for t, ps in by_topic.items()]
        request = ofq.OffsetFetchRequest(group_id=group_id, topics=topics, require_stable=False)
        _, response = await self._coordinator_request(group_id, ApiKey.OFFSET_FETCH, request, _offset_fetch_error)
        if response.error_code:
            raise error_from_code(response.error_code, None, api="OffsetFetch", resource=_group_resource(group_id))
        out: dict[TopicPartition, CommittedOffset] = {}
        for topic in response.topics:
            for p in topic.partitions:
                if p.error_code:
                    raise error_from_code(p.error_code, None, api="OffsetFetch",
                                          resource=f"group '{group_id}' partition {topic.name}-{p.partition_index}")
                if p.committed_offset != _NO_OFFSET:
                    out[(topic.name, p.partition_index)] = CommittedOffset(
                        p.committed_offset, p.committed_leader_epoch, p.metadata)
        return out

    async def offset_commit(
        self,
        group_id: str,
        offsets: Mapping[TopicPartition, int],
        *,
        generation_id: int = -1,
        member_id: str = "",
        metadata: str | None = "",
    ) -> None:
        """Commits ``offsets``; without a generation and member id (the default) the broker accepts it only
        for an Empty group, which is how an administrator resets offsets.  Raises the first partition error."""
        by_topic: dict[str, list] = defaultdict(list)
        for (topic, partition), offset in offsets.items():
            by_topic[topic].append(ocq.OffsetCommitRequestPartition(
                partition_index=partition, committed_offset=offset, committed_leader_epoch=-1,
                committed_metadata=metadata))
        request = ocq.OffsetCommitRequest(
            group_id=group_id, generation_id_or_member_epoch=generation_id, member_id=member_id,
            group_instance_id=None, retention_time_ms=-1,
            topics=[ocq.OffsetCommitRequestTopic(name=t, partitions=ps) for t, ps in by_topic.items()])
        _, response = await self._coordinator_request(group_id, ApiKey.OFFSET_COMMIT, request, _offset_commit_error)
        for topic in response.topics:
            for p in topic.partitions:
                if p.error_code:
                    raise error_from_code(p.error_code, None, api="OffsetCommit",
                                          resource=f"group '{group_id}' partition {topic.name}-{p.partition_index}")

    async def delete_groups(self, group_ids: Iterable[str]) -> None:
        """Deletes groups and their committed offsets; a group with members fails with NON_EMPTY_GROUP.
        Every group is attempted; the first error is raised."""
        ids = list(dict.fromkeys(group_ids))
        results = await asyncio.gather(*(self._delete_group(group_id) for group_id in ids))
        errors = [error for error in results if error is not None]
        if errors:
            raise errors[0]

    async def _delete_group(self, group_id: str) -> KafkaResponseError | None:
        _, response = await self._coordinator_request(
            group_id, ApiKey.DELETE_GROUPS, dgq.DeleteGroupsRequest(groups_names=[group_id]),
            lambda r: next((x.error_code for x in r.results if x.group_id == group_id), 0))
        for result in response.results:
            if result.group_id == group_id and result.error_code:
                return error_from_code(result.error_code, None, api="DeleteGroups", resource=_group_resource(group_id))
        return None


def _group_resource(group_id: str) -> str:
    return f"group '{group_id}'"


def _offset_fetch_error(response) -> int:
    if response.error_code:
        return response.error_code
    # v1 carries group-wide errors on every partition.
    return next((p.error_code for t in response.topics for p in t.partitions if p.error_code), 0)


def _offset_commit_error(response) -> int:
    return next((p.error_code for t in response.topics for p in t.partitions if p.error_code), 0)


def _convert_group(described, coordinator_id: int) -> GroupDescription:
    members = []
    for m in described.members:
        assignment: dict[str, list[int]] = {}
        if described.protocol_type == CONSUMER_PROTOCOL_TYPE:
            assignment = decode_consumer_assignment(m.member_assignment)
        members.append(GroupMember(member_id=m.member_id, group_instance_id=m.group_instance_id,
                                   client_id=m.client_id, client_host=m.client_host, assignment=assignment))
    members.sort(key=lambda member: member.member_id)
    return GroupDescription(group_id=described.group_id, state=described.group_state,
                            protocol_type=described.protocol_type, protocol=described.protocol_data,
                            members=members, coordinator_id=coordinator_id)
