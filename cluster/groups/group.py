"""A classic consumer group: its members, its state and the one table of legal state transitions.

The states are Kafka's (``ClassicGroupState``): Empty -> PreparingRebalance (a member joins) ->
CompletingRebalance (every expected member joined, or the rebalance timeout passed) -> Stable (the leader's
SyncGroup carried the assignment); Stable/CompletingRebalance -> PreparingRebalance when a member joins,
leaves, changes its metadata or misses its heartbeats; PreparingRebalance -> Empty when nobody rejoined; and
any state -> Dead when the group is deleted, expired or unloaded.  ``transition_to`` refuses everything else,
so a bug shows up as an ``InvariantViolation`` instead of a group wedged in a state no request leaves.

A member parked in JoinGroup or SyncGroup is represented by the request token it waits on (``join_token``,
``sync_token``); the coordinator answers those tokens, the shell maps them to network responses.
"""

from __future__ import annotations

import enum
from collections import Counter
from collections.abc import Callable, Hashable
from dataclasses import dataclass

from cluster.core.errors import ErrorCode, invariant


class GroupState(enum.Enum):
    EMPTY = "Empty"
    PREPARING_REBALANCE = "PreparingRebalance"
    COMPLETING_REBALANCE = "CompletingRebalance"
    STABLE = "Stable"
    DEAD = "Dead"


# Target state -> the states a group may enter it from (ClassicGroupState.validPreviousStates).
VALID_PREVIOUS_STATES: dict[GroupState, frozenset[GroupState]] = {
    GroupState.EMPTY: frozenset({GroupState.PREPARING_REBALANCE}),
    GroupState.PREPARING_REBALANCE: frozenset(
        {GroupState.STABLE, GroupState.COMPLETING_REBALANCE, GroupState.EMPTY}),
    GroupState.COMPLETING_REBALANCE: frozenset({GroupState.PREPARING_REBALANCE}),
    GroupState.STABLE: frozenset({GroupState.COMPLETING_REBALANCE}),
    GroupState.DEAD: frozenset(GroupState),
}

Protocols = tuple[tuple[str, bytes], ...]  # (name, metadata) in the member's order of preference


@dataclass
class Member:
    member_id: str
    group_instance_id: str | None
    client_id: str
    client_host: str
    rebalance_timeout_ms: int
    session_timeout_ms: int
    protocol_type: str
    protocols: Protocols
    assignment: bytes = b""
    join_token: Hashable | None = None  # a JoinGroup parked until the join phase completes
    sync_token: Hashable | None = None  # a SyncGroup parked until the leader's assignment is stored
    is_new: bool = False  # joined in the current rebalance; may not count on "awaiting join" to survive

    @property
    def is_static(self) -> bool:
        return self.group_instance_id is not None

    @property
    def is_awaiting_join(self) -> bool:
        return self.join_token is not None

    @property
    def is_awaiting_sync(self) -> bool:
        return self.sync_token is not None

    def protocol_names(self) -> list[str]:
        return [name for name, _ in self.protocols]

    def metadata(self, protocol: str | None) -> bytes:
        for name, metadata in self.protocols:
            if name == protocol:
                return metadata
        return b""

    def matches(self, protocols: Protocols) -> bool:
        """Same protocols, metadata and order: a rejoin with nothing new need not rebalance."""
        return tuple(protocols) == tuple(self.protocols)

    def vote(self, candidates: set[str]) -> str:
        """The member's most preferred protocol among those every member supports."""
        for name, _ in self.protocols:
            if name in candidates:
                return name
        raise AssertionError(f"member {self.member_id} supports none of {sorted(candidates)}")

    def has_satisfied_heartbeat(self) -> bool:
        """Asked when the member's heartbeat deadline passes (ClassicGroupMember.hasSatisfiedHeartbeat)."""
        if self.is_new:
            return False  # a new member that never completed its join is dropped
        return self.is_awaiting_join or self.is_awaiting_sync  # parked in a rebalance counts as alive


