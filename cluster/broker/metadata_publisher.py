"""Committed metadata -> this node's image -> its controller, topic view, local replicas and group coordinator.

Why it exists: every node, voter or not, replays the COMMITTED entries of the metadata log (each a batch of records,
cluster/metadata/records.py ``decode_batch``) into a ``MetadataImage`` and publishes each new image: to the
controller (which decides from it), to the handlers' topic view, to the ``ReplicaManager`` (the delta's
``local_changes(node_id)``: open, lead, follow, delete) and to the group coordinator (which ``__consumer_offsets``
partitions this broker leads), as Kafka's ``MetadataLoader`` hands each image to its publishers.  Snapshots of the
image (``metadata.log.max.snapshot.interval.entries``) are taken and loaded here too; a loaded snapshot goes
through the same delta path (``snapshot_delta`` from the current image), so local changes stay exact.

The replica manager and the group coordinator are built after this publisher (app.py), so they are attached to
it explicitly (``attach_replica_manager``, ``attach_group_coordinator``) rather than passed at construction.
"""

from __future__ import annotations

import asyncio
import logging

from cluster.broker.group_coordinator import OFFSETS_TOPIC, GroupCoordinatorRuntime
from cluster.broker.replica_manager import ReplicaManager
from cluster.broker.waits import wait_event
from cluster.core.clock import monotonic_ms
from cluster.core.errors import ErrorCode, KafkaError, invariant
from cluster.metadata import (
    MetadataDelta,
    MetadataImage,
    QuorumController,
    decode_snapshot,
    encode_snapshot,
    snapshot_delta,
)
from cluster.metadata.records import decode_batch
from cluster.raft.log import SnapshotId

log = logging.getLogger("cluster.broker.cluster")

# Waits for applied metadata re-check after every applied commit, and at least this often.
RECHECK_S = 0.1


def _no_op():
    from cluster.wire.metadata_records import no_op_record
    return no_op_record.NoOpRecord()


_NO_OP = _no_op()


