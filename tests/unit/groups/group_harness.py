"""A driver for the pure group coordinator: a fake clock, a fake ``__consumer_offsets`` log and reply capture.

Tests speak in requests and look at replies; the harness plays the shell's part: it numbers tokens, keeps
every ``Reply`` (failing on a second reply to one token), appends ``AppendRecords`` to an in-memory log and
reports them durable (immediately, or when the test says so), and checks that every state transition the
coordinator makes is in the transition table.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

from cluster.core.errors import ErrorCode
from cluster.groups.coordinator import (
    AppendRecords,
    GroupConfig,
    GroupCoordinator,
    HeartbeatRequest,
    JoinGroupRequest,
    LeaveGroupRequest,
    LeavingMember,
    OffsetCommitRequest,
    OffsetFetchRequest,
    OffsetToCommit,
    Reply,
    SyncGroupRequest,
)
from cluster.groups.group import VALID_PREVIOUS_STATES, GroupState

START_MS = 1_700_000_000_000
PROTOCOLS = (("range", b"meta-range"),)
NUM_PARTITIONS = 4


@dataclass
class Harness:
    config: GroupConfig = field(default_factory=lambda: GroupConfig(num_partitions=NUM_PARTITIONS))
    now_ms: int = START_MS
    auto_complete: bool = True
    leader_epoch: int = 0

    def __post_init__(self) -> None:
        self._ids = itertools.count(1)
        self._tokens = itertools.count(1)
        self.replies: dict[int, object] = {}
        self.transitions: list[tuple[str, GroupState, GroupState]] = []
        self.pending: list[AppendRecords] = []
        self.log: dict[int, list[tuple[bytes, bytes | None]]] = {p: [] for p in range(NUM_PARTITIONS)}
        self.coordinator = self._make_coordinator()
        self.load_all()

    def _make_coordinator(self) -> GroupCoordinator:
        coordinator = GroupCoordinator(self.config, self._new_member_id, on_transition=self._on_transition)
        coordinator.set_partition_count(NUM_PARTITIONS)
        return coordinator

    def _new_member_id(self, prefix: str) -> str:
        return f"{prefix}-{next(self._ids)}"

    def _on_transition(self, group_id: str, before: GroupState, after: GroupState) -> None:
        assert before in VALID_PREVIOUS_STATES[after], f"{group_id}: illegal {before.value} -> {after.value}"
        self.transitions.append((group_id, before, after))

    # -- ownership --------------------------------------------------------------------------------------
    def load_all(self) -> None:
        for partition in range(NUM_PARTITIONS):
            self.coordinator.begin_loading(partition)
            for key, value in self.log[partition]:
                self.coordinator.replay(partition, key, value, self.now_ms)
            self.apply(self.coordinator.finish_loading(partition, self.leader_epoch, self.now_ms))

    def restart(self) -> None:
        """A new coordinator replays the durable log, as a broker does on start."""
        self.pending.clear()
        self.coordinator = self._make_coordinator()
        self.load_all()

    # -- effects ----------------------------------------------------------------------------------------
    def apply(self, effects) -> None:
        for effect in effects:
            if isinstance(effect, Reply):
                assert effect.token not in self.replies, f"token {effect.token} answered twice"
                self.replies[effect.token] = effect.result
            else:
                assert isinstance(effect, AppendRecords)
                self.pending.append(effect)
        if self.auto_complete:
            self.complete_appends()

    def complete_appends(self, error: ErrorCode = ErrorCode.NONE) -> None:
        while self.pending:
            append = self.pending.pop(0)
            if error is ErrorCode.NONE:
                self.log[append.partition].extend(append.records)
            self.apply(self.coordinator.on_append_complete(append.append_id, error, self.now_ms))

    def advance(self, ms: int) -> None:
        self.now_ms += ms
        self.apply(self.coordinator.advance_time(self.now_ms))

    def advance_to_next_timer(self) -> bool:
        deadline = self.coordinator.next_deadline_ms()
        if deadline is None:
            return False
        self.now_ms = max(self.now_ms, deadline)
        self.apply(self.coordinator.advance_time(self.now_ms))
        return True

    def reply(self, token: int):
        return self.replies.get(token)

    def _call(self, method: str, request) -> int:
        token = next(self._tokens)
        self.apply(getattr(self.coordinator, method)(token, request, self.now_ms))
        return token

    # -- requests -----------------------------------------------------------------------------------------
    def join(self, group_id: str, member_id: str = "", *, instance_id: str | None = None,
             protocols=PROTOCOLS, session_ms: int = 10_000, rebalance_ms: int = 30_000,
             protocol_type: str = "consumer", require_known_member_id: bool = True,
             client_id: str = "client") -> int:
        return self._call("join_group", JoinGroupRequest(
            group_id, member_id, instance_id, session_ms, rebalance_ms, protocol_type, tuple(protocols),
            client_id, "/127.0.0.1", require_known_member_id))

    def join_new(self, group_id: str, **kwargs) -> tuple[str, int]:
        """The v4+ dance: MEMBER_ID_REQUIRED, then the real JoinGroup (returned parked or answered)."""
        first = self.reply(self.join(group_id, **kwargs))
        assert first.error is ErrorCode.MEMBER_ID_REQUIRED, first
        return first.member_id, self.join(group_id, first.member_id, **kwargs)

    def sync(self, group_id: str, member_id: str, generation_id: int, assignments=(),
             instance_id: str | None = None, protocol_type: str | None = None,
             protocol_name: str | None = None) -> int:
        return self._call("sync_group", SyncGroupRequest(group_id, generation_id, member_id, instance_id,
                                                         protocol_type, protocol_name, tuple(assignments)))

    def heartbeat(self, group_id: str, member_id: str, generation_id: int,
                  instance_id: str | None = None) -> ErrorCode:
        return self.reply(self._call("heartbeat", HeartbeatRequest(group_id, generation_id, member_id,
                                                                   instance_id))).error

    def leave(self, group_id: str, *members: tuple[str, str | None]):
        return self.reply(self._call("leave_group", LeaveGroupRequest(
            group_id, tuple(LeavingMember(member_id, instance_id) for member_id, instance_id in members))))

    def commit(self, group_id: str, offsets: dict[tuple[str, int], int], *, generation_id: int = -1,
               member_id: str = "", instance_id: str | None = None, api_version: int = 8,
               retention_ms: int = -1, metadata: str = "") -> int:
        items = tuple(OffsetToCommit(topic, partition, offset, -1, metadata)
                      for (topic, partition), offset in offsets.items())
        return self._call("commit_offsets", OffsetCommitRequest(group_id, generation_id, member_id, instance_id,
                                                                retention_ms, items, api_version))

    def fetch(self, group_id: str, partitions=None, require_stable: bool = False):
        return self.reply(self._call("fetch_offsets", OffsetFetchRequest(
            group_id, None if partitions is None else tuple(partitions), require_stable)))

    def describe(self, *group_ids: str):
        return self.reply(self._call("describe_groups", group_ids)).groups

    def list_groups(self, *states: str):
        return self.reply(self._call("list_groups", states))

    def delete(self, *group_ids: str):
        return dict(self.reply(self._call("delete_groups", group_ids)).results)

    def state(self, group_id: str) -> GroupState | None:
        group = self.coordinator.group(group_id)
        return None if group is None else group.state

    # -- composite flows ----------------------------------------------------------------------------------
    def stable_group(self, group_id: str, count: int, **join_kwargs) -> list[tuple[str, int]]:
        """``count`` dynamic members, joined in the initial delay, synced; [(member_id, generation)]."""
        joined = [self.join_new(group_id, **join_kwargs) for _ in range(count)]
        self.advance(self.config.initial_rebalance_delay_ms)
        while self.state(group_id) is GroupState.PREPARING_REBALANCE:
            self.advance_to_next_timer()
        results = [self.reply(token) for _, token in joined]
        assert all(result is not None and result.error is ErrorCode.NONE for result in results), results
        generation = results[0].generation_id
        leader = results[0].leader_id
        members = [result.member_id for result in results]
        assignments = [(member_id, f"assigned-{member_id}".encode()) for member_id in members]
        tokens = [self.sync(group_id, member_id, generation, assignments if member_id == leader else ())
                  for member_id in members]
        assert self.state(group_id) is GroupState.STABLE
        assert all(self.reply(token).error is ErrorCode.NONE for token in tokens)
        return [(member_id, generation) for member_id in members]