class ClassicGroup:
    def __init__(self, group_id: str, now_ms: int, state: GroupState = GroupState.EMPTY,
                 on_transition: Callable[[str, GroupState, GroupState], None] | None = None) -> None:
        self.group_id = group_id
        self._on_transition = on_transition
        self.state = state
        self.previous_state = state
        self.state_timestamp_ms: int | None = now_ms
        self.generation_id = 0
        self.protocol_type: str | None = None
        self.protocol_name: str | None = None
        self.leader_id: str | None = None
        self.members: dict[str, Member] = {}
        self.static_members: dict[str, str] = {}  # group_instance_id -> member_id
        self.pending_join_members: set[str] = set()  # got MEMBER_ID_REQUIRED, not yet rejoined
        self.pending_sync_members: set[str] = set()  # got a JoinGroup response, no SyncGroup yet
        self.new_member_added = False  # a member joined during the initial (delayed) rebalance
        self._supported_protocols: Counter[str] = Counter()

    def __repr__(self) -> str:
        return (f"ClassicGroup({self.group_id!r}, {self.state.value}, generation={self.generation_id}, "
                f"members={list(self.members)})")

    # state --------------------------------------------------------------------------------------------
    def transition_to(self, target: GroupState, now_ms: int) -> None:
        invariant(self.state in VALID_PREVIOUS_STATES[target],
                  f"group {self.group_id}: illegal transition {self.state.value} -> {target.value}")
        self.previous_state = self.state
        self.state = target
        self.state_timestamp_ms = now_ms
        if self._on_transition is not None:
            self._on_transition(self.group_id, self.previous_state, target)

    def is_in(self, *states: GroupState) -> bool:
        return self.state in states

    def can_rebalance(self) -> bool:
        return self.state in VALID_PREVIOUS_STATES[GroupState.PREPARING_REBALANCE]

    # members ------------------------------------------------------------------------------------------
    def is_leader(self, member_id: str) -> bool:
        return self.leader_id is not None and self.leader_id == member_id

    def add(self, member: Member) -> None:
        if member.group_instance_id is not None:
            invariant(member.group_instance_id not in self.static_members,
                      f"static member {member.group_instance_id} is already in group {self.group_id}")
            self.static_members[member.group_instance_id] = member.member_id
        if not self.members:
            self.protocol_type = member.protocol_type
        invariant(self.protocol_type == member.protocol_type, "member protocol type differs from the group's")
        if self.leader_id is None:
            self.leader_id = member.member_id
        self.members[member.member_id] = member
        self._supported_protocols.update(member.protocol_names())
        self.pending_join_members.discard(member.member_id)

    def remove(self, member_id: str) -> Member | None:
        member = self.members.pop(member_id, None)
        if member is not None:
            self._supported_protocols.subtract(member.protocol_names())
            if member.group_instance_id is not None:
                self.static_members.pop(member.group_instance_id, None)
        if self.is_leader(member_id):
            self.leader_id = next(iter(self.members), None)
        self.pending_join_members.discard(member_id)
        self.pending_sync_members.discard(member_id)
        return member

    def update_member(self, member: Member, protocols: Protocols, rebalance_timeout_ms: int,
                      session_timeout_ms: int) -> None:
        self._supported_protocols.subtract(member.protocol_names())
        member.protocols = tuple(protocols)
        self._supported_protocols.update(member.protocol_names())
        member.rebalance_timeout_ms = rebalance_timeout_ms
        member.session_timeout_ms = session_timeout_ms

    def replace_static_member(self, group_instance_id: str, old_member_id: str, new_member_id: str) -> tuple[
            Member, Member]:
        """Moves a static member to a new member id, keeping its protocols and assignment.  Returns
        (old member object, new member object); the caller fences the old one's parked requests."""
        old = self.members.pop(old_member_id)
        new = Member(new_member_id, old.group_instance_id, old.client_id, old.client_host,
                     old.rebalance_timeout_ms, old.session_timeout_ms, old.protocol_type, old.protocols,
                     assignment=old.assignment)
        self.members[new_member_id] = new
        if self.is_leader(old_member_id):
            self.leader_id = new_member_id
        self.static_members[group_instance_id] = new_member_id
        if old_member_id in self.pending_sync_members:
            self.pending_sync_members.discard(old_member_id)
            self.pending_sync_members.add(new_member_id)
        return old, new

    def validate_member(self, member_id: str, group_instance_id: str | None) -> ErrorCode | None:
        """None when the (member, instance) pair is current, else the error (ClassicGroup.validateMember): an
        instance id now owned by another member id means this one was fenced by a newer incarnation."""
        if group_instance_id is not None:
            existing = self.static_members.get(group_instance_id)
            if existing is None:
                return ErrorCode.UNKNOWN_MEMBER_ID
            if existing != member_id:
                return ErrorCode.FENCED_INSTANCE_ID
        if member_id not in self.members:
            return ErrorCode.UNKNOWN_MEMBER_ID
        return None

    def num_awaiting_join(self) -> int:
        return sum(1 for member in self.members.values() if member.is_awaiting_join)

    def has_all_members_joined(self) -> bool:
        return self.num_awaiting_join() == len(self.members) and not self.pending_join_members

    def not_yet_rejoined_members(self) -> list[Member]:
        return [member for member in self.members.values() if not member.is_awaiting_join]

    def maybe_elect_new_joined_leader(self) -> bool:
        """Keeps a leader that rejoined, else promotes any member that did; False if nobody rejoined."""
        if self.leader_id is None:
            return False
        if self.members[self.leader_id].is_awaiting_join:
            return True
        for member in self.members.values():
            if member.is_awaiting_join:
                self.leader_id = member.member_id
                return True
        return False

    def rebalance_timeout_ms(self) -> int:
        return max((member.rebalance_timeout_ms for member in self.members.values()), default=0)

    # protocols ----------------------------------------------------------------------------------------
    def candidate_protocols(self) -> set[str]:
        size = len(self.members)
        return {name for name, count in self._supported_protocols.items() if count == size and size > 0}

    def supports_protocols(self, protocol_type: str, protocol_names: list[str]) -> bool:
        """Whether a member offering these protocols may join: an empty group takes any non-empty offer, a
        non-empty one needs the same protocol type and a protocol every current member supports."""
        if self.state is GroupState.EMPTY:
            return bool(protocol_type) and bool(protocol_names)
        size = len(self.members)
        return (self.protocol_type == protocol_type
                and any(self._supported_protocols.get(name, 0) == size for name in protocol_names))

    def select_protocol(self) -> str:
        """The protocol with most first-choice votes among those every member supports.  Ties go to the
        protocol the leader prefers (Kafka leaves ties to hash order; any supported choice is correct)."""
        invariant(bool(self.members), f"group {self.group_id}: cannot select a protocol without members")
        candidates = self.candidate_protocols()
        votes = Counter(member.vote(candidates) for member in self.members.values())
        best = max(votes.values())
        leader = self.members.get(self.leader_id) if self.leader_id else None
        order = leader.protocol_names() if leader is not None else sorted(votes)
        for name in order:
            if votes.get(name) == best:
                return name
        return min(name for name, count in votes.items() if count == best)

    def init_next_generation(self, now_ms: int) -> None:
        self.generation_id += 1
        if self.members:
            self.protocol_name = self.select_protocol()
            self.transition_to(GroupState.COMPLETING_REBALANCE, now_ms)
        else:
            self.protocol_name = None
            self.transition_to(GroupState.EMPTY, now_ms)
        self.pending_sync_members.clear()

    def assignments(self) -> dict[str, bytes]:
        return {member_id: member.assignment for member_id, member in self.members.items()}
