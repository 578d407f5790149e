"""Offset metadata: the committed offsets of every group (OffsetCommit, OffsetFetch, retention), as Kafka's
OffsetMetadataManager does for classic groups.

Kept apart from the group metadata (``group_metadata``) along Kafka's seam: a commit is checked against the
group's generation and member (``ClassicGroup.validate_member``) and refreshes that member's session, but the
offsets themselves have their own life: consumers that use no group management commit too (a group is created
for them, Empty, with no protocol), a commit is pending until its ``__consumer_offsets`` write is durable
(``require_stable`` fetches see UNSTABLE_OFFSET_COMMIT meanwhile), and offsets expire on their own clock.
"""

from __future__ import annotations

import logging
from collections.abc import Hashable

from cluster.core.errors import ErrorCode
from cluster.groups import records
from cluster.groups.api import (
    Effect,
    FetchedOffset,
    OffsetCommitRequest,
    OffsetCommitResult,
    OffsetFetchRequest,
    OffsetFetchResult,
    offset_write_error,
)
from cluster.groups.group import ClassicGroup, GroupState
from cluster.groups.group_metadata import GroupMetadataManager, Records
from cluster.groups.offsets import GroupOffsets, TopicPartition
from cluster.groups.shard import ShardContext

log = logging.getLogger("cluster.groups")


