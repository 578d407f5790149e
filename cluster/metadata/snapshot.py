"""Metadata log snapshots: a ``MetadataImage`` written as the records that rebuild it, and back.

Why: the Raft metadata log is compacted once a snapshot covers its prefix, so a snapshot must say
everything the dropped entries said.  As in Kafka (``MetadataImage.write(ImageWriter)``), a
snapshot is not a private dump of our Python objects but a sequence of ordinary metadata records
(FeatureLevelRecord, RegisterBrokerRecord carrying its fenced/shutdown state, TopicRecord,
PartitionRecord with the current replicas/ISR/leader/epochs, ConfigRecord, ProducerIdsRecord)
which, replayed into ``MetadataImage.EMPTY`` through the one ``MetadataDelta`` path, give back an
equal image.  ``image_to_records`` writes them; ``records_between(base, target)`` writes only what
turns ``base`` into ``target``, so a broker that loads a snapshot on top of the image it already
has learns, through ``MetadataDelta.local_changes``, exactly which replicas to open, move or delete.

Payload format (all integers big-endian), version 1::

    magic "KPMS" | u16 format version | i64 snapshot end_offset | i32 snapshot epoch
    | i64 image offset (-1: no record yet) | u32 record count
    | record count x (uvarint size, ApiMessageAndVersion frame from ``encode_record``)
    | u32 CRC-32C of every byte before it

The header repeats the Raft ``SnapshotId`` (end offset and epoch) so that a payload stored or
received under the wrong id is refused; the image offset is the offset of the last metadata record
below ``end_offset`` (control entries occupy offsets but change no image), which the image must
keep so that replay of later entries continues from it.  A payload that fails any check raises
CorruptRecordError: a snapshot that does not parse is corruption, never partly loaded.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import crc32c

from cluster.core.errors import CorruptRecordError, ProtocolDecodeError, invariant
from cluster.metadata.delta import MetadataDelta
from cluster.metadata.image import MetadataImage, PartitionRegistration, TopicImage
from cluster.metadata.records import decode_record, encode_record
from cluster.wire.metadata_records import (
    config_record,
    feature_level_record,
    no_op_record,
    partition_record,
    producer_ids_record,
    register_broker_record,
    remove_topic_record,
    topic_record,
    unregister_broker_record,
)
from cluster.wire.primitives import read_uvarint, write_uvarint

__all__ = [
    "SNAPSHOT_FORMAT_VERSION",
    "SNAPSHOT_MAGIC",
    "MetadataSnapshot",
    "decode_snapshot",
    "encode_snapshot",
    "image_from_records",
    "image_to_records",
    "records_between",
    "snapshot_delta",
]

SNAPSHOT_MAGIC = b"KPMS"  # kraftpy metadata snapshot
SNAPSHOT_FORMAT_VERSION = 1
_HEADER = struct.Struct(">4sHqiqI")  # magic, version, end_offset, epoch, image offset, record count
_CRC = struct.Struct(">I")


# ------------------------------------------------------------------------------------------------
# Image <-> records
# ------------------------------------------------------------------------------------------------


def image_to_records(image: MetadataImage) -> list:
    """Records that, replayed into ``MetadataImage.EMPTY``, rebuild ``image`` (except its offset)."""
    return records_between(MetadataImage.EMPTY, image)  # type: ignore[attr-defined]


def records_between(base: MetadataImage, target: MetadataImage) -> list:
    """Records that, replayed onto ``base``, give ``target`` (except the offset).

    Order matters for replay: features first (they say how to read the rest), then brokers (which
    partitions name), topics before their partitions, then configs and the producer-id block.
    Removed things are removed first so a topic name freed and reused never collides.
    """
    records: list = []
    records += _feature_records(base, target)
    records += _broker_records(base, target)
    records += _topic_records(base, target)
    records += _config_records(base, target)
    records += _producer_id_records(base, target)
    return records


def _feature_records(base: MetadataImage, target: MetadataImage) -> list:
    old, new = base.features.finalized_levels, target.features.finalized_levels
    records = [feature_level_record.FeatureLevelRecord(name=name, feature_level=0)  # level 0 = removed
               for name in sorted(old) if name not in new]
    records += [feature_level_record.FeatureLevelRecord(name=name, feature_level=level)
                for name, level in sorted(new.items()) if old.get(name) != level]
    return records


def _broker_records(base: MetadataImage, target: MetadataImage) -> list:
    old, new = base.cluster.brokers, target.cluster.brokers
    records: list = [unregister_broker_record.UnregisterBrokerRecord(broker_id=broker_id,
                                                                     broker_epoch=old[broker_id].broker_epoch)
                     for broker_id in sorted(old) if broker_id not in new]
    for broker_id in sorted(new):
        registration = new[broker_id]
        if old.get(broker_id) == registration:
            continue
        # A RegisterBrokerRecord replaces the whole registration, fencing state included, so one record
        # says what a register + fence/unfence + controlled-shutdown history said.
        records.append(register_broker_record.RegisterBrokerRecord(
            broker_id=broker_id, incarnation_id=registration.incarnation_id,
            broker_epoch=registration.broker_epoch,
            end_points=[register_broker_record.BrokerEndpoint(name=e.name, host=e.host, port=e.port,
                                                              security_protocol=e.security_protocol)
                        for e in registration.endpoints],
            rack=registration.rack, fenced=registration.fenced,
            in_controlled_shutdown=registration.in_controlled_shutdown))
    return records


def _topic_records(base: MetadataImage, target: MetadataImage) -> list:
    old, new = base.topics.by_id, target.topics.by_id
    records: list = [remove_topic_record.RemoveTopicRecord(topic_id=topic_id)
                     for topic_id in sorted(old) if topic_id not in new]
    for topic_id in sorted(new, key=lambda t: new[t].name):
        topic, before = new[topic_id], old.get(topic_id)
        if before is topic:
            continue   # untouched sub-images are shared between images: nothing to say
        if before is None:
            records.append(topic_record.TopicRecord(name=topic.name, topic_id=topic_id))
        else:
            invariant(before.name == topic.name, f"topic {topic_id} renamed from {before.name} to {topic.name}")
            invariant(set(before.partitions) <= set(topic.partitions),
                      f"topic {topic.name} lost partitions: metadata cannot shrink a topic")
        records += _partition_records(topic, before)
    return records


def _partition_records(topic: TopicImage, before: TopicImage | None) -> list:
    records = []
    for partition_id in sorted(topic.partitions):
        registration = topic.partitions[partition_id]
        if before is not None and before.partitions.get(partition_id) == registration:
            continue
        records.append(_partition_record(topic, partition_id, registration))
    return records


def _partition_record(topic: TopicImage, partition_id: int, registration: PartitionRegistration):
    # A PartitionRecord states a partition outright (no merge with what was there), epochs included.
    return partition_record.PartitionRecord(
        partition_id=partition_id, topic_id=topic.topic_id, replicas=list(registration.replicas),
        isr=list(registration.isr), leader=registration.leader, leader_epoch=registration.leader_epoch,
        partition_epoch=registration.partition_epoch, leader_recovery_state=registration.leader_recovery_state,
        adding_replicas=list(registration.adding_replicas), removing_replicas=list(registration.removing_replicas))


def _config_records(base: MetadataImage, target: MetadataImage) -> list:
    old, new = base.configs.resources, target.configs.resources
    records = []
    for key in sorted(set(old) | set(new)):
        before, after = old.get(key, {}), new.get(key, {})
        resource_type, resource_name = key
        for name in sorted(set(before) | set(after)):
            value = after.get(name)  # None deletes the key
            if before.get(name) != value:
                records.append(config_record.ConfigRecord(resource_type=resource_type, resource_name=resource_name,
                                                          name=name, value=value))
    return records


def _producer_id_records(base: MetadataImage, target: MetadataImage) -> list:
    old, new = base.producer_ids.next_producer_id, target.producer_ids.next_producer_id
    if new == old:
        return []
    invariant(new > old, f"producer ids cannot go back from {old} to {new}")
    # broker_id/broker_epoch only say who asked for the block; the image keeps no such history.
    return [producer_ids_record.ProducerIdsRecord(broker_id=-1, broker_epoch=-1, next_producer_id=new)]


def snapshot_delta(base: MetadataImage, target: MetadataImage) -> MetadataDelta:
    """A delta from ``base`` whose ``apply()`` equals ``target``, offset included.

    Used when a snapshot replaces the image: ``local_changes`` of this delta is what a broker must
    open, re-role or delete.  ``target`` must not be older than ``base`` (a snapshot always covers
    every entry already applied).
    """
    invariant(target.offset >= base.offset, f"snapshot image offset {target.offset} is below {base.offset}")
    delta = MetadataDelta(base)
    for record in records_between(base, target):
        delta.replay(record)
    if target.offset > base.offset:
        delta.replay(_NO_OP, target.offset)
    return delta


def image_from_records(records, offset: int) -> MetadataImage:
    """Replays ``records`` into the empty image and stamps ``offset`` (what loading a snapshot does)."""
    delta = MetadataDelta(MetadataImage.EMPTY)  # type: ignore[attr-defined]
    for record in records:
        delta.replay(record)
    if offset >= 0:
        delta.replay(_NO_OP, offset)
    return delta.apply()


_NO_OP = no_op_record.NoOpRecord()


# ------------------------------------------------------------------------------------------------
# Payload codec
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MetadataSnapshot:
    """A decoded snapshot payload: the Raft snapshot id it claims, and the image it describes."""

    end_offset: int
    epoch: int
    image: MetadataImage


def encode_snapshot(image: MetadataImage, end_offset: int, epoch: int) -> bytes:
    """The payload of the Raft snapshot ``(end_offset, epoch)`` holding ``image``."""
    invariant(image.offset < end_offset, f"image at offset {image.offset} is not below snapshot end {end_offset}")
    records = image_to_records(image)
    out = bytearray(_HEADER.pack(SNAPSHOT_MAGIC, SNAPSHOT_FORMAT_VERSION, end_offset, epoch, image.offset,
                                 len(records)))
    for record in records:
        frame = encode_record(record)
        out += write_uvarint(len(frame))
        out += frame
    out += _CRC.pack(crc32c.crc32c(out))
    return bytes(out)


def decode_snapshot(data: bytes | bytearray | memoryview) -> MetadataSnapshot:
    """Parses and checks a payload; raises CorruptRecordError if any byte of it is wrong."""
    view = memoryview(data)
    if len(view) < _HEADER.size + _CRC.size:
        raise CorruptRecordError(f"metadata snapshot of {len(view)} bytes is shorter than its header")
    body, (crc,) = view[:-_CRC.size], _CRC.unpack(view[-_CRC.size:])
    if crc32c.crc32c(body) != crc:
        raise CorruptRecordError("metadata snapshot CRC-32C mismatch")
    magic, version, end_offset, epoch, image_offset, count = _HEADER.unpack_from(body, 0)
    if magic != SNAPSHOT_MAGIC or version != SNAPSHOT_FORMAT_VERSION:
        raise CorruptRecordError(f"not a metadata snapshot (magic {bytes(magic)!r}, format version {version})")
    if not -1 <= image_offset < end_offset:
        raise CorruptRecordError(f"metadata snapshot image offset {image_offset} outside [-1, {end_offset})")
    try:
        records = _decode_records(body, _HEADER.size, count)
        image = image_from_records(records, image_offset)
    except ProtocolDecodeError as exc:
        raise CorruptRecordError(f"metadata snapshot record does not decode: {exc}") from None
    return MetadataSnapshot(end_offset, epoch, image)


def _decode_records(body: memoryview, pos: int, count: int) -> list:
    records = []
    for _ in range(count):
        try:
            size, pos = read_uvarint(body, pos)
        except (IndexError, ValueError) as exc:
            raise ProtocolDecodeError(f"truncated record size: {exc}") from None
        if pos + size > len(body):
            raise ProtocolDecodeError(f"record of {size} bytes runs past the snapshot end")
        record, _version = decode_record(body[pos:pos + size])
        records.append(record)
        pos += size
    if pos != len(body):
        raise ProtocolDecodeError(f"{len(body) - pos} bytes after the last of {count} records")
    return records
