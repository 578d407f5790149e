"""The controller's decisions, as a pure function of its metadata image (Kafka's QuorumController).

Every operation that changes cluster metadata (register a broker, fence it, create a topic, move a
leader, commit an ISR change, hand out producer ids) returns a ``ControllerResult(records,
response)`` and changes nothing.  State changes only through ``replay(record)``, which runs the same
``MetadataDelta`` code the brokers run.  The shell around this class follows Kafka's write path:

1. call an operation; append ``result.records`` to the Raft log;
2. replay them here at once (as Kafka's active controller does, so the next decision sees them);
3. release ``result.response`` only once Raft has committed the records' last offset;
4. on losing leadership, rebuild from the committed image (images are immutable: just keep it).

The one exception is broker *session* state (last heartbeat time), soft as in Kafka (see cluster_control.py).

As Kafka's controller, this class composes control managers that share its image and decide each their part:
``ClusterControlManager`` (registrations, heartbeats, sessions, fencing), ``ReplicationControlManager`` (topics,
partitions, ISR changes, reassignments, leader elections), ``ConfigurationControlManager`` (dynamic configs) and
``ProducerIdControlManager`` (producer id blocks).  Its public methods stay the one entry point of the brokers'
controller service, the simulator and the tests.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterable, Mapping, Sequence

from cluster.metadata.cluster_control import ClusterControlManager, HeartbeatResult
from cluster.metadata.configuration_control import ConfigurationControlManager
from cluster.metadata.controller_config import STALL_FRACTION_OF_SESSION, ControllerConfig, ControllerResult
from cluster.metadata.delta import MetadataDelta
from cluster.metadata.image import BrokerEndpoint, MetadataImage
from cluster.metadata.producer_id_control import PRODUCER_ID_BLOCK_SIZE, ProducerIdControlManager
from cluster.metadata.replication_control import (
    ELECTION_PREFERRED,
    ELECTION_UNCLEAN,
    AlterPartitionResult,
    CreateTopicResult,
    NewTopic,
    OngoingReassignment,
    ReplicationControlManager,
)
from cluster.wire.metadata_records import no_op_record

__all__ = [
    "PRODUCER_ID_BLOCK_SIZE",
    "STALL_FRACTION_OF_SESSION",
    "AlterPartitionResult",
    "ControllerConfig",
    "ControllerResult",
    "CreateTopicResult",
    "HeartbeatResult",
    "ELECTION_PREFERRED",
    "ELECTION_UNCLEAN",
    "NewTopic",
    "OngoingReassignment",
    "QuorumController",
]


class QuorumController:
    """Decides metadata changes from ``image``; see the module docstring for the write path."""

    def __init__(self, config: ControllerConfig | None = None, *, rng: random.Random,
                 image: MetadataImage = MetadataImage.EMPTY) -> None:  # type: ignore[attr-defined]
        self.config = config or ControllerConfig()
        # Only for topic ids, and required: the broker passes an OS-seeded source (ids must differ across
        # clusters and across controllers, KIP-516), the simulator and tests a seeded one.  A seeded default gave
        # every cluster's first topic the same id, and a new controller could re-issue a deleted topic's id.
        self._rng = rng
        self.image = image
        current = lambda: self.image  # noqa: E731 -- each manager decides from the image as it is now
        self.replication = ReplicationControlManager(self.config, rng, current)
        self.cluster = ClusterControlManager(self.config, current, self.replication)
        self.configuration = ConfigurationControlManager(current)
        self.producer_ids = ProducerIdControlManager(current)

    # ---- replay ----------------------------------------------------------------------------

    def replay(self, record: object, offset: int | None = None) -> None:
        """Applies one committed (or, on the active controller, just-decided) record."""
        self.replay_batch([record], offset)

    def replay_batch(self, records: Iterable[object], last_offset: int | None = None) -> None:
        delta = MetadataDelta(self.image)
        for record in records:
            delta.replay(record)
        if last_offset is not None:
            delta.replay(_NO_OP, last_offset)
        self.image = delta.apply()

    # ---- brokers (ClusterControlManager) ---------------------------------------------------

    def register_broker(self, broker_id: int, incarnation_id: uuid.UUID, endpoints: Sequence[BrokerEndpoint],
                        rack: str | None, now_ms: int, broker_epoch: int) -> ControllerResult:
        return self.cluster.register_broker(broker_id, incarnation_id, endpoints, rack, now_ms, broker_epoch)

    def broker_heartbeat(self, broker_id: int, broker_epoch: int, current_metadata_offset: int,
                         want_fence: bool, want_shutdown: bool, now_ms: int) -> ControllerResult:
        return self.cluster.broker_heartbeat(broker_id, broker_epoch, current_metadata_offset, want_fence,
                                             want_shutdown, now_ms)

    def reset_sessions(self, now_ms: int, grace_ms: int | None = None) -> None:
        self.cluster.reset_sessions(now_ms, grace_ms)

    def tick(self, now_ms: int) -> ControllerResult:
        """Fences every unfenced broker whose session expired; response: fenced broker ids.

        The caller ticks often (many times a session).  A tick long after the previous one means this controller
        itself did not run meanwhile (SIGSTOP, a stalled host or event loop) and so could not hear heartbeats: that
        time counts against no session.  Sessions restart as after an election instead, else a controller resuming
        from a pause (still the quorum leader when a majority was paused with it) would fence every broker.
        """
        if not self.cluster.ran_without_a_stall(now_ms):
            self.cluster.reset_sessions(now_ms)
            return ControllerResult((), ())
        expired = self.cluster.expired_brokers(now_ms)
        if not expired:
            return ControllerResult((), ())
        # Fence one broker at a time, each decided on the image the previous one leaves behind
        # (Kafka fences the stalest broker per check), so an ISR shrinks member by member and its
        # last member stays: fencing all at once would leave every fenced member in the ISR.
        scratch = QuorumController(self.config, rng=self._rng, image=self.image)
        records: list = []
        for broker_id in expired:
            fence = scratch.cluster.fence_records(scratch.image.cluster.brokers[broker_id])
            scratch.replay_batch(fence)
            records += fence
        return ControllerResult(tuple(records), tuple(expired))

    def next_session_deadline_ms(self) -> int | None:
        return self.cluster.next_session_deadline_ms()

    def unregister_broker(self, broker_id: int) -> ControllerResult:
        return self.cluster.unregister_broker(broker_id)

    # ---- topics and partitions (ReplicationControlManager) ---------------------------------

    def create_topics(self, topics: Sequence[NewTopic], validate_only: bool = False) -> ControllerResult:
        return self.replication.create_topics(topics, validate_only)

    def delete_topics(self, names: Sequence[str]) -> ControllerResult:
        return self.replication.delete_topics(names)

    def create_partitions(self, name: str, count: int,
                          assignments: Sequence[Sequence[int]] | None = None) -> ControllerResult:
        return self.replication.create_partitions(name, count, assignments)

    def alter_partition(self, broker_id: int, broker_epoch: int, topic_id: uuid.UUID, partition: int,
                        leader_epoch: int, partition_epoch: int, new_isr: Sequence[int],
                        new_isr_broker_epochs: Mapping[int, int] | None = None) -> ControllerResult:
        return self.replication.alter_partition(broker_id, broker_epoch, topic_id, partition, leader_epoch,
                                                partition_epoch, new_isr, new_isr_broker_epochs)

    def alter_partition_reassignments(
            self, requests: Sequence[tuple[str, int, Sequence[int] | None]]) -> ControllerResult:
        return self.replication.alter_partition_reassignments(requests)

    def list_partition_reassignments(
            self, partitions: Sequence[tuple[str, int]] | None = None) -> dict[tuple[str, int], OngoingReassignment]:
        return self.replication.list_partition_reassignments(partitions)

    def elect_leaders(self, election_type: int,
                      partitions: Sequence[tuple[str, int]] | None = None) -> ControllerResult:
        return self.replication.elect_leaders(election_type, partitions)

    def elect_preferred_leaders(self, partitions: Sequence[tuple[str, int]] | None = None) -> ControllerResult:
        return self.replication.elect_preferred_leaders(partitions)

    def rebalance_leaders(self, imbalance_percentage: int) -> ControllerResult:
        return self.replication.rebalance_leaders(imbalance_percentage)

    # ---- configs and producer ids ----------------------------------------------------------

    def alter_configs(self, changes: Sequence[tuple[int, str, str, str | None]]) -> ControllerResult:
        return self.configuration.alter_configs(changes)

    def allocate_producer_ids(self, broker_id: int, broker_epoch: int) -> ControllerResult:
        return self.producer_ids.allocate_producer_ids(broker_id, broker_epoch)

    def check_invariants(self) -> None:
        self.image.check_invariants()


# Replayed after a batch only to advance the image offset to the batch's last offset.
_NO_OP = no_op_record.NoOpRecord()
