"""Immutable snapshots of the cluster metadata: what every broker and controller acts on.

Kafka's brokers never read the metadata log directly: ``MetadataLoader`` replays committed records
into a ``MetadataDelta`` and publishes a new ``MetadataImage``, an immutable aggregate of sub-images
(cluster, topics, configs, producer ids, features).  Immutability is what makes this cheap and safe:
a reader holds one image for as long as it likes while the next one is built, and a new image reuses
every sub-image (and every topic) that the delta did not touch, so publishing after one
PartitionChangeRecord costs one topic, not the whole cluster.

The classes here are frozen dataclasses over read-only mappings (``MappingProxyType``); only
``cluster/metadata/delta.py`` builds new ones.  Each sub-image has an ``EMPTY`` constant, and
``MetadataImage.EMPTY`` is the state before the first record.  Partition fields follow Kafka's
``PartitionRegistration``: ``leader`` is -1 when the partition has no leader; ``leader_epoch`` is
bumped on every leader change and ``partition_epoch`` on every change at all.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from cluster.core.errors import invariant

__all__ = [
    "NO_LEADER",
    "BROKER_RESOURCE",
    "TOPIC_RESOURCE",
    "BrokerEndpoint",
    "BrokerRegistration",
    "ClusterImage",
    "ConfigsImage",
    "FeaturesImage",
    "MetadataImage",
    "PartitionRegistration",
    "ProducerIdsImage",
    "TopicImage",
    "TopicsImage",
    "frozen_map",
]

NO_LEADER = -1  # PartitionRecord.leader when no replica leads
# ConfigResource.Type codes, as written in ConfigRecord.resource_type.
TOPIC_RESOURCE = 2
BROKER_RESOURCE = 4


def frozen_map(items: Mapping | None = None) -> Mapping:
    """A read-only view over a private copy of ``items``."""
    return MappingProxyType(dict(items or {}))


_EMPTY_MAP: Mapping = frozen_map()


# ------------------------------------------------------------------------------------------------
# Cluster: registered brokers
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BrokerEndpoint:
    """One listener a broker advertises (RegisterBrokerRecord.EndPoints)."""

    name: str  # listener name, e.g. "PLAINTEXT"
    host: str
    port: int
    security_protocol: int = 0  # SecurityProtocol id: 0 = PLAINTEXT


@dataclass(frozen=True, slots=True)
class BrokerRegistration:
    """A registered broker as the metadata log knows it (Kafka's ``BrokerRegistration``)."""

    broker_id: int
    broker_epoch: int  # the offset of its RegisterBrokerRecord
    incarnation_id: uuid.UUID
    endpoints: tuple[BrokerEndpoint, ...] = ()
    rack: str | None = None
    fenced: bool = True
    in_controlled_shutdown: bool = False

    @property
    def is_active(self) -> bool:
        """May lead partitions and join ISRs: unfenced and not shutting down."""
        return not self.fenced and not self.in_controlled_shutdown


@dataclass(frozen=True, slots=True)
class ClusterImage:
    brokers: Mapping[int, BrokerRegistration] = field(default_factory=lambda: _EMPTY_MAP)

    def broker(self, broker_id: int) -> BrokerRegistration | None:
        return self.brokers.get(broker_id)

    def unfenced_broker_ids(self) -> list[int]:
        return sorted(b for b, reg in self.brokers.items() if not reg.fenced)


# ------------------------------------------------------------------------------------------------
# Topics and partitions
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PartitionRegistration:
    """One partition's replica set and leadership (Kafka's ``PartitionRegistration``)."""

    replicas: tuple[int, ...]
    isr: tuple[int, ...]
    leader: int
    leader_epoch: int
    partition_epoch: int
    leader_recovery_state: int = 0  # 0 = RECOVERED, 1 = RECOVERING (after an unclean election)
    # A reassignment in progress (KIP-455): ``replicas`` is then target + old, ``adding_replicas`` the
    # target members not yet caught up, ``removing_replicas`` the old members to drop on completion.
    adding_replicas: tuple[int, ...] = ()
    removing_replicas: tuple[int, ...] = ()

    def has_leader(self) -> bool:
        return self.leader != NO_LEADER

    def is_reassigning(self) -> bool:
        return bool(self.adding_replicas or self.removing_replicas)

    def target_replicas(self) -> tuple[int, ...]:
        """The replica set once the reassignment (if any) completes, in assignment order."""
        return tuple(b for b in self.replicas if b not in self.removing_replicas)

    def check_invariants(self) -> None:
        invariant(len(set(self.replicas)) == len(self.replicas), f"duplicate replicas {self.replicas}")
        invariant(set(self.isr) <= set(self.replicas), f"isr {self.isr} not within replicas {self.replicas}")
        invariant(self.leader == NO_LEADER or self.leader in self.isr,
                  f"leader {self.leader} not in isr {self.isr}")
        invariant(set(self.adding_replicas) <= set(self.replicas)
                  and set(self.removing_replicas) <= set(self.replicas)
                  and not set(self.adding_replicas) & set(self.removing_replicas),
                  f"adding {self.adding_replicas} / removing {self.removing_replicas} inconsistent "
                  f"with replicas {self.replicas}")


@dataclass(frozen=True, slots=True)
class TopicImage:
    name: str
    topic_id: uuid.UUID
    partitions: Mapping[int, PartitionRegistration] = field(default_factory=lambda: _EMPTY_MAP)


@dataclass(frozen=True, slots=True)
class TopicsImage:
    by_id: Mapping[uuid.UUID, TopicImage] = field(default_factory=lambda: _EMPTY_MAP)
    by_name: Mapping[str, TopicImage] = field(default_factory=lambda: _EMPTY_MAP)

    def get_topic(self, name: str) -> TopicImage | None:
        return self.by_name.get(name)

    def get_partition(self, topic_id: uuid.UUID, partition: int) -> PartitionRegistration | None:
        topic = self.by_id.get(topic_id)
        return None if topic is None else topic.partitions.get(partition)

    def partition_count(self) -> int:
        return sum(len(t.partitions) for t in self.by_id.values())


# ------------------------------------------------------------------------------------------------
# Configs, producer ids, features
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ConfigsImage:
    """Dynamic configs: (resource_type, resource_name) -> {config name: value}.

    Broker configs use resource name "" for cluster-wide defaults, else the broker id as a string.
    """

    resources: Mapping[tuple[int, str], Mapping[str, str]] = field(default_factory=lambda: _EMPTY_MAP)

    def topic_config(self, topic: str) -> Mapping[str, str]:
        return self.resources.get((TOPIC_RESOURCE, topic), _EMPTY_MAP)

    def broker_config(self, broker: str) -> Mapping[str, str]:
        return self.resources.get((BROKER_RESOURCE, broker), _EMPTY_MAP)


@dataclass(frozen=True, slots=True)
class ProducerIdsImage:
    """The first producer id not yet handed out in a block (Kafka's ``ProducerIdsImage``)."""

    next_producer_id: int = 0


@dataclass(frozen=True, slots=True)
class FeaturesImage:
    """Finalized feature levels, e.g. {"metadata.version": 21}."""

    finalized_levels: Mapping[str, int] = field(default_factory=lambda: _EMPTY_MAP)


# ------------------------------------------------------------------------------------------------
# The aggregate
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MetadataImage:
    """Everything the metadata log says, as of ``offset`` (-1: no record applied yet)."""

    offset: int
    cluster: ClusterImage
    topics: TopicsImage
    configs: ConfigsImage
    producer_ids: ProducerIdsImage
    features: FeaturesImage

    def check_invariants(self) -> None:
        """Cross-checks the topic indexes and every partition (used by tests and the simulator)."""
        invariant(len(self.topics.by_id) == len(self.topics.by_name), "topic id and name indexes differ in size")
        for topic_id, topic in self.topics.by_id.items():
            invariant(topic.topic_id == topic_id, f"topic {topic.name} filed under the wrong id")
            invariant(self.topics.by_name.get(topic.name) is topic, f"topic {topic.name} missing by name")
            for registration in topic.partitions.values():
                registration.check_invariants()


ClusterImage.EMPTY = ClusterImage()  # type: ignore[attr-defined]
TopicsImage.EMPTY = TopicsImage()  # type: ignore[attr-defined]
ConfigsImage.EMPTY = ConfigsImage()  # type: ignore[attr-defined]
ProducerIdsImage.EMPTY = ProducerIdsImage()  # type: ignore[attr-defined]
FeaturesImage.EMPTY = FeaturesImage()  # type: ignore[attr-defined]
MetadataImage.EMPTY = MetadataImage(  # type: ignore[attr-defined]
    offset=-1,
    cluster=ClusterImage.EMPTY,  # type: ignore[attr-defined]
    topics=TopicsImage.EMPTY,  # type: ignore[attr-defined]
    configs=ConfigsImage.EMPTY,  # type: ignore[attr-defined]
    producer_ids=ProducerIdsImage.EMPTY,  # type: ignore[attr-defined]
    features=FeaturesImage.EMPTY,  # type: ignore[attr-defined]
)
