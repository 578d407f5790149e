"""The classic group coordinator: JoinGroup, SyncGroup, Heartbeat, LeaveGroup, offsets, as a pure state machine.

Kafka's semantics (GroupMetadataManager / ClassicGroup, Kafka 3.9), with no I/O and no clock of its own:

* Inputs: one method per request, each taking a caller-chosen ``token`` and ``now_ms``; ``advance_time(now_ms)``
  fires due timers; ``on_append_complete`` reports that records it asked to write are durable (or failed).
* Outputs: the effects those calls return.  ``Reply(token, result)`` answers a request, possibly much later
  (JoinGroup waits for the rebalance, SyncGroup for the leader, OffsetCommit for its write), and
  ``AppendRecords`` asks the shell to append records to a ``__consumer_offsets`` partition.

Timers (all in ``Timers``, keyed like Kafka's): a member's heartbeat deadline (its session timeout; 5 min for a
member that just joined and has no id to heartbeat with), a group's join phase (the rebalance timeout, or the
initial delay ``group.initial.rebalance.delay.ms`` for a group that was Empty: only a new group waits for
more members, in steps, up to the rebalance timeout), and the sync phase (members that do not SyncGroup
within the rebalance timeout are removed).

Ownership: the coordinator serves only groups whose ``__consumer_offsets`` partition it has loaded
(``begin_loading``/``replay``/``finish_loading``); others get NOT_COORDINATOR, or COORDINATOR_LOAD_IN_PROGRESS
while loading.  Each write remembers the partition's leader epoch; a write that completes after the
partition was unloaded or re-loaded in another epoch is reported as NOT_COORDINATOR, never applied
(KAFKA-20634: a demoted coordinator must not acknowledge commits the new leader truncated).
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass
from typing import NamedTuple

from cluster.core.errors import ErrorCode, invariant
from cluster.groups import records
from cluster.groups.group import VALID_PREVIOUS_STATES, ClassicGroup, GroupState, Member, Protocols
from cluster.groups.offsets import GroupOffsets, TopicPartition
from cluster.groups.partitioning import partition_for
from cluster.groups.timers import Timers

__all__ = [
    "VALID_PREVIOUS_STATES", "GroupState", "GroupConfig", "GroupCoordinator", "Reply", "AppendRecords",
    "JoinGroupRequest", "JoinGroupResult", "JoinedMember", "SyncGroupRequest", "SyncGroupResult",
    "HeartbeatRequest", "HeartbeatResult", "LeavingMember", "LeaveGroupRequest", "LeaveGroupResult",
    "LeftMember", "OffsetToCommit", "OffsetCommitRequest", "OffsetCommitResult", "OffsetFetchRequest",
    "OffsetFetchResult", "FetchedOffset", "DescribedMember", "DescribedGroup", "DescribeGroupsResult",
    "ListedGroup", "ListGroupsResult", "DeleteGroupsResult",
]

log = logging.getLogger("cluster.groups")

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


def _protocol_inconsistent(requested: str | None, current: str | None) -> bool:
    return requested is not None and current is not None and requested != current


class GroupCoordinator:
    """Every classic group of the ``__consumer_offsets`` partitions this node leads."""

    def __init__(self, config: GroupConfig, new_member_id: Callable[[str], str],
                 on_transition: Callable[[str, GroupState, GroupState], None] | None = None) -> None:
        self.config = config
        self.num_partitions = config.num_partitions
        self._new_member_id = new_member_id
        self._on_transition = on_transition
        self._groups: dict[str, ClassicGroup] = {}
        self._offsets: dict[str, GroupOffsets] = {}
        self._timers = Timers()
        self._effects: list[Effect] = []
        self._appends: dict[int, tuple[int, int | None, Callable[[ErrorCode, int], None]]] = {}
        self._append_ids = itertools.count(1)
        self._owned: dict[int, int] = {}  # partition -> leader epoch it was loaded in
        self._loading: set[int] = set()

    # -- inspection (tests, the CLI, describe) ----------------------------------------------------------
    def group(self, group_id: str) -> ClassicGroup | None:
        return self._groups.get(group_id)

    def group_ids(self) -> list[str]:
        return list(self._groups)

    def committed_offsets(self, group_id: str) -> dict[TopicPartition, records.OffsetCommitValue]:
        offsets = self._offsets.get(group_id)
        return dict(offsets.committed) if offsets is not None else {}

    def next_deadline_ms(self) -> int | None:
        return self._timers.next_deadline_ms()

    def pending_appends(self) -> int:
        return len(self._appends)

    def partition_of(self, group_id: str) -> int:
        invariant(self.num_partitions is not None, "the __consumer_offsets partition count is not known yet")
        return partition_for(group_id, self.num_partitions)

    def owns_partition(self, partition: int) -> bool:
        return partition in self._owned

    # -- plumbing -----------------------------------------------------------------------------------------
    def _drain(self) -> list[Effect]:
        effects, self._effects = self._effects, []
        return effects

    def _reply(self, token: Hashable, result: object) -> None:
        self._effects.append(Reply(token, result))

    def _append(self, group_id: str, batch: list[tuple[bytes, bytes | None]],
                on_done: Callable[[ErrorCode, int], None]) -> None:
        partition = self.partition_of(group_id)
        append_id = next(self._append_ids)
        self._appends[append_id] = (partition, self._owned.get(partition), on_done)
        self._effects.append(AppendRecords(append_id, partition, tuple(batch)))

    def _new_group(self, group_id: str, now_ms: int, state: GroupState = GroupState.EMPTY) -> ClassicGroup:
        group = ClassicGroup(group_id, now_ms, state, self._on_transition)
        self._groups[group_id] = group
        return group

    def _coordinator_error(self, group_id: str) -> ErrorCode | None:
        if self.num_partitions is None:
            return ErrorCode.COORDINATOR_NOT_AVAILABLE
        partition = partition_for(group_id, self.num_partitions)
        if partition in self._loading:
            return ErrorCode.COORDINATOR_LOAD_IN_PROGRESS
        if partition not in self._owned:
            return ErrorCode.NOT_COORDINATOR
        return None

    def _membership_request_error(self, group_id: str) -> ErrorCode | None:
        """JoinGroup, SyncGroup, Heartbeat, LeaveGroup need a non-empty group id and the coordinator."""
        if not group_id:
            return ErrorCode.INVALID_GROUP_ID
        return self._coordinator_error(group_id)

    def _current(self, group: ClassicGroup) -> bool:
        return self._groups.get(group.group_id) is group

    # -- time ---------------------------------------------------------------------------------------------
    def advance_time(self, now_ms: int) -> list[Effect]:
        """Fires every timer due at ``now_ms``."""
        while (callback := self._timers.pop_expired(now_ms)) is not None:
            callback(now_ms)
        return self._drain()

    def _schedule_heartbeat(self, group: ClassicGroup, member_id: str, timeout_ms: int, now_ms: int) -> None:
        group_id = group.group_id
        self._timers.schedule(("heartbeat", group_id, member_id), now_ms + timeout_ms,
                              lambda at_ms: self._expire_heartbeat(group_id, member_id, at_ms))

    def _cancel_heartbeat(self, group: ClassicGroup, member_id: str) -> None:
        self._timers.cancel(("heartbeat", group.group_id, member_id))

    def _expire_heartbeat(self, group_id: str, member_id: str, now_ms: int) -> None:
        group = self._groups.get(group_id)
        if group is None or group.state is GroupState.DEAD:
            return
        if member_id in group.pending_join_members:
            log.info("group %s: pending member %s expired before rejoining", group_id, member_id)
            self._remove_pending_member_and_update(group, member_id, now_ms)
            return
        member = group.members.get(member_id)
        if member is None or member.has_satisfied_heartbeat():
            return
        log.info("group %s: member %s missed its session timeout; removing it", group_id, member_id)
        self._remove_member_and_update(group, member, now_ms)

    # -- parking and answering members ------------------------------------------------------------------
    def _park_join(self, member: Member, token: Hashable) -> None:
        if member.join_token is not None and member.join_token != token:
            # The client retried (its earlier request timed out); that request is answered so no one waits on it.
            self._reply(member.join_token, JoinGroupResult(ErrorCode.REBALANCE_IN_PROGRESS, member.member_id))
        member.join_token = token

    def _park_sync(self, member: Member, token: Hashable) -> None:
        if member.sync_token is not None and member.sync_token != token:
            self._reply(member.sync_token, SyncGroupResult(ErrorCode.REBALANCE_IN_PROGRESS))
        member.sync_token = token

    def _complete_join(self, member: Member, result: JoinGroupResult) -> bool:
        if member.join_token is None:
            return False
        token, member.join_token = member.join_token, None
        self._reply(token, result)
        return True

    def _complete_sync(self, member: Member, result: SyncGroupResult) -> bool:
        if member.sync_token is None:
            return False
        token, member.sync_token = member.sync_token, None
        self._reply(token, result)
        return True

    def _generation_info(self, group: ClassicGroup, member_id: str, *, leader_id: str | None,
                         include_members: bool, skip_assignment: bool = False) -> JoinGroupResult:
        members = ()
        if include_members:
            members = tuple(JoinedMember(m.member_id, m.group_instance_id, m.metadata(group.protocol_name))
                            for m in group.members.values())
        return JoinGroupResult(ErrorCode.NONE, member_id, group.generation_id, group.protocol_type,
                               group.protocol_name, leader_id or "", members, skip_assignment)

    def _remove_member(self, group: ClassicGroup, member: Member, error: ErrorCode) -> None:
        """Drops a member, answering whatever it has parked with ``error``."""
        self._complete_join(member, JoinGroupResult(error, UNKNOWN_MEMBER_ID))
        self._complete_sync(member, SyncGroupResult(error))
        group.remove(member.member_id)
        self._cancel_heartbeat(group, member.member_id)

    # -- rebalance machinery ------------------------------------------------------------------------------
    def _prepare_rebalance(self, group: ClassicGroup, reason: str, now_ms: int) -> None:
        if group.state is GroupState.COMPLETING_REBALANCE:
            self._reset_and_propagate_assignment(group, ErrorCode.REBALANCE_IN_PROGRESS, now_ms)
        group.pending_sync_members.clear()
        self._timers.cancel(("sync", group.group_id))
        initial = group.state is GroupState.EMPTY
        if initial:
            # Only a new (Empty) group waits for more members before its first generation.
            delay_ms = self.config.initial_rebalance_delay_ms
            remaining_ms = max(group.rebalance_timeout_ms() - delay_ms, 0)
            group.new_member_added = False
            self._schedule_initial_join(group, delay_ms, remaining_ms, now_ms)
        group.transition_to(GroupState.PREPARING_REBALANCE, now_ms)
        log.info("group %s: preparing to rebalance from generation %d (%s)", group.group_id,
                 group.generation_id, reason)
        if not initial:
            self._maybe_complete_join_else_schedule(group, now_ms)

    def _schedule_initial_join(self, group: ClassicGroup, delay_ms: int, remaining_ms: int, now_ms: int) -> None:
        group_id = group.group_id
        self._timers.schedule(("join", group_id), now_ms + delay_ms,
                              lambda at_ms: self._initial_join_expired(group_id, delay_ms, remaining_ms, at_ms))

    def _initial_join_expired(self, group_id: str, delay_ms: int, remaining_ms: int, now_ms: int) -> None:
        group = self._groups.get(group_id)
        if group is None or group.state is not GroupState.PREPARING_REBALANCE:
            return
        if group.new_member_added and remaining_ms != 0:
            # Members are still arriving: wait another step, never beyond the rebalance timeout.
            group.new_member_added = False
            next_delay_ms = min(self.config.initial_rebalance_delay_ms, remaining_ms)
            self._schedule_initial_join(group, next_delay_ms, max(remaining_ms - delay_ms, 0), now_ms)
        else:
            self._complete_join_phase(group, now_ms)

    def _maybe_complete_join_else_schedule(self, group: ClassicGroup, now_ms: int) -> None:
        if group.has_all_members_joined():
            self._complete_join_phase(group, now_ms)
        else:
            self._schedule_join_timeout(group, now_ms)

    def _schedule_join_timeout(self, group: ClassicGroup, now_ms: int) -> None:
        group_id = group.group_id
        self._timers.schedule(("join", group_id), now_ms + group.rebalance_timeout_ms(),
                              lambda at_ms: self._join_timeout_expired(group_id, at_ms))

    def _join_timeout_expired(self, group_id: str, now_ms: int) -> None:
        group = self._groups.get(group_id)
        if group is not None and group.state is GroupState.PREPARING_REBALANCE:
            self._complete_join_phase(group, now_ms)

    def _maybe_prepare_rebalance_or_complete_join(self, group: ClassicGroup, reason: str, now_ms: int) -> None:
        if group.can_rebalance():
            self._prepare_rebalance(group, reason, now_ms)
        else:
            self._maybe_complete_join_phase(group, now_ms)

    def _maybe_complete_join_phase(self, group: ClassicGroup, now_ms: int) -> None:
        """Completes the join phase once everyone joined, except during the initial delay."""
        if (group.state is GroupState.PREPARING_REBALANCE and group.previous_state is not GroupState.EMPTY
                and group.has_all_members_joined()):
            self._complete_join_phase(group, now_ms)

    def _complete_join_phase(self, group: ClassicGroup, now_ms: int) -> None:
        """Ends the join phase: drops dynamic members that did not rejoin, starts the next generation and
        answers every parked JoinGroup (the leader gets the members and their metadata)."""
        invariant(group.state is GroupState.PREPARING_REBALANCE,
                  f"group {group.group_id}: join phase completed in state {group.state.value}")
        self._timers.cancel(("join", group.group_id))
        for member in group.not_yet_rejoined_members():
            if not member.is_static:
                log.info("group %s: member %s did not rejoin in time; removing it", group.group_id,
                         member.member_id)
                self._remove_member(group, member, ErrorCode.UNKNOWN_MEMBER_ID)
        if not group.maybe_elect_new_joined_leader() and group.members:
            # Only static members remain and none rejoined: wait for them or for their session timeouts.
            self._schedule_join_timeout(group, now_ms)
            return
        group.init_next_generation(now_ms)
        if group.state is GroupState.EMPTY:
            log.info("group %s: generation %d is empty", group.group_id, group.generation_id)
            self._store_group(group, {}, lambda error, at_ms: None)
            return
        log.info("group %s: generation %d with %d member(s), protocol %s, leader %s", group.group_id,
                 group.generation_id, len(group.members), group.protocol_name, group.leader_id)
        for member in group.members.values():
            is_leader = group.is_leader(member.member_id)
            self._complete_join(member, self._generation_info(group, member.member_id, leader_id=group.leader_id,
                                                              include_members=is_leader))
            self._schedule_heartbeat(group, member.member_id, member.session_timeout_ms, now_ms)
            member.is_new = False
            group.pending_sync_members.add(member.member_id)
        generation = group.generation_id
        group_id = group.group_id
        self._timers.schedule(("sync", group_id), now_ms + group.rebalance_timeout_ms(),
                              lambda at_ms: self._sync_expired(group_id, generation, at_ms))

    def _sync_expired(self, group_id: str, generation: int, now_ms: int) -> None:
        group = self._groups.get(group_id)
        if group is None or group.generation_id != generation:
            return
        if group.is_in(GroupState.COMPLETING_REBALANCE, GroupState.STABLE) and group.pending_sync_members:
            laggards = sorted(group.pending_sync_members)
            for member_id in laggards:
                member = group.members.get(member_id)
                if member is not None:
                    self._remove_member(group, member, ErrorCode.UNKNOWN_MEMBER_ID)
            self._prepare_rebalance(group, f"members {laggards} did not send SyncGroup in time", now_ms)

    def _reset_and_propagate_assignment(self, group: ClassicGroup, error: ErrorCode, now_ms: int) -> None:
        invariant(group.state is GroupState.COMPLETING_REBALANCE, "assignment reset outside CompletingRebalance")
        for member in group.members.values():
            member.assignment = b""
        self._propagate_assignment(group, error, now_ms)

    def _propagate_assignment(self, group: ClassicGroup, error: ErrorCode, now_ms: int) -> None:
        protocol_type = group.protocol_type if error is ErrorCode.NONE else None
        protocol_name = group.protocol_name if error is ErrorCode.NONE else None
        for member in group.members.values():
            if self._complete_sync(member, SyncGroupResult(error, protocol_type, protocol_name, member.assignment)):
                # Members parked in SyncGroup did not need heartbeats; their session restarts now.
                self._schedule_heartbeat(group, member.member_id, member.session_timeout_ms, now_ms)

    def _remove_member_and_update(self, group: ClassicGroup, member: Member, now_ms: int) -> None:
        self._remove_member(group, member, ErrorCode.UNKNOWN_MEMBER_ID)
        if group.is_in(GroupState.STABLE, GroupState.COMPLETING_REBALANCE):
            self._maybe_prepare_rebalance_or_complete_join(group, f"member {member.member_id} removed", now_ms)
        elif group.state is GroupState.PREPARING_REBALANCE and group.has_all_members_joined():
            self._complete_join_phase(group, now_ms)

    def _remove_pending_member_and_update(self, group: ClassicGroup, member_id: str, now_ms: int) -> None:
        group.remove(member_id)
        self._cancel_heartbeat(group, member_id)
        if group.state is GroupState.PREPARING_REBALANCE and group.has_all_members_joined():
            self._complete_join_phase(group, now_ms)

    def _store_group(self, group: ClassicGroup, assignments: dict[str, bytes],
                     on_done: Callable[[ErrorCode, int], None]) -> None:
        key = records.encode_group_metadata_key(group.group_id)
        members = tuple(
            records.MemberMetadata(m.member_id, m.group_instance_id, m.client_id, m.client_host,
                                   m.rebalance_timeout_ms, m.session_timeout_ms, m.metadata(group.protocol_name),
                                   assignments.get(m.member_id, b""))
            for m in group.members.values())
        value = records.GroupMetadataValue(
            group.protocol_type or "", group.generation_id, group.protocol_name, group.leader_id,
            group.state_timestamp_ms if group.state_timestamp_ms is not None else -1, members)
        self._append(group.group_id, [(key, records.encode_group_metadata_value(value))], on_done)

    # -- JoinGroup ------------------------------------------------------------------------------------------
    def join_group(self, token: Hashable, request: JoinGroupRequest, now_ms: int) -> list[Effect]:
        error = self._membership_request_error(request.group_id)
        if error is None and not (self.config.min_session_timeout_ms <= request.session_timeout_ms
                                  <= self.config.max_session_timeout_ms):
            error = ErrorCode.INVALID_SESSION_TIMEOUT
        if error is not None:
            self._reply(token, JoinGroupResult(error, request.member_id))
            return self._drain()
        is_unknown = request.member_id == UNKNOWN_MEMBER_ID
        group = self._groups.get(request.group_id)
        created = False
        if group is None:
            if not is_unknown:
                self._reply(token, JoinGroupResult(ErrorCode.UNKNOWN_MEMBER_ID, request.member_id))
                return self._drain()
            group, created = self._new_group(request.group_id, now_ms), True
        if not self._accept_joining_member(group, request.member_id):
            member = group.members.get(request.member_id)
            if member is not None:
                self._remove_member(group, member, ErrorCode.GROUP_MAX_SIZE_REACHED)
            group.pending_join_members.discard(request.member_id)
            self._reply(token, JoinGroupResult(ErrorCode.GROUP_MAX_SIZE_REACHED, UNKNOWN_MEMBER_ID))
            self._maybe_complete_join_phase(group, now_ms)
        elif is_unknown:
            self._join_new_member(group, token, request, now_ms)
        else:
            self._join_existing_member(group, token, request, now_ms)
        if created and not group.members and not group.pending_join_members and group.state is GroupState.EMPTY:
            del self._groups[group.group_id]  # nothing joined: do not keep a group that never existed
        return self._drain()

    def _accept_joining_member(self, group: ClassicGroup, member_id: str) -> bool:
        limit = self.config.max_group_size
        if group.is_in(GroupState.EMPTY, GroupState.DEAD):
            return True
        member = group.members.get(member_id)
        if group.state is GroupState.PREPARING_REBALANCE:
            return (member is not None and member.is_awaiting_join) or group.num_awaiting_join() < limit
        return member is not None or len(group.members) < limit

    def _join_new_member(self, group: ClassicGroup, token: Hashable, request: JoinGroupRequest,
                         now_ms: int) -> None:
        if group.state is GroupState.DEAD:
            self._reply(token, JoinGroupResult(ErrorCode.COORDINATOR_NOT_AVAILABLE))
            return
        if not group.supports_protocols(request.protocol_type, [name for name, _ in request.protocols]):
            self._reply(token, JoinGroupResult(ErrorCode.INCONSISTENT_GROUP_PROTOCOL))
            return
        new_member_id = self._new_member_id(request.group_instance_id or request.client_id)
        if request.group_instance_id is not None:
            existing = group.static_members.get(request.group_instance_id)
            if existing is not None:
                log.info("group %s: static member %s rejoins as %s, replacing %s", group.group_id,
                         request.group_instance_id, new_member_id, existing)
                self._update_static_member_and_rebalance(group, token, request, existing, new_member_id, now_ms)
            else:
                self._add_member_and_rebalance(group, token, request, new_member_id, now_ms)
        elif request.require_known_member_id:
            # KIP-394: hand out the id first, so a client that times out and retries reuses it.
            group.pending_join_members.add(new_member_id)
            self._schedule_heartbeat(group, new_member_id, request.session_timeout_ms, now_ms)
            self._reply(token, JoinGroupResult(ErrorCode.MEMBER_ID_REQUIRED, new_member_id))
        else:
            self._add_member_and_rebalance(group, token, request, new_member_id, now_ms)

    def _join_existing_member(self, group: ClassicGroup, token: Hashable, request: JoinGroupRequest,
                              now_ms: int) -> None:
        member_id = request.member_id
        if group.state is GroupState.DEAD:
            self._reply(token, JoinGroupResult(ErrorCode.COORDINATOR_NOT_AVAILABLE, member_id))
            return
        if not group.supports_protocols(request.protocol_type, [name for name, _ in request.protocols]):
            self._reply(token, JoinGroupResult(ErrorCode.INCONSISTENT_GROUP_PROTOCOL, member_id))
            return
        if member_id in group.pending_join_members:
            if request.group_instance_id is not None:  # pending members are always dynamic
                self._reply(token, JoinGroupResult(ErrorCode.UNKNOWN_MEMBER_ID, member_id))
                return
            self._add_member_and_rebalance(group, token, request, member_id, now_ms)
            return
        error = group.validate_member(member_id, request.group_instance_id)
        if error is not None:
            self._reply(token, JoinGroupResult(error, member_id))
            return
        member = group.members[member_id]
        if group.state is GroupState.PREPARING_REBALANCE:
            self._update_member_and_rebalance(group, member, token, request, "member rejoining", now_ms)
        elif group.state is GroupState.COMPLETING_REBALANCE:
            if member.matches(request.protocols):
                # It lost our earlier response: send the current generation again.
                self._reply(token, self._generation_info(group, member_id, leader_id=group.leader_id,
                                                         include_members=group.is_leader(member_id)))
            else:
                self._update_member_and_rebalance(group, member, token, request, "member metadata changed",
                                                  now_ms)
        elif group.state is GroupState.STABLE:
            if group.is_leader(member_id) or not member.matches(request.protocols):
                # A leader's JoinGroup asks for a rebalance (its topics' metadata changed, say).
                self._update_member_and_rebalance(group, member, token, request, "leader or metadata change",
                                                  now_ms)
            else:
                self._reply(token, self._generation_info(group, member_id, leader_id=group.leader_id,
                                                         include_members=False))
        else:
            self._reply(token, JoinGroupResult(ErrorCode.UNKNOWN_MEMBER_ID, member_id))

    def _add_member_and_rebalance(self, group: ClassicGroup, token: Hashable, request: JoinGroupRequest,
                                  member_id: str, now_ms: int) -> None:
        member = Member(member_id, request.group_instance_id, request.client_id, request.client_host,
                        request.rebalance_timeout_ms, request.session_timeout_ms, request.protocol_type,
                        tuple(request.protocols), join_token=token, is_new=True)
        if group.state is GroupState.PREPARING_REBALANCE and group.previous_state is GroupState.EMPTY:
            group.new_member_added = True  # extends the initial delay by another step
        group.add(member)
        # A new member cannot heartbeat (it has no generation yet); bound its wait instead.
        self._schedule_heartbeat(group, member_id, self.config.new_member_join_timeout_ms, now_ms)
        self._maybe_prepare_rebalance_or_complete_join(group, f"new member {member_id} joined", now_ms)

    def _update_member_and_rebalance(self, group: ClassicGroup, member: Member, token: Hashable,
                                     request: JoinGroupRequest, reason: str, now_ms: int) -> None:
        group.update_member(member, tuple(request.protocols), request.rebalance_timeout_ms,
                            request.session_timeout_ms)
        self._park_join(member, token)
        self._maybe_prepare_rebalance_or_complete_join(group, f"{reason}: {member.member_id}", now_ms)

    def _update_static_member_and_rebalance(self, group: ClassicGroup, token: Hashable, request: JoinGroupRequest,
                                            old_member_id: str, new_member_id: str, now_ms: int) -> None:
        instance_id = request.group_instance_id
        assert instance_id is not None
        current_leader = group.leader_id
        old, new = group.replace_static_member(instance_id, old_member_id, new_member_id)
        # The old incarnation's parked requests are fenced; its heartbeat timer dies with its id.
        self._complete_join(old, JoinGroupResult(ErrorCode.FENCED_INSTANCE_ID, old_member_id))
        self._complete_sync(old, SyncGroupResult(ErrorCode.FENCED_INSTANCE_ID))
        self._cancel_heartbeat(group, old_member_id)
        self._schedule_heartbeat(group, new_member_id, new.session_timeout_ms, now_ms)
        old_protocols, old_rebalance_ms, old_session_ms = new.protocols, new.rebalance_timeout_ms, new.session_timeout_ms
        group.update_member(new, tuple(request.protocols), request.rebalance_timeout_ms, request.session_timeout_ms)
        self._park_join(new, token)
        if group.state is GroupState.STABLE:
            if group.protocol_name == group.select_protocol():
                # The same protocol: persist the new member id and hand back the old assignment, no rebalance.
                generation = group.generation_id

                def stored(error: ErrorCode, at_ms: int) -> None:
                    if not self._current(group) or group.members.get(new_member_id) is not new:
                        return
                    if error is not ErrorCode.NONE:
                        log.warning("group %s: storing static member %s failed (%s); reverting", group.group_id,
                                    instance_id, error.name)
                        group.update_member(new, old_protocols, old_rebalance_ms, old_session_ms)
                        _new, restored = group.replace_static_member(instance_id, new_member_id, old_member_id)
                        self._cancel_heartbeat(group, new_member_id)
                        self._schedule_heartbeat(group, old_member_id, restored.session_timeout_ms, at_ms)
                        if new.join_token is not None:
                            self._reply(new.join_token, JoinGroupResult(
                                group_write_error(error), UNKNOWN_MEMBER_ID, group.generation_id,
                                group.protocol_type, group.protocol_name, current_leader or ""))
                            new.join_token = None
                        return
                    if group.state is not GroupState.STABLE or group.generation_id != generation:
                        return  # a rebalance started meanwhile: the member gets that generation instead
                    if request.supports_skip_assignment:
                        is_leader = group.is_leader(new_member_id)
                        self._complete_join(new, self._generation_info(
                            group, new_member_id, leader_id=group.leader_id, include_members=is_leader,
                            skip_assignment=is_leader))
                    else:
                        # Older clients: name the old leader id so the new incarnation, even if it is the
                        # leader, does not compute an assignment a Stable group would never distribute.
                        self._complete_join(new, self._generation_info(
                            group, new_member_id, leader_id=current_leader, include_members=False))

                self._store_group(group, group.assignments(), stored)
            else:
                self._maybe_prepare_rebalance_or_complete_join(
                    group, f"static member {instance_id} changed the group protocol", now_ms)
        elif group.state is GroupState.COMPLETING_REBALANCE:
            # The leader may have assigned to the old member id: redo the rebalance.
            self._prepare_rebalance(group, f"static member {instance_id} replaced during sync", now_ms)
        else:
            self._maybe_complete_join_phase(group, now_ms)

    # -- SyncGroup ------------------------------------------------------------------------------------------
    def sync_group(self, token: Hashable, request: SyncGroupRequest, now_ms: int) -> list[Effect]:
        error = self._sync_error(request)
        if error is not None:
            self._reply(token, SyncGroupResult(error))
            return self._drain()
        group = self._groups[request.group_id]
        member = group.members[request.member_id]
        if group.state is GroupState.PREPARING_REBALANCE:
            self._reply(token, SyncGroupResult(ErrorCode.REBALANCE_IN_PROGRESS))
        elif group.state is GroupState.COMPLETING_REBALANCE:
            self._park_sync(member, token)
            self._remove_pending_sync_member(group, member.member_id)
            if group.is_leader(member.member_id):
                self._store_leader_assignment(group, request, now_ms)
        else:  # Stable: the assignment is known, hand it out
            self._remove_pending_sync_member(group, member.member_id)
            self._reply(token, SyncGroupResult(ErrorCode.NONE, group.protocol_type, group.protocol_name,
                                               member.assignment))
        return self._drain()

    def _sync_error(self, request: SyncGroupRequest) -> ErrorCode | None:
        error = self._membership_request_error(request.group_id)
        if error is not None:
            return error
        group = self._groups.get(request.group_id)
        if group is None or group.state is GroupState.EMPTY:
            return ErrorCode.UNKNOWN_MEMBER_ID
        if group.state is GroupState.DEAD:
            return ErrorCode.COORDINATOR_NOT_AVAILABLE
        error = group.validate_member(request.member_id, request.group_instance_id)
        if error is not None:
            return error
        if request.generation_id != group.generation_id:
            return ErrorCode.ILLEGAL_GENERATION
        if (_protocol_inconsistent(request.protocol_type, group.protocol_type)
                or _protocol_inconsistent(request.protocol_name, group.protocol_name)):
            return ErrorCode.INCONSISTENT_GROUP_PROTOCOL
        return None

    def _remove_pending_sync_member(self, group: ClassicGroup, member_id: str) -> None:
        group.pending_sync_members.discard(member_id)
        if not group.pending_sync_members or not group.is_in(GroupState.COMPLETING_REBALANCE, GroupState.STABLE):
            self._timers.cancel(("sync", group.group_id))

    def _store_leader_assignment(self, group: ClassicGroup, request: SyncGroupRequest, now_ms: int) -> None:
        given = dict(request.assignments)
        # Every member gets assignment bytes, empty when the leader left it out.
        assignment = {member_id: given.get(member_id, b"") for member_id in group.members}
        generation = group.generation_id

        def stored(error: ErrorCode, at_ms: int) -> None:
            # A member may have joined meanwhile: only this generation's CompletingRebalance may finish.
            if (not self._current(group) or group.state is not GroupState.COMPLETING_REBALANCE
                    or group.generation_id != generation):
                return
            if error is not ErrorCode.NONE:
                mapped = group_write_error(error)
                log.warning("group %s: storing generation %d failed: %s", group.group_id, generation, error.name)
                self._reset_and_propagate_assignment(group, mapped, at_ms)
                self._maybe_prepare_rebalance_or_complete_join(group, f"storing the assignment failed: {mapped.name}",
                                                               at_ms)
                return
            for member_id, member in group.members.items():
                member.assignment = assignment.get(member_id, b"")
            self._propagate_assignment(group, ErrorCode.NONE, at_ms)
            group.transition_to(GroupState.STABLE, at_ms)
            log.info("group %s: generation %d is stable", group.group_id, generation)

        self._store_group(group, assignment, stored)

    # -- Heartbeat -----------------------------------------------------------------------------------------
    def heartbeat(self, token: Hashable, request: HeartbeatRequest, now_ms: int) -> list[Effect]:
        self._reply(token, HeartbeatResult(self._heartbeat(request, now_ms)))
        return self._drain()

    def _heartbeat(self, request: HeartbeatRequest, now_ms: int) -> ErrorCode:
        error = self._membership_request_error(request.group_id)
        if error is not None:
            return error
        group = self._groups.get(request.group_id)
        if group is None:
            return ErrorCode.UNKNOWN_MEMBER_ID
        if group.state is GroupState.DEAD:
            return ErrorCode.COORDINATOR_NOT_AVAILABLE
        error = group.validate_member(request.member_id, request.group_instance_id)
        if error is not None:
            return error
        if request.generation_id != group.generation_id:
            return ErrorCode.ILLEGAL_GENERATION
        if group.state is GroupState.EMPTY:
            return ErrorCode.UNKNOWN_MEMBER_ID
        member = group.members[request.member_id]
        self._schedule_heartbeat(group, member.member_id, member.session_timeout_ms, now_ms)
        if group.state is GroupState.PREPARING_REBALANCE:
            return ErrorCode.REBALANCE_IN_PROGRESS
        return ErrorCode.NONE  # CompletingRebalance (heartbeats may start right after JoinGroup) or Stable

    # -- LeaveGroup ----------------------------------------------------------------------------------------
    def leave_group(self, token: Hashable, request: LeaveGroupRequest, now_ms: int) -> list[Effect]:
        error = self._membership_request_error(request.group_id)
        group = self._groups.get(request.group_id) if error is None else None
        if error is None and group is None:
            error = ErrorCode.UNKNOWN_MEMBER_ID
        elif group is not None and group.state is GroupState.DEAD:
            error = ErrorCode.COORDINATOR_NOT_AVAILABLE
        if error is not None:
            self._reply(token, LeaveGroupResult(error))
            return self._drain()
        assert group is not None
        results = [self._leave_one(group, leaving) for leaving in request.members]
        left = [result.member_id or result.group_instance_id for result in results if result.error is ErrorCode.NONE]
        if left:
            reason = f"members {left} left the group"
            if group.is_in(GroupState.STABLE, GroupState.COMPLETING_REBALANCE):
                self._maybe_prepare_rebalance_or_complete_join(group, reason, now_ms)
            elif group.state is GroupState.PREPARING_REBALANCE:
                self._maybe_complete_join_phase(group, now_ms)
        self._reply(token, LeaveGroupResult(ErrorCode.NONE, tuple(results)))
        return self._drain()

    def _leave_one(self, group: ClassicGroup, leaving: LeavingMember) -> LeftMember:
        member_id, instance_id = leaving.member_id, leaving.group_instance_id
        if member_id == UNKNOWN_MEMBER_ID:
            # Administrative removal by instance id (kafka-consumer-groups --delete --members ...).
            current = group.static_members.get(instance_id) if instance_id is not None else None
            if current is None:
                return LeftMember(member_id, instance_id, ErrorCode.UNKNOWN_MEMBER_ID)
            self._remove_member(group, group.members[current], ErrorCode.UNKNOWN_MEMBER_ID)
            return LeftMember(member_id, instance_id, ErrorCode.NONE)
        if member_id in group.pending_join_members:
            group.remove(member_id)
            self._cancel_heartbeat(group, member_id)
            return LeftMember(member_id, instance_id, ErrorCode.NONE)
        error = group.validate_member(member_id, instance_id)
        if error is not None:
            return LeftMember(member_id, instance_id, error)
        log.info("group %s: member %s left (%s)", group.group_id, member_id, leaving.reason or "no reason given")
        self._remove_member(group, group.members[member_id], ErrorCode.UNKNOWN_MEMBER_ID)
        return LeftMember(member_id, instance_id, ErrorCode.NONE)

    # -- OffsetCommit --------------------------------------------------------------------------------------
    def commit_offsets(self, token: Hashable, request: OffsetCommitRequest, now_ms: int) -> list[Effect]:
        error, group = self._commit_target(request, now_ms)
        if error is not None:
            self._reply(token, OffsetCommitResult(tuple((o.topic, o.partition, error) for o in request.offsets)))
            return self._drain()
        assert group is not None
        member = group.members.get(request.member_id)
        if member is not None and group.is_in(GroupState.STABLE, GroupState.PREPARING_REBALANCE):
            self._schedule_heartbeat(group, member.member_id, member.session_timeout_ms, now_ms)
        expire_ms = now_ms + request.retention_time_ms if request.retention_time_ms >= 0 else None
        results: dict[int, ErrorCode] = {}
        values: dict[TopicPartition, records.OffsetCommitValue] = {}
        batch: list[tuple[bytes, bytes | None]] = []
        for index, item in enumerate(request.offsets):
            metadata = item.metadata or ""
            if len(metadata) > self.config.offset_metadata_max_bytes:
                results[index] = ErrorCode.OFFSET_METADATA_TOO_LARGE
                continue
            value = records.OffsetCommitValue(item.offset, item.leader_epoch, metadata, now_ms, expire_ms)
            values[(item.topic, item.partition)] = value
            batch.append((records.encode_offset_commit_key(group.group_id, item.topic, item.partition),
                          records.encode_offset_commit_value(value)))
        if not batch:
            self._reply(token, self._commit_result(request, results, ErrorCode.NONE))
            self._drop_if_unused(group, now_ms)
            return self._drain()
        offsets = self._offsets.setdefault(group.group_id, GroupOffsets())
        offsets.begin_commit(list(values))

        def written(write_error: ErrorCode, at_ms: int) -> None:
            durable = write_error is ErrorCode.NONE
            if self._offsets.get(group.group_id) is offsets:
                offsets.finish_commit(values, durable)
            self._reply(token, self._commit_result(request, results,
                                                   ErrorCode.NONE if durable else offset_write_error(write_error)))
            if not durable:
                self._drop_if_unused(group, at_ms)

        self._append(group.group_id, batch, written)
        return self._drain()

    @staticmethod
    def _commit_result(request: OffsetCommitRequest, early: dict[int, ErrorCode], rest: ErrorCode) -> OffsetCommitResult:
        return OffsetCommitResult(tuple((item.topic, item.partition, early.get(index, rest))
                                        for index, item in enumerate(request.offsets)))

    def _commit_target(self, request: OffsetCommitRequest, now_ms: int) -> tuple[ErrorCode | None, ClassicGroup | None]:
        """The group a commit goes to (created for a consumer that does not use group management), or the
        error that rejects the whole request (ClassicGroup.validateOffsetCommit)."""
        error = self._coordinator_error(request.group_id)
        if error is not None:
            return error, None
        group = self._groups.get(request.group_id)
        if group is None:
            if request.generation_id < 0:
                return None, self._new_group(request.group_id, now_ms)
            return (ErrorCode.GROUP_ID_NOT_FOUND if request.api_version >= 9 else ErrorCode.ILLEGAL_GENERATION), None
        if group.state is GroupState.DEAD:
            return ErrorCode.COORDINATOR_NOT_AVAILABLE, None
        if request.generation_id < 0 and group.state is GroupState.EMPTY:
            return None, group
        if request.generation_id >= 0 or request.member_id or request.group_instance_id is not None:
            error = group.validate_member(request.member_id, request.group_instance_id)
            if error is not None:
                return error, None
            if request.generation_id != group.generation_id:
                return ErrorCode.ILLEGAL_GENERATION, None
        elif group.state is not GroupState.EMPTY:
            # No member id and no generation: only an Empty group accepts such commits.
            return ErrorCode.UNKNOWN_MEMBER_ID, None
        if group.state is GroupState.COMPLETING_REBALANCE:
            return ErrorCode.REBALANCE_IN_PROGRESS, None
        return None, group

    def _drop_if_unused(self, group: ClassicGroup, now_ms: int) -> None:
        """A group created only for a commit that then failed leaves nothing behind."""
        offsets = self._offsets.get(group.group_id)
        if (self._current(group) and group.state is GroupState.EMPTY and group.generation_id == 0
                and group.protocol_type is None and not group.pending_join_members and not offsets):
            group.transition_to(GroupState.DEAD, now_ms)
            del self._groups[group.group_id]
            self._offsets.pop(group.group_id, None)

    # -- OffsetFetch ---------------------------------------------------------------------------------------
    def fetch_offsets(self, token: Hashable, request: OffsetFetchRequest, now_ms: int) -> list[Effect]:
        self._reply(token, self._fetch_offsets(request))
        return self._drain()

    def _fetch_offsets(self, request: OffsetFetchRequest) -> OffsetFetchResult:
        error = self._coordinator_error(request.group_id)
        if error is not None:
            return OffsetFetchResult(error)
        offsets = self._offsets.get(request.group_id) or GroupOffsets()
        if request.partitions is None:
            wanted = sorted(offsets.committed)
        else:
            wanted = list(request.partitions)
        fetched = []
        for topic, partition in wanted:
            if request.require_stable and offsets.has_pending((topic, partition)):
                fetched.append(FetchedOffset(topic, partition, -1, -1, "", ErrorCode.UNSTABLE_OFFSET_COMMIT))
                continue
            value = offsets.get((topic, partition))
            if value is None:
                fetched.append(FetchedOffset(topic, partition, -1, -1, "", ErrorCode.NONE))
            else:
                fetched.append(FetchedOffset(topic, partition, value.offset, value.leader_epoch, value.metadata,
                                             ErrorCode.NONE))
        return OffsetFetchResult(ErrorCode.NONE, tuple(fetched))

    # -- DescribeGroups, ListGroups, DeleteGroups -----------------------------------------------------------
    def describe_groups(self, token: Hashable, group_ids: Iterable[str], now_ms: int) -> list[Effect]:
        self._reply(token, DescribeGroupsResult(tuple(self._describe(group_id) for group_id in group_ids)))
        return self._drain()

    def _describe(self, group_id: str) -> DescribedGroup:
        error = self._coordinator_error(group_id)
        if error is not None:
            return DescribedGroup(error, group_id, "", "", "", ())
        group = self._groups.get(group_id)
        if group is None or group.state is GroupState.DEAD:
            return DescribedGroup(ErrorCode.NONE, group_id, GroupState.DEAD.value, "", "", ())
        stable = group.state is GroupState.STABLE
        members = tuple(
            DescribedMember(m.member_id, m.group_instance_id, m.client_id, m.client_host,
                            m.metadata(group.protocol_name) if stable else b"", m.assignment if stable else b"")
            for m in group.members.values())
        return DescribedGroup(ErrorCode.NONE, group_id, group.state.value, group.protocol_type or "",
                              (group.protocol_name or "") if stable else "", members)

    def list_groups(self, token: Hashable, states_filter: Iterable[str], now_ms: int) -> list[Effect]:
        wanted = {state.lower() for state in states_filter}
        if self._loading:
            self._reply(token, ListGroupsResult(ErrorCode.COORDINATOR_LOAD_IN_PROGRESS))
            return self._drain()
        listed = tuple(
            ListedGroup(group.group_id, group.protocol_type or "", group.state.value)
            for group in self._groups.values()
            if self.partition_of(group.group_id) in self._owned and (not wanted or group.state.value.lower() in wanted))
        self._reply(token, ListGroupsResult(ErrorCode.NONE, listed))
        return self._drain()

    def delete_groups(self, token: Hashable, group_ids: Iterable[str], now_ms: int) -> list[Effect]:
        results: dict[str, ErrorCode] = {}
        batches: dict[int, tuple[list[str], list[tuple[bytes, bytes | None]]]] = {}
        for group_id in group_ids:
            if group_id in results:
                continue
            error = self._delete_error(group_id)
            if error is not None:
                results[group_id] = error
                continue
            results[group_id] = ErrorCode.NONE
            names, batch = batches.setdefault(self.partition_of(group_id), ([], []))
            names.append(group_id)
            batch.extend(self._delete_group(self._groups[group_id], now_ms))
        if not batches:
            self._reply(token, DeleteGroupsResult(tuple(results.items())))
            return self._drain()
        outstanding = [len(batches)]

        def written(names: list[str], error: ErrorCode, at_ms: int) -> None:
            if error is not ErrorCode.NONE:
                for name in names:
                    results[name] = group_write_error(error)
            outstanding[0] -= 1
            if outstanding[0] == 0:
                self._reply(token, DeleteGroupsResult(tuple(results.items())))

        for names, batch in batches.values():
            self._append(names[0], batch, lambda error, at_ms, names=names: written(names, error, at_ms))
        return self._drain()

    def _delete_error(self, group_id: str) -> ErrorCode | None:
        if not group_id:
            return ErrorCode.INVALID_GROUP_ID
        error = self._coordinator_error(group_id)
        if error is not None:
            return error
        group = self._groups.get(group_id)
        if group is None or group.state is GroupState.DEAD:
            return ErrorCode.GROUP_ID_NOT_FOUND
        if group.state is not GroupState.EMPTY:
            return ErrorCode.NON_EMPTY_GROUP
        return None

    def _delete_group(self, group: ClassicGroup, now_ms: int) -> list[tuple[bytes, bytes | None]]:
        """Removes an Empty group and returns the tombstones for its offsets and its metadata."""
        offsets = self._offsets.pop(group.group_id, None)
        batch: list[tuple[bytes, bytes | None]] = [
            (records.encode_offset_commit_key(group.group_id, topic, partition), None)
            for topic, partition in sorted(offsets.committed if offsets else ())]
        batch.append((records.encode_group_metadata_key(group.group_id), None))
        for member_id in list(group.pending_join_members):
            group.remove(member_id)
            self._cancel_heartbeat(group, member_id)
        self._timers.cancel(("join", group.group_id))
        self._timers.cancel(("sync", group.group_id))
        group.transition_to(GroupState.DEAD, now_ms)
        del self._groups[group.group_id]
        log.info("group %s deleted", group.group_id)
        return batch

    # -- retention --------------------------------------------------------------------------------------------
    def expire_offsets(self, now_ms: int) -> list[Effect]:
        """Drops offsets past ``offsets.retention.minutes`` and Empty groups left with none (Kafka runs this
        every ``offsets.retention.check.interval.ms``)."""
        for group in list(self._groups.values()):
            if self.partition_of(group.group_id) not in self._owned:
                continue
            batch = self._expire_group_offsets(group, now_ms)
            if batch:
                self._append(group.group_id, batch, lambda error, at_ms: None)
        return self._drain()

    def _expire_group_offsets(self, group: ClassicGroup, now_ms: int) -> list[tuple[bytes, bytes | None]]:
        offsets = self._offsets.get(group.group_id)
        batch: list[tuple[bytes, bytes | None]] = []
        if offsets is not None:
            if group.protocol_type is None:
                expired = offsets.expired(now_ms, self.config.offsets_retention_ms, None)
            elif group.state is GroupState.EMPTY:
                expired = offsets.expired(now_ms, self.config.offsets_retention_ms, group.state_timestamp_ms)
            else:
                expired = []  # members are consuming: their offsets stay
            offsets.remove(expired)
            batch += [(records.encode_offset_commit_key(group.group_id, topic, partition), None)
                      for topic, partition in expired]
            if expired:
                log.info("group %s: expired offsets of %d partition(s)", group.group_id, len(expired))
            if not offsets:
                del self._offsets[group.group_id]
        if (group.state is GroupState.EMPTY and group.group_id not in self._offsets
                and not group.pending_join_members):
            group.transition_to(GroupState.DEAD, now_ms)
            del self._groups[group.group_id]
            self._timers.cancel(("join", group.group_id))
            if group.generation_id != 0:  # a group that only stored offsets never wrote metadata
                batch.append((records.encode_group_metadata_key(group.group_id), None))
        return batch

    # -- writes completing --------------------------------------------------------------------------------------
    def on_append_complete(self, append_id: int, error: ErrorCode, now_ms: int) -> list[Effect]:
        partition, epoch, on_done = self._appends.pop(append_id)
        if error is ErrorCode.NONE and self._owned.get(partition) != epoch:
            error = ErrorCode.NOT_LEADER_OR_FOLLOWER  # we lost (or re-gained) the partition meanwhile
        on_done(error, now_ms)
        return self._drain()

    # -- partition ownership -------------------------------------------------------------------------------------
    def set_partition_count(self, num_partitions: int) -> None:
        invariant(num_partitions > 0, "__consumer_offsets needs at least one partition")
        invariant(self.num_partitions in (None, num_partitions) or not self._owned,
                  "the __consumer_offsets partition count cannot change while partitions are loaded")
        self.num_partitions = num_partitions

    def begin_loading(self, partition: int) -> None:
        """This node became leader of ``partition``: requests for its groups wait (LOAD_IN_PROGRESS).
        A partition is always loaded from scratch: one still served (an older epoch) is unloaded first."""
        invariant(partition not in self._owned, f"partition {partition} is loaded already: unload it first")
        self._loading.add(partition)

    def replay(self, partition: int, key: bytes, value: bytes | None, now_ms: int) -> None:
        """Applies one record of a partition being loaded, in log order."""
        invariant(partition in self._loading, f"replay into partition {partition}, which is not loading")
        parsed = records.decode_key(key)
        if isinstance(parsed, records.OffsetCommitKey):
            committed = None if value is None else records.decode_offset_commit_value(value)
            offsets = self._offsets.setdefault(parsed.group, GroupOffsets())
            offsets.replay((parsed.topic, parsed.partition), committed)
            if not offsets:
                del self._offsets[parsed.group]
        elif isinstance(parsed, records.GroupMetadataKey):
            metadata = None if value is None else records.decode_group_metadata_value(value)
            self._groups.pop(parsed.group, None)
            if metadata is not None:
                self._load_group(parsed.group, metadata, now_ms)

    def _load_group(self, group_id: str, value: records.GroupMetadataValue, now_ms: int) -> None:
        state = GroupState.STABLE if value.members else GroupState.EMPTY
        group = self._new_group(group_id, now_ms, state)
        group.generation_id = value.generation
        group.protocol_type = value.protocol_type or None
        group.protocol_name = value.protocol
        group.state_timestamp_ms = value.current_state_timestamp_ms if value.current_state_timestamp_ms >= 0 else None
        for stored in value.members:
            group.add(Member(stored.member_id, stored.group_instance_id, stored.client_id, stored.client_host,
                             stored.rebalance_timeout_ms, stored.session_timeout_ms, value.protocol_type,
                             ((value.protocol or "", stored.subscription),), assignment=stored.assignment))
        if value.leader in group.members:
            group.leader_id = value.leader

    def finish_loading(self, partition: int, leader_epoch: int, now_ms: int) -> list[Effect]:
        """The partition is replayed: serve its groups.  Members get a fresh session timeout from now."""
        self._loading.discard(partition)
        self._owned[partition] = leader_epoch
        for group_id in list(self._offsets):
            if self.partition_of(group_id) == partition and group_id not in self._groups:
                self._new_group(group_id, now_ms)  # offsets committed without group management
        for group in self._groups.values():
            if self.partition_of(group.group_id) != partition:
                continue
            for member in group.members.values():
                self._schedule_heartbeat(group, member.member_id, member.session_timeout_ms, now_ms)
        return self._drain()

    def unload_partition(self, partition: int, now_ms: int) -> list[Effect]:
        """This node is no longer the partition's leader: forget its groups; parked requests get
        NOT_COORDINATOR and clients look the coordinator up again."""
        self._owned.pop(partition, None)
        self._loading.discard(partition)
        for group in list(self._groups.values()):
            if self.partition_of(group.group_id) != partition:
                continue
            for member in group.members.values():
                self._complete_join(member, JoinGroupResult(ErrorCode.NOT_COORDINATOR, member.member_id))
                self._complete_sync(member, SyncGroupResult(ErrorCode.NOT_COORDINATOR))
                self._cancel_heartbeat(group, member.member_id)
            for member_id in group.pending_join_members:
                self._cancel_heartbeat(group, member_id)
            self._timers.cancel(("join", group.group_id))
            self._timers.cancel(("sync", group.group_id))
            group.transition_to(GroupState.DEAD, now_ms)
            del self._groups[group.group_id]
        for group_id in list(self._offsets):
            if self.partition_of(group_id) == partition:
                del self._offsets[group_id]
        return self._drain()
