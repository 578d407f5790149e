"""The group coordinator's vocabulary: its config, the effects it returns, and every request and result.

Requests and results carry the protocol's fields, independent of any version's encoding (the broker's handlers
translate); effects are what the pure coordinator asks its shell to do (answer a request, append records to
``__consumer_offsets``).  The error mapping of a failed ``__consumer_offsets`` write lives here too, because both
the group metadata and the offset metadata answer with it.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass
from typing import NamedTuple

from cluster.core.errors import ErrorCode
from cluster.groups.group import Protocols
from cluster.groups.offsets import TopicPartition

NO_GENERATION = -1
UNKNOWN_MEMBER_ID = ""
DAY_MS = 24 * 60 * 60 * 1000


@dataclass(frozen=True)
class GroupConfig:
    """Kafka's broker settings for groups (names in comments)."""

    num_partitions: int | None = 50  # offsets.topic.num.partitions; None until the topic exists
    initial_rebalance_delay_ms: int = 3000  # group.initial.rebalance.delay.ms
    min_session_timeout_ms: int = 6000  # group.min.session.timeout.ms
    max_session_timeout_ms: int = 1_800_000  # group.max.session.timeout.ms
    max_group_size: int = 2**31 - 1  # group.max.size
    new_member_join_timeout_ms: int = 300_000  # classicGroupNewMemberJoinTimeoutMs (fixed in Kafka)
    offsets_retention_ms: int = 7 * DAY_MS  # offsets.retention.minutes
    offset_metadata_max_bytes: int = 4096  # offset.metadata.max.bytes


# -- effects -------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Reply:
    token: Hashable
    result: object


@dataclass(frozen=True)
class AppendRecords:
    """Append ``records`` ((key, value-or-None) pairs) to ``__consumer_offsets`` partition ``partition`` and
    call ``on_append_complete(append_id, error, now_ms)`` once they are durable (or failed)."""

    append_id: int
    partition: int
    records: tuple[tuple[bytes, bytes | None], ...]


Effect = Reply | AppendRecords


# -- requests and results (the protocol's fields, independent of any version's encoding) ---------------

@dataclass(frozen=True)
class JoinGroupRequest:
    group_id: str
    member_id: str
    group_instance_id: str | None
    session_timeout_ms: int
    rebalance_timeout_ms: int
    protocol_type: str
    protocols: Protocols
    client_id: str = ""
    client_host: str = ""
    require_known_member_id: bool = True  # JoinGroup v4+: a new member first gets MEMBER_ID_REQUIRED
    supports_skip_assignment: bool = False  # JoinGroup v9+
    reason: str | None = None


class JoinedMember(NamedTuple):
    member_id: str
    group_instance_id: str | None
    metadata: bytes


@dataclass(frozen=True)
class JoinGroupResult:
    error: ErrorCode
    member_id: str = UNKNOWN_MEMBER_ID
    generation_id: int = NO_GENERATION
    protocol_type: str | None = None
    protocol_name: str | None = None
    leader_id: str = ""
    members: tuple[JoinedMember, ...] = ()
    skip_assignment: bool = False


@dataclass(frozen=True)
class SyncGroupRequest:
    group_id: str
    generation_id: int
    member_id: str
    group_instance_id: str | None = None
    protocol_type: str | None = None  # v5+
    protocol_name: str | None = None  # v5+
    assignments: tuple[tuple[str, bytes], ...] = ()


@dataclass(frozen=True)
class SyncGroupResult:
    error: ErrorCode
    protocol_type: str | None = None
    protocol_name: str | None = None
    assignment: bytes = b""  # always bytes, never missing (franz-go breaks otherwise)


@dataclass(frozen=True)
class HeartbeatRequest:
    group_id: str
    generation_id: int
    member_id: str
    group_instance_id: str | None = None


@dataclass(frozen=True)
class HeartbeatResult:
    error: ErrorCode


