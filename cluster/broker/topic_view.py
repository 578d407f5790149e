"""The topics of the committed metadata image, in the shape the replica manager and handlers look them up.

Why it exists: the image (cluster/metadata) is keyed by topic id and holds partition registrations; the
broker's hot paths ask "does topic X exist, with how many partitions, which overrides" by name or by id.  The
metadata publisher (cluster_mode.py) refreshes this view after every committed delta, so a lookup is one dict
access and never sees a half-applied delta.
"""

from __future__ import annotations

import dataclasses
import uuid

from cluster.metadata import MetadataImage


@dataclasses.dataclass
class TopicRecord:
    name: str
    topic_id: uuid.UUID
    num_partitions: int
    replication_factor: int
    configs: dict[str, str]  # the topic's own overrides, as strings (Kafka's wire form)


class ImageTopicStore:
    """``topics`` by name, ``topic_by_id`` and the ``cluster_id``, derived from the committed image."""

    def __init__(self, cluster_id: str) -> None:
        self.cluster_id = cluster_id
        self.topics: dict[str, TopicRecord] = {}
        self._by_id: dict[uuid.UUID, TopicRecord] = {}

    def refresh(self, image: MetadataImage) -> None:
        topics = {}
        for topic in image.topics.by_id.values():
            first = topic.partitions.get(0)
            topics[topic.name] = TopicRecord(
                name=topic.name, topic_id=topic.topic_id, num_partitions=len(topic.partitions),
                replication_factor=len(first.replicas) if first else 0,
                configs=dict(image.configs.topic_config(topic.name)))
        self.topics = topics
        self._by_id = {record.topic_id: record for record in topics.values()}

    def topic_by_id(self, topic_id: uuid.UUID) -> TopicRecord | None:
        return self._by_id.get(topic_id)
