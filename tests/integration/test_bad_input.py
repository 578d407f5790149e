"""Bad input over the wire: every malformed or unsupported request gets Kafka's answer, and nothing breaks.

Each case sends raw bytes to a real broker process, checks the answer (an error code, or a closed connection
as Kafka's SocketServer does), then checks that the broker still serves other connections and that data
stored before the bad request is intact.
"""

from __future__ import annotations

import socket
import struct
import subprocess
import sys
import uuid

import pytest

from cluster.core.errors import ErrorCode
from cluster.wire import records
from cluster.wire.headers import decode_response_header, encode_request_header
from cluster.wire.messages import API_KEYS, response_header_version
from cluster.wire.messages import create_topics_request as ctq
from cluster.wire.messages import fetch_request as fq
from cluster.wire.messages import metadata_request as mq
from cluster.wire.messages import produce_request as pq

pytestmark = pytest.mark.timeout(120)


class RawConnection:
    def __init__(self, bootstrap: str) -> None:
        host, port = bootstrap.rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)), timeout=10)
        self.correlation_id = 0

    def close(self) -> None:
        self.sock.close()

    def send_raw(self, payload: bytes) -> None:
        self.sock.sendall(payload)

    def send_frame(self, body: bytes) -> None:
        self.send_raw(struct.pack(">i", len(body)) + body)

    def request(self, api_key: int, version: int, message) -> object:
        self.correlation_id += 1
        module = API_KEYS[api_key].request_module
        self.send_frame(encode_request_header(api_key, version, self.correlation_id, "bad-input-test")
                        + module.encode(message, version))
        frame = self.read_frame()
        correlation_id, pos = decode_response_header(frame, 0, response_header_version(api_key, version))
        assert correlation_id == self.correlation_id
        return API_KEYS[api_key].response_module.decode(frame, pos, version)[0]

    def read_frame(self) -> bytes:
        (size,) = struct.unpack(">i", self._read_exactly(4))
        return self._read_exactly(size)

    def _read_exactly(self, size: int) -> bytes:
        data = bytearray()
        while len(data) < size:
            chunk = self.sock.recv(size - len(data))
            if not chunk:
                raise ConnectionError("closed by broker")
            data += chunk
        return bytes(data)

    def assert_closed_by_broker(self) -> None:
        self.sock.settimeout(10)
        try:
            assert self.sock.recv(1) == b"", "broker answered instead of closing"
        except ConnectionResetError:
            pass


@pytest.fixture
def conn(broker):
    connection = RawConnection(broker.bootstrap)
    yield connection
    connection.close()
    # Whatever the test sent, the broker must still serve a fresh connection.
    check = RawConnection(broker.bootstrap)
    try:
        response = check.request(18, 0, API_KEYS[18].request_module.ApiVersionsRequest())
        assert response.error_code == 0
    finally:
        check.close()


def create_topic(conn: RawConnection, name: str, partitions: int = 1, configs=()) -> int:
    request = ctq.CreateTopicsRequest(topics=[ctq.CreatableTopic(
        name=name, num_partitions=partitions, replication_factor=1,
        configs=[ctq.CreatableTopicConfig(name=k, value=v) for k, v in configs])], timeout_ms=5000)
    return conn.request(19, 4, request).topics[0].error_code


def produce(conn: RawConnection, topic: str, batch: bytes, partition: int = 0, version: int = 9):
    request = pq.ProduceRequest(acks=-1, timeout_ms=5000, topic_data=[pq.TopicProduceData(
        name=topic, partition_data=[pq.PartitionProduceData(index=partition, records=batch)])])
    return conn.request(0, version, request).responses[0].partition_responses[0]


def fetch_all(conn: RawConnection, topic: str) -> list[records.Record]:
    request = fq.FetchRequest(max_wait_ms=0, min_bytes=0, max_bytes=50_000_000, topics=[fq.FetchTopic(
        topic=topic, partitions=[fq.FetchPartition(partition=0, fetch_offset=0, partition_max_bytes=50_000_000)])])
    data = conn.request(1, 12, request).responses[0].partitions[0]
    assert data.error_code == 0
    found = []
    buffer = bytes(data.records or b"")
    for position, header in records.iter_batch_headers(buffer):
        found.extend(records.decode_records(buffer[position:position + header.size_in_bytes]))
    return found


def a_batch(values: list[bytes]) -> bytes:
    return records.build_batch([(None, value, [], 1_700_000_000_000) for value in values])


@pytest.mark.parametrize("size", [-1, 2**31 - 1, 104857600 + 1])
def test_size_prefix_out_of_bounds_closes_the_connection(conn, size):
    conn.send_raw(struct.pack(">i", size) + b"\x00" * 16)
    conn.assert_closed_by_broker()


def test_garbage_frame_closes_the_connection(conn):
    conn.send_frame(b"\x00\x03\x00\x0c" + b"\xff" * 40)  # Metadata v12 header then nonsense
    conn.assert_closed_by_broker()


def test_truncated_header_closes_the_connection(conn):
    conn.send_frame(b"\x00\x03")
    conn.assert_closed_by_broker()


