"""Every client writes every codec and every other client reads it back, byte for byte.

The full cross product of distinct (producer, consumer) pairs over confluent-kafka, kafka-python,
aiokafka and kcat, times the five codecs: cheap enough (~0.3 s a case) to run whole.  Each case checks
keys, values (binary, tombstones), headers (repeated names, empty values), CreateTime timestamps as
sent, partitions, contiguous offsets, the offsets the producer was told, and - from the segment
files - that the batches on disk really carry the codec under test.
"""

from __future__ import annotations

import time

import pytest
from client_adapters import (
    ALL_CLIENTS,
    CODECS,
    TIMESTAMP_CREATE,
    Msg,
    assert_roundtrip,
    consume,
    create_topic,
    kcat_available,
    make_messages,
    produce,
    unique_topic,
)
from log_segments import codecs_on_disk

pytestmark = [pytest.mark.timeout(90)]

MESSAGES_PER_CASE = 300
KCAT_HEADERS = (("source", "kcat"), ("dup", "1"), ("dup", "2"))


def _matrix() -> list[tuple[str, str, str]]:
    """Every ordered pair of distinct clients, for every codec (60 cases, ~0.3 s each)."""
    return [(p, c, codec) for codec in CODECS for p in ALL_CLIENTS for c in ALL_CLIENTS if p != c]


MATRIX = _matrix()


def test_matrix_covers_every_codec_writer_and_reader():
    for codec in CODECS:
        pairs = {(p, r) for p, r, c in MATRIX if c == codec}
        assert pairs == {(p, r) for p in ALL_CLIENTS for r in ALL_CLIENTS if p != r}


def _assert_codec_on_disk(broker, topic: str, codec: str) -> None:
    found = codecs_on_disk(broker.partition_dir(topic, 0))
    assert found, f"no batches found on disk in {broker.partition_dir(topic, 0)}"
    if codec == "none":
        assert found == {"none"}, f"uncompressed produce stored batches with codecs {found}"
    else:
        # librdkafka sends a batch uncompressed when compressing would not shrink it (tiny tail batches)
        assert codec in found and found <= {codec, "none"}, (
            f"produced with {codec}, batches on disk use {found}: the client did not compress. librdkafka "
            f"compresses gzip/snappy/lz4 only if Produce v0 is advertised (2.0.2) and lz4 only if FindCoordinator "
            f"v0 is advertised (feature LZ4 in rdkafka_feature.c); kafka-protocol.md §2.3")


@pytest.mark.parametrize("producer,consumer,codec", MATRIX, ids=[f"{p}-to-{c}-{z}" for p, c, z in MATRIX])
def test_roundtrip(broker, producer, consumer, codec):
    if "kcat" in (producer, consumer) and not kcat_available():
        pytest.skip("/usr/bin/kcat is not installed (apt-get install kcat)")
    topic = unique_topic(f"rt-{producer}-{consumer}-{codec}")
    create_topic(broker.bootstrap, topic, partitions=1)
    label = f"{producer} -> {consumer}, {codec}"

    if producer == "kcat":
        base = make_messages(MESSAGES_PER_CASE, ascii_only=True, with_headers=False)
        headers = tuple((k, v.encode()) for k, v in KCAT_HEADERS)
        sent = [Msg(m.key, m.value, headers, None, 0) for m in base]
        before_ms = int(time.time() * 1000)
        delivered = produce("kcat", broker.bootstrap, topic, sent, codec=codec, kcat_headers=KCAT_HEADERS)
        after_ms = int(time.time() * 1000)
    else:
        base_ts = int(time.time() * 1000) - 3_600_000  # an hour ago: clearly the producer's, not the broker's
        sent = make_messages(MESSAGES_PER_CASE, ascii_only=(consumer == "kcat"), base_timestamp_ms=base_ts,
                             partitions=1)
        delivered = produce(producer, broker.bootstrap, topic, sent, codec=codec)

    consumed = consume(consumer, broker.bootstrap, topic, [0], len(sent), timeout_s=30)
    assert_roundtrip(sent, delivered, consumed, label=label)
    if producer == "kcat":
        for rec in consumed.records:
            assert rec.timestamp_type == TIMESTAMP_CREATE, f"[{label}] {rec.timestamp_type}"
            assert before_ms - 1000 <= rec.timestamp_ms <= after_ms + 1000, (
                f"[{label}] kcat message timestamp {rec.timestamp_ms} outside [{before_ms}, {after_ms}]")
    _assert_codec_on_disk(broker, topic, codec)


@pytest.mark.parametrize("consumer", ["confluent", "kafka-python", "aiokafka"])
def test_null_and_empty_are_distinct(broker, consumer):
    """Null vs empty key, value and header value survive the trip as sent (Kafka encodes them apart)."""
    topic = unique_topic(f"nulls-{consumer}")
    create_topic(broker.bootstrap, topic, 1)
    sent = [Msg(b"", b"", (("h", b""),), None, 0),
            Msg(b"k", b"", (("h", None),), None, 0),
            Msg(None, b"v", (("h", None), ("h", b"x")), None, 0),
            Msg(b"", None, (), None, 0)]
    delivered = produce("confluent", broker.bootstrap, topic, sent)
    consumed = consume(consumer, broker.bootstrap, topic, [0], len(sent), timeout_s=20)
    assert_roundtrip(sent, delivered, consumed, label=f"null/empty confluent -> {consumer}",
                     check_timestamps=False)
