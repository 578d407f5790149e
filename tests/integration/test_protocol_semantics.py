"""Connection-level protocol rules that Kafka clients rely on, checked on raw sockets.

* Responses leave in request order even when an earlier request (a long-poll fetch) finishes later.
* Produce with acks=0 gets no response at all; the next response on the connection is the next request's.
* ApiVersions v3 (flexible) is answered with a v0 response header and no unexpected tagged fields.
* An acks=all produce is answered only once the data is visible (the high watermark covers it).
"""

from __future__ import annotations

import struct
import time
import uuid

import pytest
from test_bad_input import RawConnection, a_batch, create_topic, fetch_all, produce

from cluster.wire.headers import decode_response_header, encode_request_header
from cluster.wire.messages import api_versions_request as avq
from cluster.wire.messages import api_versions_response as avr
from cluster.wire.messages import fetch_request as fq
from cluster.wire.messages import fetch_response as fr
from cluster.wire.messages import list_offsets_request as loq
from cluster.wire.messages import produce_request as pq

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def conn(broker):
    connection = RawConnection(broker.bootstrap)
    yield connection
    connection.close()


def send(conn: RawConnection, api_key: int, version: int, module, message, correlation_id: int) -> None:
    conn.send_frame(encode_request_header(api_key, version, correlation_id, "semantics-test")
                    + module.encode(message, version))


def test_responses_keep_request_order_behind_a_long_poll(conn):
    topic = f"order-{uuid.uuid4().hex[:8]}"
    assert create_topic(conn, topic) == 0
    fetch = fq.FetchRequest(max_wait_ms=700, min_bytes=1, max_bytes=1_000_000, topics=[fq.FetchTopic(
        topic=topic, partitions=[fq.FetchPartition(partition=0, fetch_offset=0, partition_max_bytes=1_000_000)])])
    started = time.monotonic()
    send(conn, 1, 12, fq, fetch, correlation_id=1001)
    send(conn, 18, 3, avq, avq.ApiVersionsRequest(client_software_name="t", client_software_version="1"), 1002)
    first = conn.read_frame()
    second = conn.read_frame()
    waited = time.monotonic() - started
    assert struct.unpack_from(">i", first)[0] == 1001
    assert struct.unpack_from(">i", second)[0] == 1002
    assert waited >= 0.6, "the empty fetch should have waited for max_wait_ms"
    body = fr.decode(first, decode_response_header(first, 0, 1)[1], 12)[0]
    assert body.responses[0].partitions[0].error_code == 0


def test_long_poll_is_woken_by_an_append(broker, conn):
    topic = f"wake-{uuid.uuid4().hex[:8]}"
    assert create_topic(conn, topic) == 0
    fetch = fq.FetchRequest(max_wait_ms=10_000, min_bytes=1, max_bytes=1_000_000, topics=[fq.FetchTopic(
        topic=topic, partitions=[fq.FetchPartition(partition=0, fetch_offset=0, partition_max_bytes=1_000_000)])])
    send(conn, 1, 12, fq, fetch, correlation_id=7)
    time.sleep(0.3)
    producer = RawConnection(broker.bootstrap)
    try:
        started = time.monotonic()
        assert produce(producer, topic, a_batch([b"wake up"])).error_code == 0
    finally:
        producer.close()
    frame = conn.read_frame()
    assert time.monotonic() - started < 2.0, "the parked fetch was not woken by the append"
    body = fr.decode(frame, decode_response_header(frame, 0, 1)[1], 12)[0]
    assert bytes(body.responses[0].partitions[0].records).find(b"wake up") > 0


def test_acks_zero_sends_no_response(conn):
    topic = f"acks0-{uuid.uuid4().hex[:8]}"
    assert create_topic(conn, topic) == 0
    request = pq.ProduceRequest(acks=0, timeout_ms=1000, topic_data=[pq.TopicProduceData(
        name=topic, partition_data=[pq.PartitionProduceData(index=0, records=a_batch([b"fire-and-forget"]))])])
    send(conn, 0, 9, pq, request, correlation_id=500)
    send(conn, 18, 0, avq, avq.ApiVersionsRequest(), correlation_id=501)
    frame = conn.read_frame()
    assert struct.unpack_from(">i", frame)[0] == 501
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        if [r.value for r in fetch_all(conn, topic)] == [b"fire-and-forget"]:
            break
        time.sleep(0.05)
    assert [r.value for r in fetch_all(conn, topic)] == [b"fire-and-forget"]


def test_api_versions_v3_has_header_v0_and_no_tagged_fields(conn):
    send(conn, 18, 3, avq, avq.ApiVersionsRequest(client_software_name="kcat", client_software_version="1.7"), 9)
    frame = conn.read_frame()
    correlation_id, pos = decode_response_header(frame, 0, 0)
    assert correlation_id == 9
    response, end = avr.decode(frame, pos, 3)
    assert end == len(frame)
    assert frame[-1] == 0, "empty top-level tagged-field section expected (kcat 1.7 misreads others)"
    ranges = {key.api_key: (key.min_version, key.max_version) for key in response.api_keys}
    assert ranges[0] == (0, 9) and ranges[1] == (4, 12) and ranges[18] == (0, 4)
    # Clients use whatever is advertised (librdkafka sends telemetry and KIP-848 heartbeats as soon as they
    # appear), so APIs whose semantics do not exist yet must stay out of the list.
    for unimplemented in (24, 25, 26, 28, 68, 71, 72):
        assert unimplemented not in ranges


def test_acks_all_answer_means_visible(conn):
    topic = f"visible-{uuid.uuid4().hex[:8]}"
    assert create_topic(conn, topic) == 0
    for index in range(20):
        response = produce(conn, topic, a_batch([b"m%d" % index]))
        assert response.error_code == 0 and response.base_offset == index
        latest = conn.request(2, 7, loq.ListOffsetsRequest(replica_id=-1, topics=[loq.ListOffsetsTopic(
            name=topic, partitions=[loq.ListOffsetsPartition(partition_index=0, timestamp=-1)])]))
        assert latest.topics[0].partitions[0].offset == index + 1
