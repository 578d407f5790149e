"""What the group metadata and the offset metadata of one coordinator share: the config, which
``__consumer_offsets`` partitions this node serves, the timers, and the queue of effects with the writes in flight.

Kafka's coordinator runtime plays this part for its shards.  Keeping it in one small object lets the two
managers (``group_metadata``, ``offset_metadata``) and the loader (``loading``) stay separate classes that see
the same ownership and emit into the same effect list, while none of them owns another's state.

Ownership: groups are served only from a ``__consumer_offsets`` partition that is loaded; others get
NOT_COORDINATOR, or COORDINATOR_LOAD_IN_PROGRESS while loading.  Each write remembers the partition's leader
epoch; a write that completes after the partition was unloaded or re-loaded in another epoch is reported as
NOT_LEADER_OR_FOLLOWER (and so NOT_COORDINATOR to the client), never applied (KAFKA-20634: a demoted
coordinator must not acknowledge commits the new leader truncated).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Hashable

from cluster.core.errors import ErrorCode, invariant
from cluster.groups.api import AppendRecords, Effect, GroupConfig, Reply
from cluster.groups.partitioning import partition_for
from cluster.groups.timers import Timers

OnWritten = Callable[[ErrorCode, int], None]


class ShardContext:
    def __init__(self, config: GroupConfig) -> None:
        self.config = config
        self.num_partitions = config.num_partitions
        self.timers = Timers()
        self.owned: dict[int, int] = {}  # partition -> leader epoch it was loaded in
        self.loading: set[int] = set()
        self._effects: list[Effect] = []
        self._appends: dict[int, tuple[int, int | None, OnWritten]] = {}
        self._append_ids = itertools.count(1)

    # -- ownership ------------------------------------------------------------------------------------------
    def partition_of(self, group_id: str) -> int:
        invariant(self.num_partitions is not None, "the __consumer_offsets partition count is not known yet")
        return partition_for(group_id, self.num_partitions)

    def owns_group(self, group_id: str) -> bool:
        return self.partition_of(group_id) in self.owned

    def coordinator_error(self, group_id: str) -> ErrorCode | None:
        if self.num_partitions is None:
            return ErrorCode.COORDINATOR_NOT_AVAILABLE
        partition = partition_for(group_id, self.num_partitions)
        if partition in self.loading:
            return ErrorCode.COORDINATOR_LOAD_IN_PROGRESS
        if partition not in self.owned:
            return ErrorCode.NOT_COORDINATOR
        return None

    def set_partition_count(self, num_partitions: int) -> None:
        invariant(num_partitions > 0, "__consumer_offsets needs at least one partition")
        invariant(self.num_partitions in (None, num_partitions) or not self.owned,
                  "the __consumer_offsets partition count cannot change while partitions are loaded")
        self.num_partitions = num_partitions

    # -- effects --------------------------------------------------------------------------------------------
    def reply(self, token: Hashable, result: object) -> None:
        self._effects.append(Reply(token, result))

    def append(self, group_id: str, batch: list[tuple[bytes, bytes | None]], on_done: OnWritten) -> None:
        partition = self.partition_of(group_id)
        append_id = next(self._append_ids)
        self._appends[append_id] = (partition, self.owned.get(partition), on_done)
        self._effects.append(AppendRecords(append_id, partition, tuple(batch)))

    def drain(self) -> list[Effect]:
        effects, self._effects = self._effects, []
        return effects

    def pending_appends(self) -> int:
        return len(self._appends)

    def complete_append(self, append_id: int, error: ErrorCode, now_ms: int) -> None:
        partition, epoch, on_done = self._appends.pop(append_id)
        if error is ErrorCode.NONE and self.owned.get(partition) != epoch:
            error = ErrorCode.NOT_LEADER_OR_FOLLOWER  # we lost (or re-gained) the partition meanwhile
        on_done(error, now_ms)
