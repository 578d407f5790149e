"""Replays metadata records onto an image: ``MetadataDelta(image).replay(r)...apply() -> image``.

This is the only code that turns records into state, on brokers (which replay committed batches)
and on the controller (which replays the records it decides).  One code path for both is Kafka's
rule 4, "decide, then replay": a controller cannot disagree with its brokers about what a record
means.  A delta accumulates changes per sub-image and ``apply`` builds the next ``MetadataImage``,
reusing every sub-image (and every topic) that no record touched.

``local_changes(broker_id)`` answers the question a broker asks after each delta (Kafka's
``TopicsDelta.localChanges``): which of my partitions were removed, which do I now lead, and which
do I follow.  That drives become-leader / become-follower in the replica manager.

Replay is strict: a record that contradicts the image (a partition of an unknown topic, a change to
an unknown broker) means the log or the controller is broken, so it raises InvariantViolation
rather than guessing.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field, replace

from cluster.core.errors import invariant
from cluster.metadata.image import (
    BrokerEndpoint,
    BrokerRegistration,
    ClusterImage,
    ConfigsImage,
    FeaturesImage,
    MetadataImage,
    PartitionRegistration,
    ProducerIdsImage,
    TopicImage,
    TopicsImage,
    frozen_map,
)
from cluster.metadata.records import record_name

__all__ = ["NO_LEADER_CHANGE", "LocalPartition", "LocalReplicaChanges", "MetadataDelta", "merge_partition_change"]

NO_LEADER_CHANGE = -2  # PartitionChangeRecord.leader when the leader is unchanged
_REMOVED = object()  # marks a deleted broker / config key inside a delta


def merge_partition_change(current: PartitionRegistration, change) -> PartitionRegistration:
    """Applies a PartitionChangeRecord (Kafka's ``PartitionRegistration.merge``).

    Only fields present in the record change.  ``partition_epoch`` always goes up by one;
    ``leader_epoch`` goes up by one iff the record names a leader (even the same one: that is how
    the controller forces an epoch bump).
    """
    replicas = current.replicas if change.replicas is None else tuple(change.replicas)
    isr = current.isr if change.isr is None else tuple(change.isr)
    leader, leader_epoch = current.leader, current.leader_epoch
    if change.leader != NO_LEADER_CHANGE:
        leader, leader_epoch = change.leader, current.leader_epoch + 1
    recovery = current.leader_recovery_state
    if change.leader_recovery_state != -1:
        recovery = change.leader_recovery_state
    adding = current.adding_replicas if change.adding_replicas is None else tuple(change.adding_replicas)
    removing = current.removing_replicas if change.removing_replicas is None else tuple(change.removing_replicas)
    merged = PartitionRegistration(replicas, isr, leader, leader_epoch, current.partition_epoch + 1, recovery,
                                   adding, removing)
    invariant(merged.partition_epoch > current.partition_epoch, "partition epoch must increase")
    return merged


@dataclass
class _TopicDelta:
    """Changes to one topic: its (possibly new) identity and the partitions that changed."""

    base: TopicImage | None  # None for a topic created in this delta
    name: str
    topic_id: uuid.UUID
    partition_changes: dict[int, PartitionRegistration] = field(default_factory=dict)

    def partition(self, partition: int) -> PartitionRegistration | None:
        found = self.partition_changes.get(partition)
        if found is None and self.base is not None:
            found = self.base.partitions.get(partition)
        return found

    def apply(self) -> TopicImage:
        if self.base is not None and not self.partition_changes:
            return self.base
        partitions = dict(self.base.partitions) if self.base is not None else {}
        partitions.update(self.partition_changes)
        return TopicImage(self.name, self.topic_id, frozen_map(partitions))


@dataclass(frozen=True, slots=True)
class LocalPartition:
    topic_name: str
    topic_id: uuid.UUID
    partition: int
    registration: PartitionRegistration


@dataclass(frozen=True, slots=True)
class LocalReplicaChanges:
    """What one broker must do after a delta (Kafka's ``LocalReplicaChanges``).

    ``deletes``: (topic_name, topic_id, partition) replicas to stop and delete;
    ``leaders``/``followers``: changed partitions this broker now leads / follows, keyed by
    (topic_name, partition), with the new registration (leader, leader_epoch, isr...);
    ``elected_leaders``: the subset of ``leaders`` whose leader epoch changed (a new term).
    """

    deletes: frozenset[tuple[str, uuid.UUID, int]]
    leaders: dict[tuple[str, int], LocalPartition]
    followers: dict[tuple[str, int], LocalPartition]
    elected_leaders: frozenset[tuple[str, int]]


class MetadataDelta:
    """Accumulates records on top of ``image``; ``apply()`` returns the resulting image."""

    def __init__(self, image: MetadataImage) -> None:
        self.image = image
        self._offset = image.offset
        self._brokers: dict[int, object] = {}  # broker id -> BrokerRegistration or _REMOVED
        self._topics: dict[uuid.UUID, _TopicDelta] = {}  # changed or created topics
        self._deleted_topics: dict[uuid.UUID, TopicImage] = {}  # present in image, removed here
        self._configs: dict[tuple[int, str], dict[str, object]] = {}  # key -> {name: value or _REMOVED}
        self._next_producer_id: int | None = None
        self._features: dict[str, object] = {}
        self._replayers = {
            "RegisterBrokerRecord": self._replay_register_broker,
            "UnregisterBrokerRecord": self._replay_unregister_broker,
            "FenceBrokerRecord": self._replay_fence_broker,
            "UnfenceBrokerRecord": self._replay_unfence_broker,
            "BrokerRegistrationChangeRecord": self._replay_broker_change,
            "TopicRecord": self._replay_topic,
            "PartitionRecord": self._replay_partition,
            "PartitionChangeRecord": self._replay_partition_change,
            "RemoveTopicRecord": self._replay_remove_topic,
            "ConfigRecord": self._replay_config,
            "ProducerIdsRecord": self._replay_producer_ids,
            "FeatureLevelRecord": self._replay_feature_level,
            "NoOpRecord": lambda record: None,
        }

    # ---- replay ----------------------------------------------------------------------------

    def replay(self, record: object, offset: int | None = None) -> MetadataDelta:
        """Applies one record; ``offset`` (its log offset, if known) becomes the image offset.

        Record types this cluster does not act on (ACLs, SCRAM, quotas, transactions markers of the
        metadata log, ZK migration) are accepted and ignored, as an older Kafka broker would.
        """
        if offset is not None:
            invariant(offset > self._offset, f"metadata offset went from {self._offset} to {offset}")
            self._offset = offset
        replayer = self._replayers.get(record_name(record))
        if replayer is not None:
            replayer(record)
        return self

    def _current_broker(self, broker_id: int) -> BrokerRegistration | None:
        found = self._brokers.get(broker_id)
        if found is _REMOVED:
            return None
        return found if found is not None else self.image.cluster.brokers.get(broker_id)

    def _replay_register_broker(self, record) -> None:
        endpoints = tuple(BrokerEndpoint(e.name, e.host, e.port, e.security_protocol) for e in record.end_points)
        self._brokers[record.broker_id] = BrokerRegistration(
            broker_id=record.broker_id,
            broker_epoch=record.broker_epoch,
            incarnation_id=record.incarnation_id,
            endpoints=endpoints,
            rack=record.rack,
            fenced=record.fenced,
            in_controlled_shutdown=record.in_controlled_shutdown,
        )

    def _replay_unregister_broker(self, record) -> None:
        current = self._current_broker(record.broker_id)
        invariant(current is not None, f"unregister of unknown broker {record.broker_id}")
        self._brokers[record.broker_id] = _REMOVED

    def _change_broker(self, broker_id: int, broker_epoch: int, **changes) -> None:
        current = self._current_broker(broker_id)
        invariant(current is not None, f"change to unknown broker {broker_id}")
        invariant(current.broker_epoch == broker_epoch,
                  f"broker {broker_id} change for epoch {broker_epoch}, registered {current.broker_epoch}")
        self._brokers[broker_id] = replace(current, **changes)

    def _replay_fence_broker(self, record) -> None:
        self._change_broker(record.id, record.epoch, fenced=True)

    def _replay_unfence_broker(self, record) -> None:
        self._change_broker(record.id, record.epoch, fenced=False)

    def _replay_broker_change(self, record) -> None:
        # BrokerRegistrationFencingChange / InControlledShutdownChange: -1 or 0 = no change / off, 1 = on.
        changes = {}
        if record.fenced == 1:
            changes["fenced"] = True
        elif record.fenced == -1:
            changes["fenced"] = False
        if record.in_controlled_shutdown == 1:
            changes["in_controlled_shutdown"] = True
        self._change_broker(record.broker_id, record.broker_epoch, **changes)

    def _topic_delta(self, topic_id: uuid.UUID) -> _TopicDelta:
        found = self._topics.get(topic_id)
        if found is None:
            base = self.image.topics.by_id.get(topic_id)
            invariant(base is not None and topic_id not in self._deleted_topics, f"unknown topic id {topic_id}")
            found = self._topics[topic_id] = _TopicDelta(base, base.name, topic_id)
        return found

    def _replay_topic(self, record) -> None:
        invariant(record.topic_id not in self._topics and record.topic_id not in self.image.topics.by_id,
                  f"topic id {record.topic_id} created twice")
        self._topics[record.topic_id] = _TopicDelta(None, record.name, record.topic_id)

    def _replay_partition(self, record) -> None:
        topic = self._topic_delta(record.topic_id)
        registration = PartitionRegistration(
            replicas=tuple(record.replicas),
            isr=tuple(record.isr),
            leader=record.leader,
            leader_epoch=record.leader_epoch,
            partition_epoch=record.partition_epoch,
            leader_recovery_state=record.leader_recovery_state,
            adding_replicas=tuple(record.adding_replicas or ()),
            removing_replicas=tuple(record.removing_replicas or ()),
        )
        registration.check_invariants()
        topic.partition_changes[record.partition_id] = registration

    def _replay_partition_change(self, record) -> None:
        topic = self._topic_delta(record.topic_id)
        current = topic.partition(record.partition_id)
        invariant(current is not None, f"change to unknown partition {topic.name}-{record.partition_id}")
        merged = merge_partition_change(current, record)
        merged.check_invariants()
        topic.partition_changes[record.partition_id] = merged

    def _replay_remove_topic(self, record) -> None:
        created_here = self._topics.pop(record.topic_id, None)
        base = self.image.topics.by_id.get(record.topic_id)
        invariant(created_here is not None or base is not None, f"remove of unknown topic {record.topic_id}")
        if base is not None:
            self._deleted_topics[record.topic_id] = base

    def _replay_config(self, record) -> None:
        key = (record.resource_type, record.resource_name)
        self._configs.setdefault(key, {})[record.name] = _REMOVED if record.value is None else record.value

    def _replay_producer_ids(self, record) -> None:
        current = self._next_producer_id
        if current is None:
            current = self.image.producer_ids.next_producer_id
        invariant(record.next_producer_id > current, "producer id blocks must move forward")
        self._next_producer_id = record.next_producer_id

    def _replay_feature_level(self, record) -> None:
        self._features[record.name] = _REMOVED if record.feature_level == 0 else record.feature_level

    # ---- apply -----------------------------------------------------------------------------

    def apply(self) -> MetadataImage:
        """The image after every replayed record; untouched sub-images are the same objects."""
        image = self.image
        return MetadataImage(
            offset=self._offset,
            cluster=self._apply_cluster() if self._brokers else image.cluster,
            topics=self._apply_topics() if self._topics or self._deleted_topics else image.topics,
            configs=self._apply_configs() if self._configs else image.configs,
            producer_ids=(image.producer_ids if self._next_producer_id is None
                          else ProducerIdsImage(self._next_producer_id)),
            features=self._apply_features() if self._features else image.features,
        )

    def _apply_cluster(self) -> ClusterImage:
        return ClusterImage(frozen_map(_merge(self.image.cluster.brokers, self._brokers)))

    def _apply_topics(self) -> TopicsImage:
        by_id = dict(self.image.topics.by_id)
        by_name = dict(self.image.topics.by_name)
        for topic_id, old in self._deleted_topics.items():
            del by_id[topic_id]
            if by_name.get(old.name) is old:
                del by_name[old.name]
        for topic_id, topic_delta in self._topics.items():
            topic = topic_delta.apply()
            by_id[topic_id] = topic
            by_name[topic.name] = topic
        return TopicsImage(frozen_map(by_id), frozen_map(by_name))

    def _apply_configs(self) -> ConfigsImage:
        resources = dict(self.image.configs.resources)
        for key, changes in self._configs.items():
            merged = _merge(resources.get(key, {}), changes)
            if merged:
                resources[key] = frozen_map(merged)
            else:
                resources.pop(key, None)
        return ConfigsImage(frozen_map(resources))

    def _apply_features(self) -> FeaturesImage:
        return FeaturesImage(frozen_map(_merge(self.image.features.finalized_levels, self._features)))

    # ---- what changed for one broker -------------------------------------------------------

    def local_changes(self, broker_id: int) -> LocalReplicaChanges:
        """Partitions ``broker_id`` must delete, lead or follow because of this delta."""
        deletes: set[tuple[str, uuid.UUID, int]] = set()
        leaders: dict[tuple[str, int], LocalPartition] = {}
        followers: dict[tuple[str, int], LocalPartition] = {}
        elected: set[tuple[str, int]] = set()
        for topic_id, old in self._deleted_topics.items():
            for partition, registration in old.partitions.items():
                if broker_id in registration.replicas:
                    deletes.add((old.name, topic_id, partition))
        for topic_id, topic_delta in self._topics.items():
            for partition, registration in topic_delta.partition_changes.items():
                previous = topic_delta.base.partitions.get(partition) if topic_delta.base else None
                key = (topic_delta.name, partition)
                local = LocalPartition(topic_delta.name, topic_id, partition, registration)
                if registration.leader == broker_id:
                    leaders[key] = local
                    if previous is None or previous.leader_epoch != registration.leader_epoch:
                        elected.add(key)
                elif broker_id in registration.replicas:
                    followers[key] = local
                elif previous is not None and broker_id in previous.replicas:
                    deletes.add((topic_delta.name, topic_id, partition))
        return LocalReplicaChanges(frozenset(deletes), leaders, followers, frozenset(elected))


def _merge(base, changes: dict) -> dict:
    merged = dict(base)
    for key, value in changes.items():
        if value is _REMOVED:
            merged.pop(key, None)
        else:
            merged[key] = value
    return merged