class MetadataPublisher:
    """The image of one node, built from the committed metadata log, and the publishing of each new one."""

    def __init__(self, node_id: int, controller: QuorumController, store) -> None:
        self.node_id = node_id
        # Built after this publisher (app.py): None until attached.
        self._replica_manager: ReplicaManager | None = None
        self._group_coordinator: GroupCoordinatorRuntime | None = None
        self._controller = controller
        self._store = store              # the handlers' topic view (ImageTopicStore)
        self.image: MetadataImage = MetadataImage.EMPTY  # type: ignore[attr-defined]
        self.applied_hw = 0              # every entry below this offset has been replayed here
        self._applied = asyncio.Event()  # set (and replaced) after every applied commit

    def attach_replica_manager(self, replica_manager: ReplicaManager) -> None:
        """Before the metadata quorum starts (and so before the first image): each image's local changes
        (open, lead, follow, delete) reach it."""
        self._replica_manager = replica_manager

    def attach_group_coordinator(self, group_coordinator: GroupCoordinatorRuntime) -> None:
        self._group_coordinator = group_coordinator

    # -- committed entries -------------------------------------------------------------------------------------------
    def on_commit(self, entries, high_watermark: int) -> None:
        if entries:
            delta = MetadataDelta(self.image)
            for entry in entries:
                for record in decode_batch(entry.payload):
                    delta.replay(record)
                delta.replay(_NO_OP, entry.offset)
            self._publish(delta)
        self.applied_hw = max(self.applied_hw, high_watermark)
        self._applied.set()
        self._applied = asyncio.Event()

    def _publish(self, delta: MetadataDelta) -> None:
        """Makes ``delta`` the image of this node: controller, handlers' topic store, local replicas."""
        self.image = delta.apply()
        self._controller.image = self.image
        self._store.refresh(self.image)
        changes = delta.local_changes(self.node_id)
        self._replica_manager.apply_local_changes(changes, self.image)
        self._load_offsets_partitions(changes)

    def _load_offsets_partitions(self, changes) -> None:
        """The group coordinator serves exactly the ``__consumer_offsets`` partitions this broker leads: tells it
        which of them this delta made us lead (with the leader epoch) and which we no longer lead.

        Before the coordinator exists (start-up catch-up) there is nothing to tell: its ``start`` loads what
        the replica manager then says we lead.
        """
        runtime = self._group_coordinator
        if runtime is None:
            return
        led = {index: local.registration.leader_epoch
               for (name, index), local in changes.leaders.items() if name == OFFSETS_TOPIC}
        not_led = {index for name, index in changes.followers if name == OFFSETS_TOPIC}
        not_led |= {index for name, _topic_id, index in changes.deletes if name == OFFSETS_TOPIC}
        if led or not_led:
            runtime.on_offsets_partitions_changed(led, not_led)

    # -- metadata log snapshots ----------------------------------------------------------------------------------
    def take_snapshot(self, snapshot_id: SnapshotId) -> bytes:
        """The image as of ``snapshot_id``: every committed entry below its end offset, and nothing after.

        The driver asks right after applying the Ready whose committed entries end exactly at
        ``snapshot_id.end_offset`` (ready.py, step 4), with no await in between, so ``self.image`` is that state
        (control entries change no image, hence "<", not "== end_offset - 1").
        """
        invariant(self.image.offset < snapshot_id.end_offset,
                  f"image at offset {self.image.offset} is ahead of snapshot {snapshot_id}")
        data = encode_snapshot(self.image, snapshot_id.end_offset, snapshot_id.epoch)
        log.info("metadata snapshot taken at end offset %d epoch %d (%d topics, %d bytes)", snapshot_id.end_offset,
                 snapshot_id.epoch, len(self.image.topics.by_id), len(data))
        return data

    def load_snapshot(self, snapshot_id: SnapshotId, data: bytes) -> None:
        """Replaces the image by a snapshot (on restart, or one a follower downloaded from the leader).

        Goes through a delta from the current image (``snapshot_delta``), so the replica manager opens, re-roles
        or deletes exactly the partitions that differ, as after any committed batch.
        """
        snapshot = decode_snapshot(data)
        invariant((snapshot.end_offset, snapshot.epoch) == (snapshot_id.end_offset, snapshot_id.epoch),
                  f"snapshot payload says ({snapshot.end_offset}, {snapshot.epoch}), stored as {snapshot_id}")
        self._publish(snapshot_delta(self.image, snapshot.image))
        self.applied_hw = max(self.applied_hw, snapshot_id.end_offset)
        log.info("metadata snapshot loaded: end offset %d epoch %d (%d topics)", snapshot_id.end_offset,
                 snapshot_id.epoch, len(self.image.topics.by_id))

    # -- waiting for applied metadata ----------------------------------------------------------------------------
    async def wait_until(self, predicate, deadline_ms: int) -> bool:
        """Waits until ``predicate()`` holds (True) or the monotonic ``deadline_ms`` passes (False); re-checks
        after every applied commit and at least every ``RECHECK_S`` (leadership changes between commits too)."""
        while not predicate():
            remaining_ms = deadline_ms - monotonic_ms()
            if remaining_ms <= 0:
                return False
            await wait_event(self._applied, min(remaining_ms / 1000, RECHECK_S))
        return True

    async def wait_applied(self, end_offset: int, timeout_s: float) -> None:
        """Waits until every entry below ``end_offset`` is applied here; REQUEST_TIMED_OUT after ``timeout_s``."""
        if not await self.wait_until(lambda: self.applied_hw >= end_offset, monotonic_ms() + int(timeout_s * 1000)):
            raise KafkaError(ErrorCode.REQUEST_TIMED_OUT, f"metadata offset {end_offset} not applied in time")
