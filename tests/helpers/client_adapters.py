"""One produce/consume/admin vocabulary over four real Kafka clients.

The end-to-end tests cross every client with every other client and every codec.  Written per pair,
that would be dozens of near-copies; instead each client gets one `produce` and one `consume` adapter
with the same signature and the same neutral result types (`Delivered`, `Received`), and the tests
compare those.  Clients: confluent-kafka (librdkafka 2.16), kafka-python 3, aiokafka, and Debian's
kcat (librdkafka 2.0.2, an independent old librdkafka build).

Consumers never join a group (groups may not exist yet): they `assign()` partitions and start from
the beginning; the confluent consumer needs a group.id in its config but never commits.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from typing import Iterable, Sequence

CLIENTS = ("confluent", "kafka-python", "aiokafka")
ALL_CLIENTS = CLIENTS + ("kcat",)
CODECS = ("none", "gzip", "snappy", "lz4", "zstd")
KCAT = "/usr/bin/kcat"

TIMESTAMP_CREATE = "CreateTime"
TIMESTAMP_APPEND = "LogAppendTime"
TIMESTAMP_NONE = "none"


@dataclass(frozen=True)
class Msg:
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes | None], ...] = ()
    timestamp_ms: int | None = None
    partition: int | None = None


@dataclass(frozen=True)
class Delivered:
    """A message the producer reported as acknowledged; offset is None where the client cannot tell (kcat)."""
    index: int
    partition: int
    offset: int | None


@dataclass(frozen=True)
class Received:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes | None], ...]
    timestamp_ms: int | None
    timestamp_type: str


class ClientError(AssertionError):
    """A client call failed; the message names the client and what it reported."""


@dataclass
class ConsumeResult:
    records: list[Received]
    errors: list[str] = field(default_factory=list)


def unique_topic(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def kcat_available() -> bool:
    return shutil.which(KCAT) is not None or shutil.which("kcat") is not None


# ------------------------------------------------------------------------------------------------
# message sets
# ------------------------------------------------------------------------------------------------

def make_messages(count: int, *, ascii_only: bool = False, with_headers: bool = True,
                  base_timestamp_ms: int | None = None, partitions: int | None = None,
                  tombstones: bool = True, null_keys: bool = True) -> list[Msg]:
    """Deterministic, varied messages: null keys, tombstones, repeated and empty headers, binary values.

    Values repeat text so that every codec really compresses; binary bytes are added unless `ascii_only`.
    """
    messages = []
    for i in range(count):
        tombstone = tombstones and i % 7 == 6
        # a tombstone always has a key (compaction needs one; aiokafka refuses key=value=None)
        key = None if (null_keys and i % 5 == 3 and not tombstone) else f"key-{i:06d}".encode()
        if tombstone:
            value = None
        else:
            text = f"value-{i:06d}|" + "abcdefghij" * (i % 37)
            value = text.encode()
            if not ascii_only and i % 4 == 1:
                value += bytes((i * 7 + j) % 256 for j in range(64))
        headers: tuple[tuple[str, bytes | None], ...] = ()
        if with_headers:
            if i % 3 == 1:
                headers = (("trace", f"t{i}".encode()),)
            elif i % 3 == 2:
                headers = (("dup", b"first"), ("dup", b"second"), ("empty", b""))
        timestamp = base_timestamp_ms + i if base_timestamp_ms is not None else None
        partition = i % partitions if partitions else None
        messages.append(Msg(key, value, headers, timestamp, partition))
    return messages


# ------------------------------------------------------------------------------------------------
# producers
# ------------------------------------------------------------------------------------------------

def produce(client: str, bootstrap: str, topic: str, messages: Sequence[Msg], *, codec: str = "none",
            idempotent: bool | None = None, config: dict | None = None, timeout_s: float = 60.0,
            kcat_headers: Sequence[tuple[str, str]] = ()) -> list[Delivered]:
    """Produce `messages` with `client` and return one `Delivered` per message, in message order.

    Raises ClientError if any message is not acknowledged.  `idempotent=None` keeps the client default.
    """
    if client == "confluent":
        return _produce_confluent(bootstrap, topic, messages, codec, idempotent, config or {}, timeout_s)
    if client == "kafka-python":
        return _produce_kafka_python(bootstrap, topic, messages, codec, idempotent, config or {}, timeout_s)
    if client == "aiokafka":
        return asyncio.run(_produce_aiokafka(bootstrap, topic, messages, codec, idempotent, config or {},
                                             timeout_s))
    if client == "kcat":
        return _produce_kcat(bootstrap, topic, messages, codec, config or {}, timeout_s, kcat_headers)
    raise ValueError(client)


def _produce_confluent(bootstrap, topic, messages, codec, idempotent, config, timeout_s):
    from confluent_kafka import Producer

    conf = {
        "bootstrap.servers": bootstrap,
        "client.id": "kraftpy-it-confluent",
        "compression.type": codec,
        "linger.ms": 5,
        "acks": "all",
        "message.timeout.ms": int(timeout_s * 1000),
    }
    if idempotent is not None:
        conf["enable.idempotence"] = idempotent
    conf.update(config)
    producer = Producer(conf)
    reports: list = [None] * len(messages)

    def on_delivery_for(index):
        def on_delivery(err, msg):
            reports[index] = (err, msg.partition(), msg.offset())
        return on_delivery

    for index, msg in enumerate(messages):
        kwargs = {}
        if msg.partition is not None:
            kwargs["partition"] = msg.partition
        if msg.timestamp_ms is not None:
            kwargs["timestamp"] = msg.timestamp_ms
        if msg.headers:
            kwargs["headers"] = list(msg.headers)
        while True:
            try:
                producer.produce(topic, value=msg.value, key=msg.key, on_delivery=on_delivery_for(index),
                                 **kwargs)
                break
            except BufferError:
                producer.poll(0.05)
        producer.poll(0)
    remaining = producer.flush(timeout_s)
    return _collect_reports("confluent", topic, reports, remaining)


def _collect_reports(client, topic, reports, remaining=0):
    failures = [(i, r) for i, r in enumerate(reports) if r is None or r[0] is not None]
    if failures or remaining:
        sample = "; ".join(f"#{i}: {r[0] if r else 'no delivery report'}" for i, r in failures[:5])
        raise ClientError(f"{client} producer to {topic}: {len(failures)} of {len(reports)} messages not "
                          f"acknowledged ({remaining} still queued): {sample}")
    return [Delivered(i, r[1], r[2]) for i, r in enumerate(reports)]


def _produce_kafka_python(bootstrap, topic, messages, codec, idempotent, config, timeout_s):
    from kafka import KafkaProducer

    kwargs = dict(bootstrap_servers=bootstrap, client_id="kraftpy-it-kafka-python",
                  compression_type=None if codec == "none" else codec, linger_ms=5, acks="all",
                  request_timeout_ms=int(timeout_s * 1000) // 2, max_block_ms=int(timeout_s * 1000))
    if idempotent is not None:
        kwargs["enable_idempotence"] = idempotent
    kwargs.update(config)
    producer = KafkaProducer(**kwargs)
    try:
        futures = [producer.send(topic, value=m.value, key=m.key, headers=list(m.headers) or None,
                                 partition=m.partition, timestamp_ms=m.timestamp_ms) for m in messages]
        producer.flush(timeout=timeout_s)
        reports = []
        for future in futures:
            try:
                metadata = future.get(timeout=timeout_s)
                reports.append((None, metadata.partition, metadata.offset))
            except Exception as exc:  # each failure is reported, not just the first
                reports.append((repr(exc), None, None))
    finally:
        producer.close(timeout=10)
    return _collect_reports("kafka-python", topic, reports)


async def _produce_aiokafka(bootstrap, topic, messages, codec, idempotent, config, timeout_s):
    from aiokafka import AIOKafkaProducer

    kwargs = dict(bootstrap_servers=bootstrap, client_id="kraftpy-it-aiokafka",
                  compression_type=None if codec == "none" else codec, linger_ms=5, acks="all",
                  request_timeout_ms=int(timeout_s * 1000) // 2)
    if idempotent is not None:
        kwargs["enable_idempotence"] = idempotent
    kwargs.update(config)
    producer = AIOKafkaProducer(**kwargs)
    await asyncio.wait_for(producer.start(), timeout_s)
    try:
        futures = []
        for m in messages:
            futures.append(await producer.send(topic, value=m.value, key=m.key, partition=m.partition,
                                               timestamp_ms=m.timestamp_ms,
                                               headers=list(m.headers) or None))
        results = await asyncio.wait_for(asyncio.gather(*futures, return_exceptions=True), timeout_s)
    finally:
        await producer.stop()
    reports = [(repr(r), None, None) if isinstance(r, BaseException) else (None, r.partition, r.offset)
               for r in results]
    return _collect_reports("aiokafka", topic, reports)


def _kcat_line(msg: Msg) -> bytes:
    # `-K :` splits key from value at the first ':'; a line without ':' has a null key, and with -Z an
    # empty value becomes a null value (tombstone).
    value = msg.value or b""
    if b"\n" in value or (msg.key and (b":" in msg.key or b"\n" in msg.key)):
        raise ValueError("kcat messages must be single-line with ':'-free keys")
    if msg.key is None:
        if b":" in value:
            raise ValueError("a kcat message with a null key must not contain ':'")
        return value + b"\n"
    return msg.key + b":" + value + b"\n"


def _produce_kcat(bootstrap, topic, messages, codec, config, timeout_s, kcat_headers):
    partitions = {m.partition for m in messages}
    if len(partitions) != 1:
        raise ValueError("kcat produces to one partition per call")
    partition = partitions.pop()
    args = [KCAT, "-b", bootstrap, "-P", "-t", topic, "-K", ":", "-Z", "-z", codec,
            "-X", "linger.ms=5", "-X", "acks=all", "-X", f"message.timeout.ms={int(timeout_s * 1000)}"]
    if partition is not None:
        args += ["-p", str(partition)]
    for name, value in kcat_headers:
        args += ["-H", f"{name}={value}"]
    for key, value in config.items():
        args += ["-X", f"{key}={value}"]
    stdin = b"".join(_kcat_line(m) for m in messages)
    proc = subprocess.run(args, input=stdin, capture_output=True, timeout=timeout_s + 10)
    stderr = proc.stderr.decode(errors="replace")
    if proc.returncode != 0 or "ERROR" in stderr or "Failed" in stderr:
        raise ClientError(f"kcat producer to {topic} (codec {codec}) exited {proc.returncode}: {stderr[-2000:]}")
    return [Delivered(i, partition if partition is not None else -1, None) for i in range(len(messages))]


# ------------------------------------------------------------------------------------------------
# consumers
# ------------------------------------------------------------------------------------------------

def consume(client: str, bootstrap: str, topic: str, partitions: Iterable[int], count: int, *,
            timeout_s: float = 30.0, config: dict | None = None) -> ConsumeResult:
    """Read partitions of `topic` from their beginning until `count` records arrived or `timeout_s` passed.

    Returns what arrived (the caller asserts on it) plus any errors the client reported meanwhile.
    """
    partitions = list(partitions)
    if client == "confluent":
        return _consume_confluent(bootstrap, topic, partitions, count, timeout_s, config or {})
    if client == "kafka-python":
        return _consume_kafka_python(bootstrap, topic, partitions, count, timeout_s, config or {})
    if client == "aiokafka":
        return asyncio.run(_consume_aiokafka(bootstrap, topic, partitions, count, timeout_s, config or {}))
    if client == "kcat":
        return _consume_kcat(bootstrap, topic, partitions, count, timeout_s, config or {})
    raise ValueError(client)


def confluent_consumer_config(bootstrap: str, **overrides) -> dict:
    """A confluent-kafka consumer that never uses its group: assign() only, no commits."""
    conf = {
        "bootstrap.servers": bootstrap,
        "client.id": "kraftpy-it-confluent",
        "group.id": f"kraftpy-it-unused-{uuid.uuid4().hex[:8]}",  # required by the binding, never joined
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
        "fetch.wait.max.ms": 100,
        # performance.md §2 trap 3: the default 1000 ms fetch.queue.backoff stalls a fast consumer.
        "queued.min.messages": 1_000_000,
        "fetch.queue.backoff.ms": 5,
    }
    conf.update(overrides)
    return conf


def _consume_confluent(bootstrap, topic, partitions, count, timeout_s, config):
    from confluent_kafka import OFFSET_BEGINNING, TIMESTAMP_CREATE_TIME, TIMESTAMP_LOG_APPEND_TIME, Consumer
    from confluent_kafka import TopicPartition as CkTopicPartition

    consumer = Consumer(confluent_consumer_config(bootstrap, **config))
    result = ConsumeResult([])
    try:
        consumer.list_topics(topic, timeout=10)  # performance.md §2 trap 2: metadata before assign()
        consumer.assign([CkTopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        deadline = time.monotonic() + timeout_s
        while len(result.records) < count and time.monotonic() < deadline:
            # performance.md §2 trap 1: consume(n, timeout) blocks for the whole timeout.
            batch = consumer.consume(1000, 0)
            if not batch:
                one = consumer.poll(0.2)
                batch = [one] if one is not None else []
            for msg in batch:
                err = msg.error()
                if err is not None:
                    if err.fatal():
                        raise ClientError(f"confluent consumer fatal error: {err}")
                    result.errors.append(str(err))
                    continue
                ts_type, ts = msg.timestamp()
                ts_name = {TIMESTAMP_CREATE_TIME: TIMESTAMP_CREATE,
                           TIMESTAMP_LOG_APPEND_TIME: TIMESTAMP_APPEND}.get(ts_type, TIMESTAMP_NONE)
                result.records.append(Received(msg.topic(), msg.partition(), msg.offset(), msg.key(),
                                               msg.value(), tuple(msg.headers() or ()),
                                               ts if ts_name != TIMESTAMP_NONE else None, ts_name))
    finally:
        consumer.close()
    return result


def _kafka_python_received(record) -> Received:
    ts_name = {0: TIMESTAMP_CREATE, 1: TIMESTAMP_APPEND}.get(record.timestamp_type, TIMESTAMP_NONE)
    return Received(record.topic, record.partition, record.offset, record.key, record.value,
                    tuple((k, v) for k, v in (record.headers or ())), record.timestamp, ts_name)


def _consume_kafka_python(bootstrap, topic, partitions, count, timeout_s, config):
    from kafka import KafkaConsumer, TopicPartition

    kwargs = dict(bootstrap_servers=bootstrap, client_id="kraftpy-it-kafka-python", group_id=None,
                  enable_auto_commit=False, auto_offset_reset="earliest", fetch_max_wait_ms=100)
    kwargs.update(config)
    consumer = KafkaConsumer(**kwargs)
    result = ConsumeResult([])
    try:
        tps = [TopicPartition(topic, p) for p in partitions]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        deadline = time.monotonic() + timeout_s
        while len(result.records) < count and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=200, max_records=2000).values():
                result.records.extend(_kafka_python_received(r) for r in records)
    finally:
        consumer.close()
    return result


async def _consume_aiokafka(bootstrap, topic, partitions, count, timeout_s, config):
    from aiokafka import AIOKafkaConsumer, TopicPartition

    kwargs = dict(bootstrap_servers=bootstrap, client_id="kraftpy-it-aiokafka", group_id=None,
                  enable_auto_commit=False, auto_offset_reset="earliest", fetch_max_wait_ms=100)
    kwargs.update(config)
    consumer = AIOKafkaConsumer(**kwargs)
    await asyncio.wait_for(consumer.start(), timeout_s)
    result = ConsumeResult([])
    try:
        tps = [TopicPartition(topic, p) for p in partitions]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        deadline = time.monotonic() + timeout_s
        while len(result.records) < count and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=200, max_records=2000)
            for records in batches.values():
                for r in records:
                    ts_name = {0: TIMESTAMP_CREATE, 1: TIMESTAMP_APPEND}.get(r.timestamp_type, TIMESTAMP_NONE)
                    result.records.append(Received(r.topic, r.partition, r.offset, r.key, r.value,
                                                   tuple((k, v) for k, v in (r.headers or ())),
                                                   r.timestamp, ts_name))
    finally:
        await consumer.stop()
    return result


def _kcat_headers(raw) -> tuple[tuple[str, bytes], ...]:
    # kcat -J prints headers as a flat ["name1", "value1", "name2", "value2", ...] list.
    if not raw:
        return ()
    return tuple((raw[i], (raw[i + 1] or "").encode()) for i in range(0, len(raw), 2))


def _consume_kcat(bootstrap, topic, partitions, count, timeout_s, config):
    result = ConsumeResult([])
    for partition in partitions:
        args = [KCAT, "-b", bootstrap, "-C", "-t", topic, "-p", str(partition), "-o", "beginning", "-e", "-J"]
        for key, value in config.items():
            args += ["-X", f"{key}={value}"]
        try:
            proc = subprocess.run(args, capture_output=True, timeout=timeout_s)
        except subprocess.TimeoutExpired as exc:
            result.errors.append(f"kcat consumer timed out after {timeout_s}s on partition {partition}")
            stdout = exc.stdout or b""
            stderr = exc.stderr or b""
        else:
            stdout, stderr = proc.stdout, proc.stderr
            if proc.returncode != 0:
                result.errors.append(f"kcat exited {proc.returncode}: {stderr.decode(errors='replace')[-2000:]}")
        for line in stdout.decode(errors="replace").splitlines():
            if not line.strip():
                continue
            rec = json.loads(line)
            ts_name = {"create": TIMESTAMP_CREATE, "logappend": TIMESTAMP_APPEND}.get(rec.get("tstype"),
                                                                                     TIMESTAMP_NONE)
            key = rec.get("key")
            payload = rec.get("payload")
            result.records.append(Received(rec["topic"], rec["partition"], rec["offset"],
                                           None if key is None else key.encode(),
                                           None if payload is None else payload.encode(),
                                           _kcat_headers(rec.get("headers")), rec.get("ts"), ts_name))
    return result


# ------------------------------------------------------------------------------------------------
# checks
# ------------------------------------------------------------------------------------------------

def describe_record(r: Received) -> str:
    return f"p{r.partition}@{r.offset} key={r.key!r:.40} value={r.value!r:.60} headers={r.headers!r:.80}"


def assert_roundtrip(sent: Sequence[Msg], delivered: Sequence[Delivered], consumed: ConsumeResult, *,
                     label: str, check_timestamps: bool = True, check_headers: bool = True,
                     first_offset: int = 0) -> None:
    """Every sent message arrived once, intact, at the offset its producer was told, offsets contiguous."""
    records = consumed.records
    where = f"[{label}]"
    if len(records) != len(sent):
        raise AssertionError(f"{where} consumed {len(records)} records, produced {len(sent)}; "
                             f"client errors: {consumed.errors[:5]}")
    by_partition: dict[int, list[Received]] = {}
    for r in records:
        by_partition.setdefault(r.partition, []).append(r)
    for partition, recs in by_partition.items():
        offsets = [r.offset for r in recs]
        expected = list(range(first_offset, first_offset + len(recs)))
        assert offsets == expected, f"{where} partition {partition}: offsets not contiguous: {offsets[:20]}..."

    at = {(r.partition, r.offset): r for r in records}
    known_offsets = all(d.offset is not None for d in delivered)
    if known_offsets:
        pairs = [(sent[d.index], at.get((d.partition, d.offset)), d) for d in delivered]
    else:  # kcat: one partition, acknowledged in order
        ordered = sorted(records, key=lambda r: (r.partition, r.offset))
        pairs = [(msg, rec, None) for msg, rec in zip(sent, ordered, strict=False)]
    for msg, rec, d in pairs:
        assert rec is not None, f"{where} delivered at p{d.partition}@{d.offset} but not consumed there"
        if msg.partition is not None:
            assert rec.partition == msg.partition, f"{where} {describe_record(rec)}: wrong partition"
        assert rec.key == msg.key, f"{where} {describe_record(rec)}: key {rec.key!r} != sent {msg.key!r}"
        assert rec.value == msg.value, f"{where} {describe_record(rec)}: value != sent {msg.value!r:.60}"
        if check_headers:
            assert rec.headers == msg.headers, f"{where} {describe_record(rec)}: headers != sent {msg.headers}"
        if check_timestamps and msg.timestamp_ms is not None:
            assert rec.timestamp_type == TIMESTAMP_CREATE, f"{where} {describe_record(rec)}: {rec.timestamp_type}"
            assert rec.timestamp_ms == msg.timestamp_ms, (
                f"{where} {describe_record(rec)}: timestamp {rec.timestamp_ms} != sent {msg.timestamp_ms}")


# ------------------------------------------------------------------------------------------------
# admin (confluent-kafka), used to set up topics for the data-path tests
# ------------------------------------------------------------------------------------------------

def create_topic(bootstrap: str, name: str, partitions: int = 1, config: dict[str, str] | None = None,
                 timeout_s: float = 20.0) -> None:
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1,
                                            config=dict(config or {}))], operation_timeout=timeout_s)
    try:
        futures[name].result(timeout=timeout_s)
    except Exception as exc:
        raise ClientError(f"confluent AdminClient create_topics({name}, {partitions}, {config}): {exc!r}") from exc
    wait_for_topic(bootstrap, name, partitions, timeout_s)


def wait_for_topic(bootstrap: str, name: str, partitions: int, timeout_s: float = 20.0) -> None:
    """Until metadata shows `partitions` partitions of `name`, each with a leader."""
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": bootstrap})
    deadline = time.monotonic() + timeout_s
    last = None
    while time.monotonic() < deadline:
        topic = admin.list_topics(name, timeout=5).topics.get(name)
        last = topic
        if topic is not None and topic.error is None and len(topic.partitions) == partitions and all(
                p.leader >= 0 and p.error is None for p in topic.partitions.values()):
            return
        time.sleep(0.1)
    detail = None if last is None else (last.error, {p: (m.leader, m.error) for p, m in last.partitions.items()})
    raise ClientError(f"topic {name} not ready with {partitions} partitions after {timeout_s}s: {detail}")
