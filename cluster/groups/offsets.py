"""Committed offsets of one group: what OffsetFetch returns, what a commit in flight hides, what expires.

A commit becomes visible only once its ``__consumer_offsets`` record is durable (below the high watermark):
until then it is *pending*, OffsetFetch keeps returning the previous value, and with ``require_stable``
(OffsetFetch v7) the partition answers UNSTABLE_OFFSET_COMMIT so the client retries instead of reading a
value that is about to change.  A failed write simply drops the pending commit.

Retention (``offsets.retention.minutes``, 7 days): an offset committed with an explicit retention (OffsetCommit
v2-v4) expires at its own ``expire_timestamp_ms``; otherwise it expires ``retention_ms`` after a base time the
coordinator chooses from the group's state (OffsetExpirationConditionImpl): the moment the group became
Empty, or the commit time for groups that never used group management.
"""

from __future__ import annotations

from collections import Counter

from cluster.groups.records import OffsetCommitValue

TopicPartition = tuple[str, int]


class GroupOffsets:
    def __init__(self) -> None:
        self.committed: dict[TopicPartition, OffsetCommitValue] = {}
        self._pending: Counter[TopicPartition] = Counter()

    def __bool__(self) -> bool:
        return bool(self.committed) or bool(self._pending)

    def get(self, partition: TopicPartition) -> OffsetCommitValue | None:
        return self.committed.get(partition)

    def has_pending(self, partition: TopicPartition) -> bool:
        return self._pending[partition] > 0

    def has_any_pending(self) -> bool:
        return any(count > 0 for count in self._pending.values())

    def begin_commit(self, partitions: list[TopicPartition]) -> None:
        self._pending.update(partitions)

    def finish_commit(self, values: dict[TopicPartition, OffsetCommitValue], durable: bool) -> None:
        """The write of ``values`` finished: make them visible if it is durable, forget them if not."""
        for partition, value in values.items():
            self._pending[partition] -= 1
            if self._pending[partition] <= 0:
                del self._pending[partition]
            if durable:
                self.committed[partition] = value

    def replay(self, partition: TopicPartition, value: OffsetCommitValue | None) -> None:
        """Applies one record read back from the log (None = tombstone)."""
        if value is None:
            self.committed.pop(partition, None)
        else:
            self.committed[partition] = value

    def expired(self, now_ms: int, retention_ms: int, base_timestamp_ms: int | None) -> list[TopicPartition]:
        """Partitions whose offsets have outlived their retention; never one with a commit in flight.
        ``base_timestamp_ms`` None means "since each commit" (groups without group management)."""
        expired = []
        for partition, value in self.committed.items():
            if self.has_pending(partition):
                continue
            if is_expired(value, now_ms, retention_ms, base_timestamp_ms):
                expired.append(partition)
        return expired

    def remove(self, partitions: list[TopicPartition]) -> None:
        for partition in partitions:
            self.committed.pop(partition, None)


def is_expired(value: OffsetCommitValue, now_ms: int, retention_ms: int, base_timestamp_ms: int | None) -> bool:
    if value.expire_timestamp_ms is not None:
        return now_ms >= value.expire_timestamp_ms
    base = value.commit_timestamp_ms if base_timestamp_ms is None else base_timestamp_ms
    return now_ms - base >= retention_ms
