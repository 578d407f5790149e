"""Topic administration through each client's admin API, and the errors Kafka defines for misuse.

Lifecycle per client: create (partitions and configs) -> list -> describe (partitions, leader,
replicas, ISR) -> describe configs (the value set at creation with its DYNAMIC_TOPIC_CONFIG source,
an unset key with its DEFAULT_CONFIG source) -> create partitions (3 -> 5) -> delete.  Errors: an
existing topic, 0 partitions, a replication factor above the broker count, invalid names.
"""

from __future__ import annotations

import asyncio
import time

import pytest
from client_adapters import create_topic, unique_topic

pytestmark = [pytest.mark.timeout(60)]

TOPIC_CONFIGS = {"retention.ms": "3600000", "cleanup.policy": "delete"}
TOO_LONG_NAME = "t" * 250

# (case id, name suffix or full name, partitions, replication factor, Kafka error code)
ERROR_CASES = [
    ("already-exists", None, 1, 1, 36),        # TOPIC_ALREADY_EXISTS
    ("zero-partitions", "zero", 0, 1, 37),     # INVALID_PARTITIONS
    ("rf-3-on-1-broker", "rf3", 1, 3, 38),     # INVALID_REPLICATION_FACTOR
    ("slash-in-name", "bad/name", 1, 1, 17),   # INVALID_TOPIC_EXCEPTION
    ("250-char-name", TOO_LONG_NAME, 1, 1, 17),
    ("dot-dot-name", "..", 1, 1, 17),
]


def _case_name(existing: str, name: str | None) -> str:
    if name is None:
        return existing
    if name in ("bad/name", TOO_LONG_NAME, ".."):
        return name
    return unique_topic(name)


def _wait_until(predicate, timeout_s: float = 10.0, what: str = "condition"):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")


# ------------------------------------------------------------------------------------------------
# confluent-kafka
# ------------------------------------------------------------------------------------------------

def _confluent_admin(broker):
    from confluent_kafka.admin import AdminClient

    return AdminClient({"bootstrap.servers": broker.bootstrap, "client.id": "kraftpy-it-admin"})


def test_admin_lifecycle_confluent(broker):
    from confluent_kafka import TopicCollection
    from confluent_kafka.admin import ConfigResource, ConfigSource, NewPartitions, NewTopic, ResourceType

    admin = _confluent_admin(broker)
    name = unique_topic("adm-ck")
    admin.create_topics([NewTopic(name, num_partitions=3, replication_factor=1, config=TOPIC_CONFIGS)],
                        operation_timeout=10)[name].result(15)
    _wait_until(lambda: name in admin.list_topics(timeout=5).topics, what=f"{name} in list_topics")

    description = admin.describe_topics(TopicCollection([name]), request_timeout=10)[name].result(15)
    assert [p.id for p in description.partitions] == [0, 1, 2]
    for p in description.partitions:
        assert p.leader is not None and p.leader.id == 1, f"partition {p.id} leader {p.leader}"
        assert [n.id for n in p.replicas] == [1] and [n.id for n in p.isr] == [1], p
    assert description.is_internal is False

    resource = ConfigResource(ResourceType.TOPIC, name)
    entries = admin.describe_configs([resource], request_timeout=10)[resource].result(15)
    for key, value in TOPIC_CONFIGS.items():
        assert entries[key].value == value, f"{key}: {entries[key].value}"
        assert ConfigSource(entries[key].source) == ConfigSource.DYNAMIC_TOPIC_CONFIG, f"{key}: source {entries[key].source}"
        assert not entries[key].is_default
    for key in ("segment.bytes", "max.message.bytes", "min.insync.replicas"):
        assert key in entries, f"describe_configs lacks {key}; has {sorted(entries)[:20]}..."
        entry = entries[key]
        assert entry.value is not None and entry.value.lstrip("-").isdigit(), f"{key}={entry.value}"
        assert ConfigSource(entry.source) == ConfigSource.DEFAULT_CONFIG and entry.is_default, (
            f"{key}: source {entry.source}, is_default {entry.is_default}")

    admin.create_partitions([NewPartitions(name, 5)], operation_timeout=10)[name].result(15)
    _wait_until(lambda: len(admin.list_topics(name, timeout=5).topics[name].partitions) == 5,
                what="5 partitions in metadata")

    admin.delete_topics([name], operation_timeout=10)[name].result(15)
    _wait_until(lambda: name not in admin.list_topics(timeout=5).topics, what=f"{name} gone from list_topics")


