"""Single-node topic metadata, persisted atomically in the log directory.

Until the Raft metadata quorum exists (it will replace this module), a broker keeps its topics (name, topic
id, partition count, config overrides), the cluster id and the producer-id block it has handed out in one
small JSON file, ``__kraftpy_metadata.json``.  Every change is written to a temporary file, fsynced and renamed
over the old one, then the directory is fsynced, so a crash leaves either the old or the new state, never a
mix.  The shapes here (topic ids, partition counts, leader epochs) are the ones the metadata log will carry.
"""

from __future__ import annotations

import dataclasses
import json
import os
import uuid
from typing import Any

from cluster.storage.fs import LOCAL_FS

METADATA_FILE = "__kraftpy_metadata.json"
META_PROPERTIES = "meta.properties"
PRODUCER_ID_BLOCK_SIZE = 1000


@dataclasses.dataclass
class TopicRecord:
    name: str
    topic_id: uuid.UUID
    num_partitions: int
    replication_factor: int
    configs: dict[str, str]  # the topic's own overrides, as strings (Kafka's wire form)


class MetadataStore:
    """Topics and id allocation for a single-node cluster; the only writer of its file."""

    def __init__(self, log_dir: str, node_id: int) -> None:
        self._log_dir = log_dir
        self._path = os.path.join(log_dir, METADATA_FILE)
        self.node_id = node_id
        self.topics: dict[str, TopicRecord] = {}
        self.cluster_id = ""
        self._next_producer_id = 0
        self._producer_id_block_end = 0

    @classmethod
    def open(cls, log_dir: str, node_id: int) -> MetadataStore:
        os.makedirs(log_dir, exist_ok=True)
        store = cls(log_dir, node_id)
        store._load_meta_properties()
        if os.path.exists(store._path):
            with open(store._path, encoding="utf-8") as handle:
                store._load(json.load(handle))
        else:
            store._save()
        return store

    def _load_meta_properties(self) -> None:
        """Kafka's meta.properties names the cluster and the node; a mismatch means a wrong directory."""
        path = os.path.join(self._log_dir, META_PROPERTIES)
        if not os.path.exists(path):
            self.cluster_id = _new_cluster_id()
            _atomic_write(path, f"version=1\ncluster.id={self.cluster_id}\nnode.id={self.node_id}\n")
            return
        with open(path, encoding="utf-8") as handle:
            properties = dict(line.split("=", 1) for line in handle.read().splitlines() if "=" in line)
        stored_node_id = int(properties.get("node.id", self.node_id))
        if stored_node_id != self.node_id:
            raise ValueError(
                f"{path} belongs to node.id={stored_node_id}, but this broker is node.id={self.node_id}"
            )
        self.cluster_id = properties.get("cluster.id", "") or _new_cluster_id()

    def _load(self, data: dict[str, Any]) -> None:
        for item in data.get("topics", []):
            record = TopicRecord(
                name=item["name"],
                topic_id=uuid.UUID(item["topic_id"]),
                num_partitions=int(item["num_partitions"]),
                replication_factor=int(item.get("replication_factor", 1)),
                configs=dict(item.get("configs", {})),
            )
            self.topics[record.name] = record
        # Resume after the whole persisted block: ids handed out before a crash are never reused.
        self._next_producer_id = int(data.get("producer_id_block_end", 0))
        self._producer_id_block_end = self._next_producer_id

    def _save(self) -> None:
        data = {
            "version": 1,
            "topics": [
                {
                    "name": record.name,
                    "topic_id": str(record.topic_id),
                    "num_partitions": record.num_partitions,
                    "replication_factor": record.replication_factor,
                    "configs": record.configs,
                }
                for record in sorted(self.topics.values(), key=lambda r: r.name)
            ],
            "producer_id_block_end": self._producer_id_block_end,
        }
        _atomic_write(self._path, json.dumps(data, indent=1, sort_keys=True))

    def topic_by_id(self, topic_id: uuid.UUID) -> TopicRecord | None:
        for record in self.topics.values():
            if record.topic_id == topic_id:
                return record
        return None

    def create_topic(self, name: str, num_partitions: int, replication_factor: int,
                     configs: dict[str, str]) -> TopicRecord:
        record = TopicRecord(name, uuid.uuid4(), num_partitions, replication_factor, dict(configs))
        self.topics[name] = record
        self._save()
        return record

    def delete_topic(self, name: str) -> TopicRecord:
        record = self.topics.pop(name)
        self._save()
        return record

    def set_partition_count(self, name: str, num_partitions: int) -> None:
        self.topics[name].num_partitions = num_partitions
        self._save()

    def allocate_producer_id(self) -> int:
        """A producer id never handed out before by this cluster, even across crashes."""
        if self._next_producer_id >= self._producer_id_block_end:
            self._producer_id_block_end = self._next_producer_id + PRODUCER_ID_BLOCK_SIZE
            self._save()
        producer_id = self._next_producer_id
        self._next_producer_id += 1
        return producer_id


def _new_cluster_id() -> str:
    """Kafka's cluster ids are 22-character URL-safe base64 of a random UUID."""
    import base64

    return base64.urlsafe_b64encode(uuid.uuid4().bytes).decode("ascii").rstrip("=")


def _atomic_write(path: str, text: str) -> None:
    LOCAL_FS.write_file_atomically(path, text.encode("utf-8"))
