"""Group metadata: membership of every classic group and its rebalances (JoinGroup, SyncGroup, Heartbeat,
LeaveGroup, DescribeGroups, ListGroups), as Kafka's GroupMetadataManager does for classic groups.

Kept apart from the offsets (``offset_metadata``) along Kafka's seam: a group's generation, members, their
session timers and the stored assignment change together, and the offsets only ask this module whether a
committer belongs to the current generation.  Timers (in the shard's ``Timers``, keyed like Kafka's): a
member's heartbeat deadline (its session timeout; 5 min for a member that just joined and has no id to
heartbeat with), a group's join phase (the rebalance timeout, or the initial delay
``group.initial.rebalance.delay.ms`` for a group that was Empty: only a new group waits for more members, in
steps, up to the rebalance timeout), and the sync phase (members that do not SyncGroup within the rebalance
timeout are removed).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Hashable, Iterable

from cluster.core.errors import ErrorCode, invariant
from cluster.groups import records
from cluster.groups.api import (
    UNKNOWN_MEMBER_ID,
    DescribedGroup,
    DescribedMember,
    DescribeGroupsResult,
    Effect,
    HeartbeatRequest,
    HeartbeatResult,
    JoinedMember,
    JoinGroupRequest,
    JoinGroupResult,
    LeaveGroupRequest,
    LeaveGroupResult,
    LeavingMember,
    LeftMember,
    ListedGroup,
    ListGroupsResult,
    SyncGroupRequest,
    SyncGroupResult,
    group_write_error,
)
from cluster.groups.group import ClassicGroup, GroupState, Member
from cluster.groups.shard import ShardContext

log = logging.getLogger("cluster.groups")

Records = list[tuple[bytes, bytes | None]]


def _protocol_inconsistent(requested: str | None, current: str | None) -> bool:
    return requested is not None and current is not None and requested != current


class GroupMetadataManager:
    """The classic groups of the ``__consumer_offsets`` partitions this node leads."""

    def __init__(self, ctx: ShardContext, new_member_id: Callable[[str], str],
                 on_transition: Callable[[str, GroupState, GroupState], None] | None = None) -> None:
        self._ctx = ctx
        self._new_member_id = new_member_id
        self._on_transition = on_transition
        self._groups: dict[str, ClassicGroup] = {}

    def group(self, group_id: str) -> ClassicGroup | None:
        return self._groups.get(group_id)

    def group_ids(self) -> list[str]:
        return list(self._groups)

    def new_group(self, group_id: str, now_ms: int, state: GroupState = GroupState.EMPTY) -> ClassicGroup:
        group = ClassicGroup(group_id, now_ms, state, self._on_transition)
        self._groups[group_id] = group
        return group

    def is_current(self, group: ClassicGroup) -> bool:
        return self._groups.get(group.group_id) is group

    def _membership_request_error(self, group_id: str) -> ErrorCode | None:
        """JoinGroup, SyncGroup, Heartbeat, LeaveGroup need a non-empty group id and the coordinator."""
        if not group_id:
            return ErrorCode.INVALID_GROUP_ID
        return self._ctx.coordinator_error(group_id)

    # -- session timeouts ------------------------------------------------------------------------------------
    def schedule_heartbeat(self, group: ClassicGroup, member_id: str, timeout_ms: int, now_ms: int) -> None:
        group_id = group.group_id
        self._ctx.timers.schedule(("heartbeat", group_id, member_id), now_ms + timeout_ms,
                              lambda at_ms: self._expire_heartbeat(group_id, member_id, at_ms))

    def _cancel_heartbeat(self, group: ClassicGroup, member_id: str) -> None:
        self._ctx.timers.cancel(("heartbeat", group.group_id, member_id))

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

    # -- parking and answering members -----------------------------------------------------------------------
    def _park_join(self, member: Member, token: Hashable) -> None:
        if member.join_token is not None and member.join_token != token:
            # The client retried (its earlier request timed out); that request is answered so no one waits on it.
            self._ctx.reply(member.join_token, JoinGroupResult(ErrorCode.REBALANCE_IN_PROGRESS, member.member_id))
        member.join_token = token

    def _park_sync(self, member: Member, token: Hashable) -> None:
        if member.sync_token is not None and member.sync_token != token:
            self._ctx.reply(member.sync_token, SyncGroupResult(ErrorCode.REBALANCE_IN_PROGRESS))
        member.sync_token = token

    def _complete_join(self, member: Member, result: JoinGroupResult) -> bool:
        if member.join_token is None:
            return False
        token, member.join_token = member.join_token, None
        self._ctx.reply(token, result)
        return True

    def _complete_sync(self, member: Member, result: SyncGroupResult) -> bool:
        if member.sync_token is None:
            return False
        token, member.sync_token = member.sync_token, None
        self._ctx.reply(token, result)
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

    # -- rebalance machinery ---------------------------------------------------------------------------------
    def _prepare_rebalance(self, group: ClassicGroup, reason: str, now_ms: int) -> None:
        if group.state is GroupState.COMPLETING_REBALANCE:
            self._reset_and_propagate_assignment(group, ErrorCode.REBALANCE_IN_PROGRESS, now_ms)
        group.pending_sync_members.clear()
        self._ctx.timers.cancel(("sync", group.group_id))
        initial = group.state is GroupState.EMPTY
        if initial:
            # Only a new (Empty) group waits for more members before its first generation.
            delay_ms = self._ctx.config.initial_rebalance_delay_ms
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
        self._ctx.timers.schedule(("join", group_id), now_ms + delay_ms,
                              lambda at_ms: self._initial_join_expired(group_id, delay_ms, remaining_ms, at_ms))

    def _initial_join_expired(self, group_id: str, delay_ms: int, remaining_ms: int, now_ms: int) -> None:
        group = self._groups.get(group_id)
        if group is None or group.state is not GroupState.PREPARING_REBALANCE:
            return
        if group.new_member_added and remaining_ms != 0:
            # Members are still arriving: wait another step, never beyond the rebalance timeout.
            group.new_member_added = False
            next_delay_ms = min(self._ctx.config.initial_rebalance_delay_ms, remaining_ms)
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
        self._ctx.timers.schedule(("join", group_id), now_ms + group.rebalance_timeout_ms(),
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
        self._ctx.timers.cancel(("join", group.group_id))
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
            self.schedule_heartbeat(group, member.member_id, member.session_timeout_ms, now_ms)
            member.is_new = False
            group.pending_sync_members.add(member.member_id)
        generation = group.generation_id
        group_id = group.group_id
        self._ctx.timers.schedule(("sync", group_id), now_ms + group.rebalance_timeout_ms(),
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
                self.schedule_heartbeat(group, member.member_id, member.session_timeout_ms, now_ms)

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
        self._ctx.append(group.group_id, [(key, records.encode_group_metadata_value(value))], on_done)

    # -- JoinGroup -------------------------------------------------------------------------------------------
    def join_group(self, token: Hashable, request: JoinGroupRequest, now_ms: int) -> list[Effect]:
        error = self._membership_request_error(request.group_id)
        if error is None and not (self._ctx.config.min_session_timeout_ms <= request.session_timeout_ms
                                  <= self._ctx.config.max_session_timeout_ms):
            error = ErrorCode.INVALID_SESSION_TIMEOUT
        if error is not None:
            self._ctx.reply(token, JoinGroupResult(error, request.member_id))
            return self._ctx.drain()
        is_unknown = request.member_id == UNKNOWN_MEMBER_ID
        group = self._groups.get(request.group_id)
        created = False
        if group is None:
            if not is_unknown:
                self._ctx.reply(token, JoinGroupResult(ErrorCode.UNKNOWN_MEMBER_ID, request.member_id))
                return self._ctx.drain()
            group, created = self.new_group(request.group_id, now_ms), True
        if not self._accept_joining_member(group, request.member_id):
            member = group.members.get(request.member_id)
            if member is not None:
                self._remove_member(group, member, ErrorCode.GROUP_MAX_SIZE_REACHED)
            group.pending_join_members.discard(request.member_id)
            self._ctx.reply(token, JoinGroupResult(ErrorCode.GROUP_MAX_SIZE_REACHED, UNKNOWN_MEMBER_ID))
            self._maybe_complete_join_phase(group, now_ms)
        elif is_unknown:
            self._join_new_member(group, token, request, now_ms)
        else:
            self._join_existing_member(group, token, request, now_ms)
        if created and not group.members and not group.pending_join_members and group.state is GroupState.EMPTY:
            del self._groups[group.group_id]  # nothing joined: do not keep a group that never existed
        return self._ctx.drain()

    def _accept_joining_member(self, group: ClassicGroup, member_id: str) -> bool:
        limit = self._ctx.config.max_group_size
        if group.is_in(GroupState.EMPTY, GroupState.DEAD):
            return True
        member = group.members.get(member_id)
        if group.state is GroupState.PREPARING_REBALANCE:
            return (member is not None and member.is_awaiting_join) or group.num_awaiting_join() < limit
        return member is not None or len(group.members) < limit

    def _join_new_member(self, group: ClassicGroup, token: Hashable, request: JoinGroupRequest,
                         now_ms: int) -> None:
        if group.state is GroupState.DEAD:
            self._ctx.reply(token, JoinGroupResult(ErrorCode.COORDINATOR_NOT_AVAILABLE))
            return
        if not group.supports_protocols(request.protocol_type, [name for name, _ in request.protocols]):
            self._ctx.reply(token, JoinGroupResult(ErrorCode.INCONSISTENT_GROUP_PROTOCOL))
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
            self.schedule_heartbeat(group, new_member_id, request.session_timeout_ms, now_ms)
            self._ctx.reply(token, JoinGroupResult(ErrorCode.MEMBER_ID_REQUIRED, new_member_id))
        else:
            self._add_member_and_rebalance(group, token, request, new_member_id, now_ms)

    def _join_existing_member(self, group: ClassicGroup, token: Hashable, request: JoinGroupRequest,
                              now_ms: int) -> None:
        member_id = request.member_id
        if group.state is GroupState.DEAD:
            self._ctx.reply(token, JoinGroupResult(ErrorCode.COORDINATOR_NOT_AVAILABLE, member_id))
            return
        if not group.supports_protocols(request.protocol_type, [name for name, _ in request.protocols]):
            self._ctx.reply(token, JoinGroupResult(ErrorCode.INCONSISTENT_GROUP_PROTOCOL, member_id))
            return
        if member_id in group.pending_join_members:
            if request.group_instance_id is not None:  # pending members are always dynamic
                self._ctx.reply(token, JoinGroupResult(ErrorCode.UNKNOWN_MEMBER_ID, member_id))
                return
            self._add_member_and_rebalance(group, token, request, member_id, now_ms)
            return
        error = group.validate_member(member_id, request.group_instance_id)
        if error is not None:
            self._ctx.reply(token, JoinGroupResult(error, member_id))
            return
        member = group.members[member_id]
        if group.state is GroupState.PREPARING_REBALANCE:
            self._update_member_and_rebalance(group, member, token, request, "member rejoining", now_ms)
        elif group.state is GroupState.COMPLETING_REBALANCE:
            if member.matches(request.protocols):
                # It lost our earlier response: send the current generation again.
                self._ctx.reply(token, self._generation_info(group, member_id, leader_id=group.leader_id,
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
                self._ctx.reply(token, self._generation_info(group, member_id, leader_id=group.leader_id,
                                                         include_members=False))
        else:
            self._ctx.reply(token, JoinGroupResult(ErrorCode.UNKNOWN_MEMBER_ID, member_id))

    def _add_member_and_rebalance(self, group: ClassicGroup, token: Hashable, request: JoinGroupRequest,
                                  member_id: str, now_ms: int) -> None:
        member = Member(member_id, request.group_instance_id, request.client_id, request.client_host,
                        request.rebalance_timeout_ms, request.session_timeout_ms, request.protocol_type,
                        tuple(request.protocols), join_token=token, is_new=True)
        if group.state is GroupState.PREPARING_REBALANCE and group.previous_state is GroupState.EMPTY:
            group.new_member_added = True  # extends the initial delay by another step
        group.add(member)
        # A new member cannot heartbeat (it has no generation yet); bound its wait instead.
        self.schedule_heartbeat(group, member_id, self._ctx.config.new_member_join_timeout_ms, now_ms)
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
        self.schedule_heartbeat(group, new_member_id, new.session_timeout_ms, now_ms)
        old_protocols, old_rebalance_ms, old_session_ms = new.protocols, new.rebalance_timeout_ms, new.session_timeout_ms
        group.update_member(new, tuple(request.protocols), request.rebalance_timeout_ms, request.session_timeout_ms)
        self._park_join(new, token)
        if group.state is GroupState.STABLE:
            if group.protocol_name == group.select_protocol():
                # The same protocol: persist the new member id and hand back the old assignment, no rebalance.
                generation = group.generation_id

                def stored(error: ErrorCode, at_ms: int) -> None:
                    if not self.is_current(group) or group.members.get(new_member_id) is not new:
                        return
                    if error is not ErrorCode.NONE:
                        log.warning("group %s: storing static member %s failed (%s); reverting", group.group_id,
                                    instance_id, error.name)
                        group.update_member(new, old_protocols, old_rebalance_ms, old_session_ms)
                        _new, restored = group.replace_static_member(instance_id, new_member_id, old_member_id)
                        self._cancel_heartbeat(group, new_member_id)
                        self.schedule_heartbeat(group, old_member_id, restored.session_timeout_ms, at_ms)
                        if new.join_token is not None:
                            self._ctx.reply(new.join_token, JoinGroupResult(
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

    # -- SyncGroup -------------------------------------------------------------------------------------------
    def sync_group(self, token: Hashable, request: SyncGroupRequest, now_ms: int) -> list[Effect]:
        error = self._sync_error(request)
        if error is not None:
            self._ctx.reply(token, SyncGroupResult(error))
            return self._ctx.drain()
        group = self._groups[request.group_id]
        member = group.members[request.member_id]
        if group.state is GroupState.PREPARING_REBALANCE:
            self._ctx.reply(token, SyncGroupResult(ErrorCode.REBALANCE_IN_PROGRESS))
        elif group.state is GroupState.COMPLETING_REBALANCE:
            self._park_sync(member, token)
            self._remove_pending_sync_member(group, member.member_id)
            if group.is_leader(member.member_id):
                self._store_leader_assignment(group, request, now_ms)
        else:  # Stable: the assignment is known, hand it out
            self._remove_pending_sync_member(group, member.member_id)
            self._ctx.reply(token, SyncGroupResult(ErrorCode.NONE, group.protocol_type, group.protocol_name,
                                               member.assignment))
        return self._ctx.drain()

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
            self._ctx.timers.cancel(("sync", group.group_id))

    def _store_leader_assignment(self, group: ClassicGroup, request: SyncGroupRequest, now_ms: int) -> None:
        given = dict(request.assignments)
        # Every member gets assignment bytes, empty when the leader left it out.
        assignment = {member_id: given.get(member_id, b"") for member_id in group.members}
        generation = group.generation_id

        def stored(error: ErrorCode, at_ms: int) -> None:
            # A member may have joined meanwhile: only this generation's CompletingRebalance may finish.
            if (not self.is_current(group) or group.state is not GroupState.COMPLETING_REBALANCE
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

    # -- Heartbeat -------------------------------------------------------------------------------------------
    def heartbeat(self, token: Hashable, request: HeartbeatRequest, now_ms: int) -> list[Effect]:
        self._ctx.reply(token, HeartbeatResult(self._heartbeat(request, now_ms)))
        return self._ctx.drain()

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
        self.schedule_heartbeat(group, member.member_id, member.session_timeout_ms, now_ms)
        if group.state is GroupState.PREPARING_REBALANCE:
            return ErrorCode.REBALANCE_IN_PROGRESS
        return ErrorCode.NONE  # CompletingRebalance (heartbeats may start right after JoinGroup) or Stable

    # -- LeaveGroup ------------------------------------------------------------------------------------------
    def leave_group(self, token: Hashable, request: LeaveGroupRequest, now_ms: int) -> list[Effect]:
        error = self._membership_request_error(request.group_id)
        group = self._groups.get(request.group_id) if error is None else None
        if error is None and group is None:
            error = ErrorCode.UNKNOWN_MEMBER_ID
        elif group is not None and group.state is GroupState.DEAD:
            error = ErrorCode.COORDINATOR_NOT_AVAILABLE
        if error is not None:
            self._ctx.reply(token, LeaveGroupResult(error))
            return self._ctx.drain()
        assert group is not None
        results = [self._leave_one(group, leaving) for leaving in request.members]
        left = [result.member_id or result.group_instance_id for result in results if result.error is ErrorCode.NONE]
        if left:
            reason = f"members {left} left the group"
            if group.is_in(GroupState.STABLE, GroupState.COMPLETING_REBALANCE):
                self._maybe_prepare_rebalance_or_complete_join(group, reason, now_ms)
            elif group.state is GroupState.PREPARING_REBALANCE:
                self._maybe_complete_join_phase(group, now_ms)
        self._ctx.reply(token, LeaveGroupResult(ErrorCode.NONE, tuple(results)))
        return self._ctx.drain()

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

    # -- DescribeGroups, ListGroups --------------------------------------------------------------------------
    def describe_groups(self, token: Hashable, group_ids: Iterable[str], now_ms: int) -> list[Effect]:
        self._ctx.reply(token, DescribeGroupsResult(tuple(self._describe(group_id) for group_id in group_ids)))
        return self._ctx.drain()

    def _describe(self, group_id: str) -> DescribedGroup:
        error = self._ctx.coordinator_error(group_id)
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
        if self._ctx.loading:
            self._ctx.reply(token, ListGroupsResult(ErrorCode.COORDINATOR_LOAD_IN_PROGRESS))
            return self._ctx.drain()
        listed = tuple(
            ListedGroup(group.group_id, group.protocol_type or "", group.state.value)
            for group in self._groups.values()
            if self._ctx.owns_group(group.group_id) and (not wanted or group.state.value.lower() in wanted))
        self._ctx.reply(token, ListGroupsResult(ErrorCode.NONE, listed))
        return self._ctx.drain()

    # -- DeleteGroups and retention (the coordinator pairs these with the offsets' tombstones) ---------------
    def delete_error(self, group_id: str) -> ErrorCode | None:
        """Why DeleteGroups may not delete ``group_id`` (None: it may)."""
        if not group_id:
            return ErrorCode.INVALID_GROUP_ID
        error = self._ctx.coordinator_error(group_id)
        if error is not None:
            return error
        group = self._groups.get(group_id)
        if group is None or group.state is GroupState.DEAD:
            return ErrorCode.GROUP_ID_NOT_FOUND
        if group.state is not GroupState.EMPTY:
            return ErrorCode.NON_EMPTY_GROUP
        return None

    def delete_group(self, group_id: str, now_ms: int) -> Records:
        """Removes an Empty group and returns the tombstone of its metadata."""
        group = self._groups[group_id]
        for member_id in list(group.pending_join_members):
            group.remove(member_id)
            self._cancel_heartbeat(group, member_id)
        self._ctx.timers.cancel(("join", group_id))
        self._ctx.timers.cancel(("sync", group_id))
        self.forget(group, now_ms)
        log.info("group %s deleted", group_id)
        return [(records.encode_group_metadata_key(group_id), None)]

    def owned_groups(self) -> list[ClassicGroup]:
        """The groups of the partitions this node serves (not those still loading)."""
        return [group for group in self._groups.values() if self._ctx.owns_group(group.group_id)]

    def delete_if_abandoned(self, group: ClassicGroup, has_offsets: bool, now_ms: int) -> Records:
        """An Empty group with no offsets left and nobody about to join is dropped (Kafka's retention does the
        same); returns its metadata tombstone if it ever wrote metadata."""
        if group.state is not GroupState.EMPTY or has_offsets or group.pending_join_members:
            return []
        self.forget(group, now_ms)
        self._ctx.timers.cancel(("join", group.group_id))
        if group.generation_id == 0:  # a group that only stored offsets never wrote metadata
            return []
        return [(records.encode_group_metadata_key(group.group_id), None)]

    def forget(self, group: ClassicGroup, now_ms: int) -> None:
        group.transition_to(GroupState.DEAD, now_ms)
        del self._groups[group.group_id]

    # -- loading and unloading a __consumer_offsets partition (driven by cluster.groups.loading) -------------
    def load_group(self, group_id: str, value: records.GroupMetadataValue | None, now_ms: int) -> None:
        """Replays one group metadata record: the latest value wins, a tombstone (None) removes the group."""
        self._groups.pop(group_id, None)
        if value is None:
            return
        state = GroupState.STABLE if value.members else GroupState.EMPTY
        group = self.new_group(group_id, now_ms, state)
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

    def resume_sessions(self, partition: int, now_ms: int) -> None:
        """The partition is served again: every member of its groups gets a fresh session timeout from now."""
        for group in self._groups.values():
            if self._ctx.partition_of(group.group_id) != partition:
                continue
            for member in group.members.values():
                self.schedule_heartbeat(group, member.member_id, member.session_timeout_ms, now_ms)

    def unload(self, partition: int, now_ms: int) -> None:
        """Forgets the partition's groups; parked requests get NOT_COORDINATOR so clients look it up again."""
        for group in list(self._groups.values()):
            if self._ctx.partition_of(group.group_id) != partition:
                continue
            for member in group.members.values():
                self._complete_join(member, JoinGroupResult(ErrorCode.NOT_COORDINATOR, member.member_id))
                self._complete_sync(member, SyncGroupResult(ErrorCode.NOT_COORDINATOR))
                self._cancel_heartbeat(group, member.member_id)
            for member_id in group.pending_join_members:
                self._cancel_heartbeat(group, member_id)
            self._ctx.timers.cancel(("join", group.group_id))
            self._ctx.timers.cancel(("sync", group.group_id))
            self.forget(group, now_ms)