def test_describe_broker_configs_confluent(broker):
    from confluent_kafka.admin import ConfigResource, ConfigSource, ResourceType

    admin = _confluent_admin(broker)
    resource = ConfigResource(ResourceType.BROKER, "1")
    entries = admin.describe_configs([resource], request_timeout=10)[resource].result(15)
    assert entries["num.partitions"].value == "1"
    assert ConfigSource(entries["num.partitions"].source) == ConfigSource.STATIC_BROKER_CONFIG
    assert entries["auto.create.topics.enable"].value == "true"
    assert "log.segment.bytes" in entries and "message.max.bytes" in entries


@pytest.mark.parametrize("case,name,partitions,rf,code", ERROR_CASES, ids=[c[0] for c in ERROR_CASES])
def test_create_topic_errors_confluent(broker, case, name, partitions, rf, code):
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import NewTopic

    existing = unique_topic("adm-exists")
    create_topic(broker.bootstrap, existing, 1)
    topic = _case_name(existing, name)
    admin = _confluent_admin(broker)
    future = admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=rf)],
                                 operation_timeout=10)[topic]
    with pytest.raises(KafkaException) as excinfo:
        future.result(15)
    error = excinfo.value.args[0]
    assert error.code() == code, f"{case}: got {error.name()} ({error.code()}): {error.str()}"
    if case != "already-exists":
        assert topic not in admin.list_topics(timeout=5).topics, f"{case}: the topic was created anyway"


def test_other_admin_errors_confluent(broker):
    from confluent_kafka import KafkaError, KafkaException
    from confluent_kafka.admin import ConfigResource, NewPartitions, ResourceType

    admin = _confluent_admin(broker)
    name = unique_topic("adm-err")
    create_topic(broker.bootstrap, name, 3)
    missing = unique_topic("adm-missing")
    checks = [
        ("decrease partitions 3 -> 2", lambda: admin.create_partitions([NewPartitions(name, 2)])[name],
         KafkaError.INVALID_PARTITIONS),
        ("delete unknown topic", lambda: admin.delete_topics([missing], operation_timeout=5)[missing],
         KafkaError.UNKNOWN_TOPIC_OR_PART),
    ]
    for what, call, code in checks:
        with pytest.raises(KafkaException) as excinfo:
            call().result(15)
        assert excinfo.value.args[0].code() == code, f"{what}: {excinfo.value.args[0]}"
    resource = ConfigResource(ResourceType.TOPIC, missing)
    with pytest.raises(KafkaException) as excinfo:
        admin.describe_configs([resource], request_timeout=10)[resource].result(15)
    assert excinfo.value.args[0].code() == KafkaError.UNKNOWN_TOPIC_OR_PART, excinfo.value.args[0]


# ------------------------------------------------------------------------------------------------
# kafka-python
# ------------------------------------------------------------------------------------------------

def _kafka_python_admin(broker):
    from kafka import KafkaAdminClient

    return KafkaAdminClient(bootstrap_servers=broker.bootstrap, client_id="kraftpy-it-admin",
                            request_timeout_ms=15_000)


def test_admin_lifecycle_kafka_python(broker):
    from kafka.admin import ConfigResource, ConfigResourceType

    admin = _kafka_python_admin(broker)
    name = unique_topic("adm-kp")
    try:
        admin.create_topics({name: {"num_partitions": 3, "replication_factor": 1, "configs": TOPIC_CONFIGS}},
                            timeout_ms=10_000)
        _wait_until(lambda: name in admin.list_topics(), what=f"{name} in list_topics")
        (topic,) = admin.describe_topics([name])
        assert topic["error_code"] == 0 and topic["name"] == name
        partitions = sorted(topic["partitions"], key=lambda p: p["partition_index"])
        assert [p["partition_index"] for p in partitions] == [0, 1, 2]
        for p in partitions:
            assert p["leader_id"] == 1 and p["replica_nodes"] == [1] and p["isr_nodes"] == [1], p

        configs = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, name)],
                                         config_filter="all")["topic"][name]
        for key, value in TOPIC_CONFIGS.items():
            assert configs[key]["value"] == value and configs[key]["config_source"] == "DYNAMIC_TOPIC_CONFIG", (
                f"{key}: {configs[key]}")
        assert configs["segment.bytes"]["config_source"] == "DEFAULT_CONFIG", configs["segment.bytes"]

        admin.create_partitions({name: 5}, timeout_ms=10_000)
        _wait_until(lambda: len(admin.describe_topics([name])[0]["partitions"]) == 5, what="5 partitions")

        admin.delete_topics([name], timeout_ms=10_000)
        _wait_until(lambda: name not in admin.list_topics(), what=f"{name} gone")
    finally:
        admin.close()


