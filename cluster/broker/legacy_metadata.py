"""Converts a single-node log directory of the old format into records of the metadata log, once, at start.

Why it exists: before every node ran the metadata quorum, a broker without ``controller.quorum.voters`` kept its
topics in one JSON file, ``__kraftpy_metadata.json`` (topics with their ids, partition counts and config
overrides, and the end of the producer-id block it had handed out; the cluster id lives in ``meta.properties``).
Such a directory still holds the partition logs, named ``<topic>-<partition>``.  On its first start as a one-voter
quorum the node commits, through its own active controller, the records that describe the same topics: a
TopicRecord with the old topic id, the old config overrides, and one PartitionRecord per partition with this
node as its only replica and leader in epoch 0 (the epoch the old broker wrote its batches in), plus a
ProducerIdsRecord past the old block so that no producer id is handed out twice.  Then the file is renamed to
``__kraftpy_metadata.json.converted``.

Crash safety: all records go in one batch (one Raft entry, committed or not as a whole), and a topic already in
the image with the same id is skipped, so a crash before the rename only means the conversion runs again and
adds nothing.  Anything that cannot be converted stops the start with a message saying what to do.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import uuid

from cluster.metadata import ControllerResult, MetadataImage
from cluster.metadata.image import TOPIC_RESOURCE
from cluster.storage.fs import LOCAL_FS
from cluster.wire.metadata_records import config_record, partition_record, producer_ids_record, topic_record

log = logging.getLogger("cluster.broker.legacy_metadata")

LEGACY_METADATA_FILE = "__kraftpy_metadata.json"
CONVERTED_SUFFIX = ".converted"
LEGACY_LEADER_EPOCH = 0   # the old single-node broker led every partition in epoch 0
LEADER_WAIT_S = 10.0


class LegacyMetadataError(RuntimeError):
    """The old metadata file cannot be converted; the message says what to do."""


@dataclasses.dataclass(frozen=True)
class LegacyTopic:
    name: str
    topic_id: uuid.UUID
    num_partitions: int
    configs: dict[str, str]


@dataclasses.dataclass(frozen=True)
class LegacyMetadata:
    path: str
    topics: tuple[LegacyTopic, ...]
    producer_id_block_end: int


def read_legacy_metadata(log_dir: str) -> LegacyMetadata | None:
    """The old-format metadata of ``log_dir``, or None when there is none (or it was converted already)."""
    path = os.path.join(log_dir, LEGACY_METADATA_FILE)
    if not os.path.exists(path):
        return None
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
        if data.get("version", 1) != 1:
            raise ValueError(f"unknown version {data.get('version')!r}")
        topics = tuple(LegacyTopic(name=str(item["name"]), topic_id=uuid.UUID(item["topic_id"]),
                                   num_partitions=int(item["num_partitions"]),
                                   configs={str(k): str(v) for k, v in item.get("configs", {}).items()})
                       for item in data.get("topics", []))
        block_end = int(data.get("producer_id_block_end", 0))
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise LegacyMetadataError(
            f"{path} (metadata of the old single-node format) cannot be read: {exc}.  Restore it from a backup, "
            f"or, to start with no topics, move it and the partition directories out of {log_dir}") from None
    return LegacyMetadata(path, topics, block_end)


def conversion_records(legacy: LegacyMetadata, image: MetadataImage, node_id: int) -> list:
    """The records that make ``image`` hold ``legacy``'s topics and producer ids; nothing for what it holds."""
    records: list = []
    for topic in legacy.topics:
        existing = image.topics.get_topic(topic.name)
        if existing is not None:
            if existing.topic_id != topic.topic_id:
                raise LegacyMetadataError(
                    f"topic {topic.name} is in the metadata log with id {existing.topic_id}, but {legacy.path} "
                    f"names id {topic.topic_id}: the directory holds two different topics of that name.  Move "
                    f"{legacy.path} aside to keep the one in the metadata log")
            continue
        records.append(topic_record.TopicRecord(name=topic.name, topic_id=topic.topic_id))
        records += [config_record.ConfigRecord(resource_type=TOPIC_RESOURCE, resource_name=topic.name, name=name,
                                               value=value) for name, value in sorted(topic.configs.items())]
        records += [partition_record.PartitionRecord(
            partition_id=index, topic_id=topic.topic_id, replicas=[node_id], isr=[node_id], leader=node_id,
            leader_epoch=LEGACY_LEADER_EPOCH, partition_epoch=0) for index in range(topic.num_partitions)]
    if image.producer_ids.next_producer_id < legacy.producer_id_block_end:
        records.append(producer_ids_record.ProducerIdsRecord(
            broker_id=node_id, broker_epoch=-1, next_producer_id=legacy.producer_id_block_end))
    return records


async def convert_legacy_metadata(log_dir: str, runtime) -> bool:
    """Converts ``log_dir``'s old metadata file, if any, through ``runtime`` (a ``ClusterRuntime`` that must be
    a one-voter quorum); True when there was one to convert."""
    legacy = read_legacy_metadata(log_dir)
    if legacy is None:
        return False
    if not runtime.is_sole_voter:
        raise LegacyMetadataError(
            f"{legacy.path} holds topics of the old single-node format, which only a single node converts: start "
            "this node once without controller.quorum.voters (it converts the file and renames it to "
            f"{LEGACY_METADATA_FILE}{CONVERTED_SUFFIX}), stop it, then add it to the quorum")
    if not await runtime.wait_for_metadata(runtime.is_active_controller, LEADER_WAIT_S):
        raise LegacyMetadataError(f"this node did not become its own metadata quorum leader within "
                                  f"{LEADER_WAIT_S:.0f} s, so {legacy.path} could not be converted; start it again")
    node_id = runtime.node_id
    added = await runtime._decide(lambda controller: _result(conversion_records(legacy, controller.image, node_id)))
    os.replace(legacy.path, legacy.path + CONVERTED_SUFFIX)
    LOCAL_FS.fsync_dir(log_dir)
    log.info("converted %s: %d topic(s) (%d added to the metadata log now), producer ids from %d; the old file is "
             "now %s%s", legacy.path, len(legacy.topics), added, legacy.producer_id_block_end, LEGACY_METADATA_FILE,
             CONVERTED_SUFFIX)
    return True


def _result(records: list) -> ControllerResult:
    """Commits ``records``; answers how many topics they add."""
    added = sum(1 for record in records if isinstance(record, topic_record.TopicRecord))
    return ControllerResult(tuple(records), added)