class LeavingMember(NamedTuple):
    member_id: str
    group_instance_id: str | None = None
    reason: str | None = None


@dataclass(frozen=True)
class LeaveGroupRequest:
    group_id: str
    members: tuple[LeavingMember, ...]


class LeftMember(NamedTuple):
    member_id: str
    group_instance_id: str | None
    error: ErrorCode


@dataclass(frozen=True)
class LeaveGroupResult:
    error: ErrorCode
    members: tuple[LeftMember, ...] = ()


class OffsetToCommit(NamedTuple):
    topic: str
    partition: int
    offset: int
    leader_epoch: int = -1
    metadata: str | None = ""


@dataclass(frozen=True)
class OffsetCommitRequest:
    group_id: str
    generation_id: int = NO_GENERATION
    member_id: str = UNKNOWN_MEMBER_ID
    group_instance_id: str | None = None
    retention_time_ms: int = -1  # v2-v4; -1 = broker default
    offsets: tuple[OffsetToCommit, ...] = ()
    api_version: int = 9


@dataclass(frozen=True)
class OffsetCommitResult:
    partitions: tuple[tuple[str, int, ErrorCode], ...]


@dataclass(frozen=True)
class OffsetFetchRequest:
    group_id: str
    partitions: tuple[TopicPartition, ...] | None  # None = every committed offset of the group
    require_stable: bool = False


class FetchedOffset(NamedTuple):
    topic: str
    partition: int
    offset: int
    leader_epoch: int
    metadata: str
    error: ErrorCode


@dataclass(frozen=True)
class OffsetFetchResult:
    error: ErrorCode
    partitions: tuple[FetchedOffset, ...] = ()


class DescribedMember(NamedTuple):
    member_id: str
    group_instance_id: str | None
    client_id: str
    client_host: str
    metadata: bytes
    assignment: bytes


class DescribedGroup(NamedTuple):
    error: ErrorCode
    group_id: str
    state: str
    protocol_type: str
    protocol_data: str
    members: tuple[DescribedMember, ...]


@dataclass(frozen=True)
class DescribeGroupsResult:
    groups: tuple[DescribedGroup, ...]


class ListedGroup(NamedTuple):
    group_id: str
    protocol_type: str
    state: str


@dataclass(frozen=True)
class ListGroupsResult:
    error: ErrorCode
    groups: tuple[ListedGroup, ...] = ()


@dataclass(frozen=True)
class DeleteGroupsResult:
    results: tuple[tuple[str, ErrorCode], ...]


# Errors of a failed __consumer_offsets write, as the client should see them (Kafka's
# appendGroupMetadataErrorToResponseError and the OffsetCommit equivalent).
_RETRIABLE_ELSEWHERE = {ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, ErrorCode.NOT_ENOUGH_REPLICAS,
                        ErrorCode.NOT_ENOUGH_REPLICAS_AFTER_APPEND, ErrorCode.REQUEST_TIMED_OUT}
_MOVED = {ErrorCode.NOT_LEADER_OR_FOLLOWER, ErrorCode.KAFKA_STORAGE_ERROR}
_TOO_LARGE = {ErrorCode.MESSAGE_TOO_LARGE, ErrorCode.RECORD_LIST_TOO_LARGE, ErrorCode.INVALID_FETCH_SIZE}


def group_write_error(error: ErrorCode) -> ErrorCode:
    if error in _RETRIABLE_ELSEWHERE:
        return ErrorCode.COORDINATOR_NOT_AVAILABLE
    if error in _MOVED:
        return ErrorCode.NOT_COORDINATOR
    if error in _TOO_LARGE:
        return ErrorCode.UNKNOWN_SERVER_ERROR
    return error


def offset_write_error(error: ErrorCode) -> ErrorCode:
    if error in _TOO_LARGE:
        return ErrorCode.INVALID_COMMIT_OFFSET_SIZE
    return group_write_error(error)
