"""Loading and unloading a ``__consumer_offsets`` partition: the coordinator's state is the replay of that log.

When this node becomes leader of a partition (``begin_loading``), the shell replays the partition's records
(``replay``, in log order) and then calls ``finish_loading`` with the leader epoch; only from then on are the
partition's groups served (until then COORDINATOR_LOAD_IN_PROGRESS).  Group metadata records rebuild the groups
(``GroupMetadataManager.load_group``), offset commit records the offsets (``OffsetMetadataManager.load_offset``);
a tombstone removes either.  Losing the leadership (``unload_partition``) forgets both and answers whatever was
parked with NOT_COORDINATOR.  This is Kafka's GroupMetadataManager.loadGroupsAndOffsets / removeGroupsForPartition.
"""

from __future__ import annotations

from cluster.core.errors import invariant
from cluster.groups import records
from cluster.groups.group_metadata import GroupMetadataManager
from cluster.groups.offset_metadata import OffsetMetadataManager
from cluster.groups.shard import ShardContext


class OffsetsTopicLoader:
    def __init__(self, ctx: ShardContext, groups: GroupMetadataManager, offsets: OffsetMetadataManager) -> None:
        self._ctx = ctx
        self._groups = groups
        self._offsets = offsets

    def begin_loading(self, partition: int) -> None:
        """This node became leader of ``partition``: requests for its groups wait (LOAD_IN_PROGRESS).
        A partition is always loaded from scratch: one still served (an older epoch) is unloaded first."""
        invariant(partition not in self._ctx.owned, f"partition {partition} is loaded already: unload it first")
        self._ctx.loading.add(partition)

    def replay(self, partition: int, key: bytes, value: bytes | None, now_ms: int) -> None:
        """Applies one record of a partition being loaded, in log order."""
        invariant(partition in self._ctx.loading, f"replay into partition {partition}, which is not loading")
        parsed = records.decode_key(key)
        if isinstance(parsed, records.OffsetCommitKey):
            committed = None if value is None else records.decode_offset_commit_value(value)
            self._offsets.load_offset(parsed.group, (parsed.topic, parsed.partition), committed)
        elif isinstance(parsed, records.GroupMetadataKey):
            metadata = None if value is None else records.decode_group_metadata_value(value)
            self._groups.load_group(parsed.group, metadata, now_ms)

    def finish_loading(self, partition: int, leader_epoch: int, now_ms: int) -> None:
        """The partition is replayed: serve its groups.  Members get a fresh session timeout from now."""
        self._ctx.loading.discard(partition)
        self._ctx.owned[partition] = leader_epoch
        for group_id in self._offsets.group_ids_in(partition):
            if self._groups.group(group_id) is None:
                self._groups.new_group(group_id, now_ms)  # offsets committed without group management
        self._groups.resume_sessions(partition, now_ms)

    def unload_partition(self, partition: int, now_ms: int) -> None:
        """This node is no longer the partition's leader: forget its groups and their offsets."""
        self._ctx.owned.pop(partition, None)
        self._ctx.loading.discard(partition)
        self._groups.unload(partition, now_ms)
        self._offsets.unload(partition)