@pytest.mark.parametrize("case,name,partitions,rf,code", ERROR_CASES, ids=[c[0] for c in ERROR_CASES])
def test_create_topic_errors_kafka_python(broker, case, name, partitions, rf, code):
    from kafka.errors import BrokerResponseError

    existing = unique_topic("adm-exists")
    create_topic(broker.bootstrap, existing, 1)
    topic = _case_name(existing, name)
    admin = _kafka_python_admin(broker)
    try:
        with pytest.raises(BrokerResponseError) as excinfo:
            admin.create_topics({topic: {"num_partitions": partitions, "replication_factor": rf}},
                                timeout_ms=10_000)
        assert excinfo.value.errno == code, f"{case}: {excinfo.value!r}"
    finally:
        admin.close()


# ------------------------------------------------------------------------------------------------
# aiokafka
# ------------------------------------------------------------------------------------------------

def _config_source(entry: dict) -> int:
    # DescribeConfigs v0 has is_default instead of config_source
    if "config_source" in entry:
        return entry["config_source"]
    return 5 if entry.get("is_default") else 1


def test_admin_lifecycle_aiokafka(broker):
    from aiokafka.admin import AIOKafkaAdminClient, NewPartitions, NewTopic
    from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

    name = unique_topic("adm-aio")

    async def run():
        admin = AIOKafkaAdminClient(bootstrap_servers=broker.bootstrap, client_id="kraftpy-it-admin")
        await admin.start()
        try:
            response = await admin.create_topics([NewTopic(name, 3, 1, topic_configs=TOPIC_CONFIGS)])
            errors = [(e["topic"], e["error_code"]) for e in response.to_object()["topic_errors"]]
            assert errors == [(name, 0)], errors
            for _ in range(100):
                if name in await admin.list_topics():
                    break
                await asyncio.sleep(0.1)
            assert name in await admin.list_topics()

            (topic,) = await admin.describe_topics([name])
            assert topic["error_code"] == 0
            partitions = sorted(topic["partitions"], key=lambda p: p["partition"])
            assert [p["partition"] for p in partitions] == [0, 1, 2]
            assert all(p["leader"] == 1 and p["replicas"] == [1] and p["isr"] == [1] for p in partitions), partitions

            (described,) = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, name)])
            (resource,) = described.to_object()["resources"]
            assert resource["error_code"] == 0, resource
            entries = {e["config_names"]: e for e in resource["config_entries"]}
            for key, value in TOPIC_CONFIGS.items():
                assert entries[key]["config_value"] == value and _config_source(entries[key]) == 1, entries[key]
            assert _config_source(entries["segment.bytes"]) == 5, entries["segment.bytes"]

            await admin.create_partitions({name: NewPartitions(5)})
            for _ in range(100):
                (topic,) = await admin.describe_topics([name])
                if len(topic["partitions"]) == 5:
                    break
                await asyncio.sleep(0.1)
            assert len(topic["partitions"]) == 5

            deleted = (await admin.delete_topics([name])).to_object()["topic_error_codes"]
            assert [(e["topic"], e["error_code"]) for e in deleted] == [(name, 0)], deleted
            for _ in range(100):
                if name not in await admin.list_topics():
                    break
                await asyncio.sleep(0.1)
            assert name not in await admin.list_topics()
        finally:
            await admin.close()

    asyncio.run(run())


@pytest.mark.parametrize("case,name,partitions,rf,code", ERROR_CASES, ids=[c[0] for c in ERROR_CASES])
def test_create_topic_errors_aiokafka(broker, case, name, partitions, rf, code):
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    existing = unique_topic("adm-exists")
    create_topic(broker.bootstrap, existing, 1)
    topic = _case_name(existing, name)

    async def run():
        admin = AIOKafkaAdminClient(bootstrap_servers=broker.bootstrap, client_id="kraftpy-it-admin")
        await admin.start()
        try:
            response = await admin.create_topics([NewTopic(topic, partitions, rf)])
            return [(e["topic"], e["error_code"]) for e in response.to_object()["topic_errors"]]
        finally:
            await admin.close()

    assert asyncio.run(run()) == [(topic, code)], case