class OffsetMetadataManager:
    """The committed offsets of the groups of the ``__consumer_offsets`` partitions this node leads."""

    def __init__(self, ctx: ShardContext, groups: GroupMetadataManager) -> None:
        self._ctx = ctx
        self._groups = groups
        self._offsets: dict[str, GroupOffsets] = {}

    def committed_offsets(self, group_id: str) -> dict[TopicPartition, records.OffsetCommitValue]:
        offsets = self._offsets.get(group_id)
        return dict(offsets.committed) if offsets is not None else {}

    # -- OffsetCommit --------------------------------------------------------------------------------------
    def commit_offsets(self, token: Hashable, request: OffsetCommitRequest, now_ms: int) -> list[Effect]:
        error, group = self._commit_target(request, now_ms)
        if error is not None:
            self._ctx.reply(token, OffsetCommitResult(tuple((o.topic, o.partition, error) for o in request.offsets)))
            return self._ctx.drain()
        assert group is not None
        member = group.members.get(request.member_id)
        if member is not None and group.is_in(GroupState.STABLE, GroupState.PREPARING_REBALANCE):
            self._groups.schedule_heartbeat(group, member.member_id, member.session_timeout_ms, now_ms)
        expire_ms = now_ms + request.retention_time_ms if request.retention_time_ms >= 0 else None
        results: dict[int, ErrorCode] = {}
        values: dict[TopicPartition, records.OffsetCommitValue] = {}
        batch: list[tuple[bytes, bytes | None]] = []
        for index, item in enumerate(request.offsets):
            metadata = item.metadata or ""
            if len(metadata) > self._ctx.config.offset_metadata_max_bytes:
                results[index] = ErrorCode.OFFSET_METADATA_TOO_LARGE
                continue
            value = records.OffsetCommitValue(item.offset, item.leader_epoch, metadata, now_ms, expire_ms)
            values[(item.topic, item.partition)] = value
            batch.append((records.encode_offset_commit_key(group.group_id, item.topic, item.partition),
                          records.encode_offset_commit_value(value)))
        if not batch:
            self._ctx.reply(token, self._commit_result(request, results, ErrorCode.NONE))
            self._drop_if_unused(group, now_ms)
            return self._ctx.drain()
        offsets = self._offsets.setdefault(group.group_id, GroupOffsets())
        offsets.begin_commit(list(values))

        def written(write_error: ErrorCode, at_ms: int) -> None:
            durable = write_error is ErrorCode.NONE
            if self._offsets.get(group.group_id) is offsets:
                offsets.finish_commit(values, durable)
            self._ctx.reply(token, self._commit_result(request, results,
                                                   ErrorCode.NONE if durable else offset_write_error(write_error)))
            if not durable:
                self._drop_if_unused(group, at_ms)

        self._ctx.append(group.group_id, batch, written)
        return self._ctx.drain()

    @staticmethod
    def _commit_result(request: OffsetCommitRequest, early: dict[int, ErrorCode], rest: ErrorCode) -> OffsetCommitResult:
        return OffsetCommitResult(tuple((item.topic, item.partition, early.get(index, rest))
                                        for index, item in enumerate(request.offsets)))

    def _commit_target(self, request: OffsetCommitRequest, now_ms: int) -> tuple[ErrorCode | None, ClassicGroup | None]:
        """The group a commit goes to (created for a consumer that does not use group management), or the
        error that rejects the whole request (ClassicGroup.validateOffsetCommit)."""
        error = self._ctx.coordinator_error(request.group_id)
        if error is not None:
            return error, None
        group = self._groups.group(request.group_id)
        if group is None:
            if request.generation_id < 0:
                return None, self._groups.new_group(request.group_id, now_ms)
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
        if (self._groups.is_current(group) and group.state is GroupState.EMPTY and group.generation_id == 0
                and group.protocol_type is None and not group.pending_join_members and not offsets):
            self._groups.forget(group, now_ms)
            self._offsets.pop(group.group_id, None)

    # -- OffsetFetch ---------------------------------------------------------------------------------------
    def fetch_offsets(self, token: Hashable, request: OffsetFetchRequest, now_ms: int) -> list[Effect]:
        self._ctx.reply(token, self._fetch_offsets(request))
        return self._ctx.drain()

    def _fetch_offsets(self, request: OffsetFetchRequest) -> OffsetFetchResult:
        error = self._ctx.coordinator_error(request.group_id)
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

    # -- retention, deletion ------------------------------------------------------------------------------
    def expire(self, group: ClassicGroup, now_ms: int) -> Records:
        """Drops the group's offsets past ``offsets.retention.minutes`` and returns their tombstones.  Offsets of
        a group that uses group management expire only once it is Empty, counted from when it became so."""
        offsets = self._offsets.get(group.group_id)
        if offsets is None:
            return []
        if group.protocol_type is None:
            expired = offsets.expired(now_ms, self._ctx.config.offsets_retention_ms, None)
        elif group.state is GroupState.EMPTY:
            expired = offsets.expired(now_ms, self._ctx.config.offsets_retention_ms, group.state_timestamp_ms)
        else:
            expired = []  # members are consuming: their offsets stay
        offsets.remove(expired)
        if expired:
            log.info("group %s: expired offsets of %d partition(s)", group.group_id, len(expired))
        if not offsets:
            del self._offsets[group.group_id]
        return [(records.encode_offset_commit_key(group.group_id, topic, partition), None)
                for topic, partition in expired]

    def has_offsets(self, group_id: str) -> bool:
        return group_id in self._offsets

    def delete_all(self, group_id: str) -> Records:
        """Forgets every offset of a group being deleted and returns their tombstones."""
        offsets = self._offsets.pop(group_id, None)
        return [(records.encode_offset_commit_key(group_id, topic, partition), None)
                for topic, partition in sorted(offsets.committed if offsets else ())]

    # -- loading and unloading a __consumer_offsets partition (driven by cluster.groups.loading) -------------
    def load_offset(self, group_id: str, partition: TopicPartition, value: records.OffsetCommitValue | None) -> None:
        """Replays one offset commit record: the latest value wins, a tombstone (None) removes the offset."""
        offsets = self._offsets.setdefault(group_id, GroupOffsets())
        offsets.replay(partition, value)
        if not offsets:
            del self._offsets[group_id]

    def group_ids_in(self, partition: int) -> list[str]:
        return [group_id for group_id in self._offsets if self._ctx.partition_of(group_id) == partition]

    def unload(self, partition: int) -> None:
        for group_id in self.group_ids_in(partition):
            del self._offsets[group_id]
