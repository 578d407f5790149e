"""A single-node log directory of the old format (``__kraftpy_metadata.json``) starts as a one-voter quorum with
the same topics, topic ids, partition counts, configs, cluster id and records, and no reused producer id.

The directory is made by hand as the old broker left it: meta.properties, the JSON file, and partition logs
whose batches were written in leader epoch 0.  Then a real broker process starts on it and real clients read
the old records.  Crash safety: the conversion is re-run after a crash before the file was renamed (the
metadata log already holds the topics) and after a SIGKILL at an arbitrary point of the first start.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from pathlib import Path

import pytest
from broker_process import BrokerProcess, free_port  # tests/helpers is on sys.path (conftest.py)
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource, ResourceType

from cluster.broker.legacy_metadata import CONVERTED_SUFFIX, LEGACY_METADATA_FILE
from cluster.storage.meta_properties import write_meta_properties
from cluster.storage.partition_log import LogConfig, PartitionLog
from cluster.wire import records as wire_records

pytestmark = pytest.mark.timeout(120)

CLUSTER_ID = "legacy-cluster-id-0001"
TOPIC = "legacy-orders"
TOPIC_ID = uuid.UUID("6f1c2a4e-0d6b-4c8e-9a51-3b2f7e9d1c00")
PARTITIONS = 3
RECORDS_PER_PARTITION = 5
RETENTION_MS = "86400000"
PRODUCER_ID_BLOCK_END = 5000


def write_old_format_directory(data_dir: Path) -> None:
    """What the single-node broker before the one-voter quorum left behind."""
    write_meta_properties(str(data_dir), CLUSTER_ID, 1)
    metadata = {"version": 1, "producer_id_block_end": PRODUCER_ID_BLOCK_END, "topics": [
        {"name": TOPIC, "topic_id": str(TOPIC_ID), "num_partitions": PARTITIONS, "replication_factor": 1,
         "configs": {"retention.ms": RETENTION_MS}}]}
    (data_dir / LEGACY_METADATA_FILE).write_text(json.dumps(metadata))
    now_ms = int(time.time() * 1000)
    for index in range(PARTITIONS):
        log = PartitionLog.open(str(data_dir / f"{TOPIC}-{index}"), LogConfig(), now_ms)
        batch = bytearray(wire_records.build_batch(
            [(f"k{i}".encode(), f"p{index}-v{i}".encode(), [], now_ms) for i in range(RECORDS_PER_PARTITION)]))
        log.append(batch, wire_records.parse_batch_header(batch), 0, now_ms)
        log.flush()
        log.close()


def read_partition(bootstrap: str, index: int) -> list[bytes]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"legacy-{uuid.uuid4().hex[:8]}",
                         "enable.auto.commit": False})
    try:
        consumer.assign([TopicPartition(TOPIC, index, 0)])
        values: list[bytes] = []
        deadline = time.monotonic() + 20
        while len(values) < RECORDS_PER_PARTITION and time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is not None and message.error() is None:
                values.append(message.value())
        return values
    finally:
        consumer.close()


def check_converted(broker: BrokerProcess) -> None:
    from confluent_kafka import TopicCollection

    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    metadata = admin.list_topics(timeout=10)
    assert metadata.cluster_id == CLUSTER_ID
    description = admin.describe_topics(TopicCollection([TOPIC]), request_timeout=10)[TOPIC].result(15)
    # librdkafka prints a topic id as Kafka's Uuid.toString does: URL-safe base64 without padding.
    assert str(description.topic_id) == base64.urlsafe_b64encode(TOPIC_ID.bytes).decode().rstrip("=")
    assert [p.id for p in description.partitions] == list(range(PARTITIONS))
    resource = ConfigResource(ResourceType.TOPIC, TOPIC)
    entries = admin.describe_configs([resource], request_timeout=10)[resource].result(15)
    assert entries["retention.ms"].value == RETENTION_MS
    for index in range(PARTITIONS):
        assert read_partition(broker.bootstrap, index) == [
            f"p{index}-v{i}".encode() for i in range(RECORDS_PER_PARTITION)]
    assert not (broker.data_dir / LEGACY_METADATA_FILE).exists()
    assert (broker.data_dir / (LEGACY_METADATA_FILE + CONVERTED_SUFFIX)).exists()


def producer_ids_in(data_dir: Path, index: int) -> set[int]:
    log = PartitionLog.open(str(data_dir / f"{TOPIC}-{index}"), LogConfig(), int(time.time() * 1000))
    try:
        data = log.read(0, 10_000_000, log.log_end_offset)
        return {header.producer_id for _pos, header in wire_records.iter_batch_headers(data)}
    finally:
        log.close()


def start_on_old_directory(broker_factory, tmp_path: Path, name: str = "legacy") -> BrokerProcess:
    write_old_format_directory(tmp_path / name / "data")
    return broker_factory(name)


def test_old_directory_is_converted_and_its_records_read(broker_factory, tmp_path):
    broker = start_on_old_directory(broker_factory, tmp_path)
    check_converted(broker)
    producer = Producer({"bootstrap.servers": broker.bootstrap, "enable.idempotence": True})
    producer.produce(TOPIC, value=b"after-conversion", partition=1)
    assert producer.flush(15) == 0
    broker.stop()
    ids = producer_ids_in(broker.data_dir, 1) - {-1}
    assert ids and min(ids) >= PRODUCER_ID_BLOCK_END, f"producer id reused below the old block: {ids}"


def test_conversion_rerun_after_a_crash_before_the_rename_is_harmless(broker_factory, tmp_path):
    broker = start_on_old_directory(broker_factory, tmp_path)
    check_converted(broker)
    broker.stop()
    # The state a crash between the commit of the records and the rename leaves: both the log and the file.
    (broker.data_dir / (LEGACY_METADATA_FILE + CONVERTED_SUFFIX)).rename(broker.data_dir / LEGACY_METADATA_FILE)
    mark = broker.log_size()
    broker.start()
    check_converted(broker)
    assert "(0 added to the metadata log now)" in broker.log_path.read_text()[mark:]


def test_a_start_killed_midway_converts_on_the_next_start(broker_factory, tmp_path):
    data_dir = tmp_path / "legacy" / "data"
    write_old_format_directory(data_dir)
    broker = BrokerProcess(tmp_path / "legacy", name="legacy")
    try:
        for delay_s in (0.2, 0.6):   # before and around the conversion (the process takes ~1 s to start)
            broker.start(wait=False)
            time.sleep(delay_s)
            broker.kill9()
        broker.start()
        check_converted(broker)
    finally:
        broker.stop()


def test_a_voter_of_a_larger_quorum_refuses_an_old_directory_and_says_what_to_do(tmp_path):
    data_dir = tmp_path / "legacy" / "data"
    write_old_format_directory(data_dir)
    voters = f"1@127.0.0.1:{free_port()},2@127.0.0.1:{free_port()}"
    broker = BrokerProcess(tmp_path / "legacy", name="legacy", overrides={"controller.quorum.voters": voters})
    broker.start(wait=False)
    try:
        broker.process.wait(timeout=30)
        assert broker.process.returncode == 1
    finally:
        broker.kill9()
    assert "start this node once without controller.quorum.voters" in broker.log_tail()
    assert (data_dir / LEGACY_METADATA_FILE).exists()