def test_truncated_frame_then_disconnect_leaves_broker_serving(conn):
    conn.send_raw(struct.pack(">i", 1000) + b"\x00" * 10)
    conn.close()


def test_unknown_api_key_closes_the_connection(conn):
    conn.send_frame(struct.pack(">hhih", 999, 0, 1, -1))
    conn.assert_closed_by_broker()


@pytest.mark.parametrize(("api_key", "version"), [(3, 13), (1, 3), (8, 2), (42, 0)])
def test_unsupported_version_or_unadvertised_api_closes_the_connection(conn, api_key, version):
    conn.send_frame(struct.pack(">hhih", api_key, version, 1, -1))
    conn.assert_closed_by_broker()


def test_too_new_api_versions_gets_a_v0_error_body_with_our_range(conn):
    conn.send_frame(struct.pack(">hhih", 18, 99, 77, -1) + b"\x00" + b"future-body")
    frame = conn.read_frame()
    correlation_id, error_code, count = struct.unpack_from(">ihi", frame, 0)
    assert (correlation_id, error_code, count) == (77, ErrorCode.UNSUPPORTED_VERSION, 1)
    assert struct.unpack_from(">hhh", frame, 10) == (18, 0, 4)


def test_bad_crc_is_corrupt_message_and_stored_data_is_intact(conn):
    topic = f"crc-{uuid.uuid4().hex[:8]}"
    assert create_topic(conn, topic) == 0
    assert produce(conn, topic, a_batch([b"good-1", b"good-2"])).error_code == 0
    corrupted = bytearray(a_batch([b"evil"]))
    corrupted[-1] ^= 0xFF
    assert produce(conn, topic, bytes(corrupted)).error_code == ErrorCode.CORRUPT_MESSAGE
    truncated = a_batch([b"short"])[:-3]
    assert produce(conn, topic, truncated).error_code in (ErrorCode.CORRUPT_MESSAGE, ErrorCode.INVALID_RECORD)
    assert produce(conn, topic, a_batch([b"good-3"])).base_offset == 2
    assert [record.value for record in fetch_all(conn, topic)] == [b"good-1", b"good-2", b"good-3"]


def test_produce_v2_is_unsupported_version(conn):
    topic = f"v2-{uuid.uuid4().hex[:8]}"
    assert create_topic(conn, topic) == 0
    assert produce(conn, topic, a_batch([b"x"]), version=2).error_code == ErrorCode.UNSUPPORTED_VERSION


def test_batch_over_max_message_bytes_is_message_too_large(conn):
    topic = f"big-{uuid.uuid4().hex[:8]}"
    assert create_topic(conn, topic, configs=[("max.message.bytes", "1000")]) == 0
    response = produce(conn, topic, a_batch([b"x" * 2000]))
    assert response.error_code == ErrorCode.MESSAGE_TOO_LARGE
    assert produce(conn, topic, a_batch([b"small"])).base_offset == 0


def test_unknown_topic_and_partition(conn):
    topic = f"known-{uuid.uuid4().hex[:8]}"
    assert create_topic(conn, topic) == 0
    assert produce(conn, topic, a_batch([b"x"]), partition=5).error_code == ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
    assert produce(conn, "never-created-" + topic, a_batch([b"x"])).error_code == \
        ErrorCode.UNKNOWN_TOPIC_OR_PARTITION


@pytest.mark.parametrize("name", ["bad/name", "a" * 250, "..", "", "spaces here"])
def test_invalid_topic_names(conn, name):
    assert create_topic(conn, name) == ErrorCode.INVALID_TOPIC_EXCEPTION
    response = conn.request(3, 12, mq.MetadataRequest(topics=[mq.MetadataRequestTopic(name=name)],
                                                      allow_auto_topic_creation=True))
    assert response.topics[0].error_code == ErrorCode.INVALID_TOPIC_EXCEPTION


def test_bad_config_exits_non_zero_naming_the_key(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "cluster", "broker", "--override", "num.partitions=-4",
         "--override", f"log.dirs={tmp_path}"],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 2
    assert "num.partitions" in result.stderr


def test_internal_offsets_topic_cannot_be_deleted_or_resized(conn):
    from cluster.wire.messages import create_partitions_request as cpq
    from cluster.wire.messages import delete_topics_request as dtq
    from cluster.wire.messages import find_coordinator_request as fcq

    assert conn.request(10, 3, fcq.FindCoordinatorRequest(key="any-group", key_type=0)).error_code == 0
    deleted = conn.request(20, 4, dtq.DeleteTopicsRequest(topic_names=["__consumer_offsets"], timeout_ms=5000))
    assert deleted.responses[0].error_code == ErrorCode.INVALID_REQUEST
    resized = conn.request(37, 3, cpq.CreatePartitionsRequest(
        topics=[cpq.CreatePartitionsTopic(name="__consumer_offsets", count=60, assignments=None)],
        timeout_ms=5000, validate_only=False))
    assert resized.results[0].error_code == ErrorCode.INVALID_REQUEST
