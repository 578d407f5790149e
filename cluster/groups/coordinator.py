"""The classic group coordinator: JoinGroup, SyncGroup, Heartbeat, LeaveGroup, offsets, as a pure state machine.

Kafka's semantics (GroupMetadataManager / ClassicGroup, Kafka 3.9), with no I/O and no clock of its own:

* Inputs: one method per request, each taking a caller-chosen ``token`` and ``now_ms``; ``advance_time(now_ms)``
  fires due timers; ``on_append_complete`` reports that records it asked to write are durable (or failed).
* Outputs: the effects those calls return.  ``Reply(token, result)`` answers a request, possibly much later
  (JoinGroup waits for the rebalance, SyncGroup for the leader, OffsetCommit for its write), and
  ``AppendRecords`` asks the shell to append records to a ``__consumer_offsets`` partition.

The work splits along Kafka's seams, each in its module: ``api`` (config, effects, requests and results),
``group_metadata`` (membership and rebalances, with their timers), ``offset_metadata`` (commits, fetches,
expiry), ``loading`` (replaying a ``__consumer_offsets`` partition, and unloading it), all over the state they
share in ``shard``.  This class is the shard: it routes each request to its manager and does what needs both
(DeleteGroups and offset expiry write the offsets' tombstones and then the group's), like Kafka's
GroupCoordinatorShard.

Ownership: the coordinator serves only groups whose ``__consumer_offsets`` partition it has loaded
(``begin_loading``/``replay``/``finish_loading``); others get NOT_COORDINATOR, or COORDINATOR_LOAD_IN_PROGRESS
while loading.  Each write remembers the partition's leader epoch; a write that completes after the
partition was unloaded or re-loaded in another epoch is reported as NOT_COORDINATOR, never applied
(KAFKA-20634: a demoted coordinator must not acknowledge commits the new leader truncated).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable

from cluster.core.errors import ErrorCode
from cluster.groups import records
from cluster.groups.api import (
    AppendRecords,
    DeleteGroupsResult,
    DescribedGroup,
    DescribedMember,
    DescribeGroupsResult,
    Effect,
    FetchedOffset,
    GroupConfig,
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
    OffsetCommitRequest,
    OffsetCommitResult,
    OffsetFetchRequest,
    OffsetFetchResult,
    OffsetToCommit,
    Reply,
    SyncGroupRequest,
    SyncGroupResult,
    group_write_error,
)
from cluster.groups.group import VALID_PREVIOUS_STATES, ClassicGroup, GroupState
from cluster.groups.group_metadata import GroupMetadataManager, Records
from cluster.groups.loading import OffsetsTopicLoader
from cluster.groups.offset_metadata import OffsetMetadataManager
from cluster.groups.offsets import TopicPartition
from cluster.groups.shard import ShardContext

__all__ = [
    "VALID_PREVIOUS_STATES", "GroupState", "GroupConfig", "GroupCoordinator", "Reply", "AppendRecords",
    "JoinGroupRequest", "JoinGroupResult", "JoinedMember", "SyncGroupRequest", "SyncGroupResult",
    "HeartbeatRequest", "HeartbeatResult", "LeavingMember", "LeaveGroupRequest", "LeaveGroupResult",
    "LeftMember", "OffsetToCommit", "OffsetCommitRequest", "OffsetCommitResult", "OffsetFetchRequest",
    "OffsetFetchResult", "FetchedOffset", "DescribedMember", "DescribedGroup", "DescribeGroupsResult",
    "ListedGroup", "ListGroupsResult", "DeleteGroupsResult",
]


class GroupCoordinator:
    """Every classic group of the ``__consumer_offsets`` partitions this node leads."""

    def __init__(self, config: GroupConfig, new_member_id: Callable[[str], str],
                 on_transition: Callable[[str, GroupState, GroupState], None] | None = None) -> None:
        self.config = config
        self._ctx = ShardContext(config)
        self._groups = GroupMetadataManager(self._ctx, new_member_id, on_transition)
        self._offsets = OffsetMetadataManager(self._ctx, self._groups)
        self._loader = OffsetsTopicLoader(self._ctx, self._groups, self._offsets)

    # -- inspection (tests, the CLI, describe) ----------------------------------------------------------
    @property
    def num_partitions(self) -> int | None:
        """``offsets.topic.num.partitions`` as the metadata says (None until the topic exists)."""
        return self._ctx.num_partitions

    def group(self, group_id: str) -> ClassicGroup | None:
        return self._groups.group(group_id)

    def group_ids(self) -> list[str]:
        return self._groups.group_ids()

    def committed_offsets(self, group_id: str) -> dict[TopicPartition, records.OffsetCommitValue]:
        return self._offsets.committed_offsets(group_id)

    def next_deadline_ms(self) -> int | None:
        return self._ctx.timers.next_deadline_ms()

    def pending_appends(self) -> int:
        return self._ctx.pending_appends()

    def partition_of(self, group_id: str) -> int:
        return self._ctx.partition_of(group_id)

    def owns_partition(self, partition: int) -> bool:
        return partition in self._ctx.owned

    # -- time and writes completing -------------------------------------------------------------------------
    def advance_time(self, now_ms: int) -> list[Effect]:
        """Fires every timer due at ``now_ms``."""
        while (callback := self._ctx.timers.pop_expired(now_ms)) is not None:
            callback(now_ms)
        return self._ctx.drain()

    def on_append_complete(self, append_id: int, error: ErrorCode, now_ms: int) -> list[Effect]:
        self._ctx.complete_append(append_id, error, now_ms)
        return self._ctx.drain()

    # -- group membership (group_metadata) ------------------------------------------------------------------
    def join_group(self, token: Hashable, request: JoinGroupRequest, now_ms: int) -> list[Effect]:
        return self._groups.join_group(token, request, now_ms)

    def sync_group(self, token: Hashable, request: SyncGroupRequest, now_ms: int) -> list[Effect]:
        return self._groups.sync_group(token, request, now_ms)

    def heartbeat(self, token: Hashable, request: HeartbeatRequest, now_ms: int) -> list[Effect]:
        return self._groups.heartbeat(token, request, now_ms)

    def leave_group(self, token: Hashable, request: LeaveGroupRequest, now_ms: int) -> list[Effect]:
        return self._groups.leave_group(token, request, now_ms)

    def describe_groups(self, token: Hashable, group_ids: Iterable[str], now_ms: int) -> list[Effect]:
        return self._groups.describe_groups(token, group_ids, now_ms)

    def list_groups(self, token: Hashable, states_filter: Iterable[str], now_ms: int) -> list[Effect]:
        return self._groups.list_groups(token, states_filter, now_ms)

    # -- offsets (offset_metadata) --------------------------------------------------------------------------
    def commit_offsets(self, token: Hashable, request: OffsetCommitRequest, now_ms: int) -> list[Effect]:
        return self._offsets.commit_offsets(token, request, now_ms)

    def fetch_offsets(self, token: Hashable, request: OffsetFetchRequest, now_ms: int) -> list[Effect]:
        return self._offsets.fetch_offsets(token, request, now_ms)

    # -- both: DeleteGroups and retention --------------------------------------------------------------------
    def delete_groups(self, token: Hashable, group_ids: Iterable[str], now_ms: int) -> list[Effect]:
        results: dict[str, ErrorCode] = {}
        batches: dict[int, tuple[list[str], Records]] = {}
        for group_id in group_ids:
            if group_id in results:
                continue
            error = self._groups.delete_error(group_id)
            if error is not None:
                results[group_id] = error
                continue
            results[group_id] = ErrorCode.NONE
            names, batch = batches.setdefault(self._ctx.partition_of(group_id), ([], []))
            names.append(group_id)
            batch.extend(self._offsets.delete_all(group_id))
            batch.extend(self._groups.delete_group(group_id, now_ms))
        if not batches:
            self._ctx.reply(token, DeleteGroupsResult(tuple(results.items())))
            return self._ctx.drain()
        outstanding = [len(batches)]

        def written(names: list[str], error: ErrorCode, at_ms: int) -> None:
            if error is not ErrorCode.NONE:
                for name in names:
                    results[name] = group_write_error(error)
            outstanding[0] -= 1
            if outstanding[0] == 0:
                self._ctx.reply(token, DeleteGroupsResult(tuple(results.items())))

        for names, batch in batches.values():
            self._ctx.append(names[0], batch, lambda error, at_ms, names=names: written(names, error, at_ms))
        return self._ctx.drain()

    def expire_offsets(self, now_ms: int) -> list[Effect]:
        """Drops offsets past ``offsets.retention.minutes`` and Empty groups left with none (Kafka runs this
        every ``offsets.retention.check.interval.ms``)."""
        for group in self._groups.owned_groups():
            batch = self._offsets.expire(group, now_ms)
            batch += self._groups.delete_if_abandoned(group, self._offsets.has_offsets(group.group_id), now_ms)
            if batch:
                self._ctx.append(group.group_id, batch, lambda error, at_ms: None)
        return self._ctx.drain()

    # -- partition ownership (loading) ------------------------------------------------------------------------
    def set_partition_count(self, num_partitions: int) -> None:
        self._ctx.set_partition_count(num_partitions)

    def begin_loading(self, partition: int) -> None:
        self._loader.begin_loading(partition)

    def replay(self, partition: int, key: bytes, value: bytes | None, now_ms: int) -> None:
        self._loader.replay(partition, key, value, now_ms)

    def finish_loading(self, partition: int, leader_epoch: int, now_ms: int) -> list[Effect]:
        self._loader.finish_loading(partition, leader_epoch, now_ms)
        return self._ctx.drain()

    def unload_partition(self, partition: int, now_ms: int) -> list[Effect]:
        self._loader.unload_partition(partition, now_ms)
        return self._ctx.drain()
