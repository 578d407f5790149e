"""The harness's own wire and disk readers, checked against bytes written out by hand.

The readiness probe and the segment reader decide whether other tests pass; a bug in them would make
those tests lie.  These need no broker.
"""

from __future__ import annotations

import socket
import struct
import threading

from broker_process import api_versions_v0_request, parse_api_versions_v0_response, probe_api_versions
from client_adapters import Msg, _kcat_line
from log_segments import read_batch_headers


def test_api_versions_v0_request_bytes():
    frame = api_versions_v0_request(correlation_id=1, client_id=b"x")
    # size 11 | api_key 18 | version 0 | correlation 1 | client_id length 1 | "x"
    assert frame == bytes.fromhex("0000000b" "0012" "0000" "00000001" "0001") + b"x"


def test_parse_api_versions_v0_response():
    body = struct.pack(">ihi", 7, 0, 2) + struct.pack(">hhh", 0, 0, 9) + struct.pack(">hhh", 18, 0, 4)
    assert parse_api_versions_v0_response(body) == (7, 0, {0: (0, 9), 18: (0, 4)})


def test_probe_against_a_fake_broker():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    port = server.getsockname()[1]

    def answer():
        conn, _ = server.accept()
        with conn:
            size = struct.unpack(">i", conn.recv(4))[0]
            request = conn.recv(size)
            correlation_id = struct.unpack_from(">i", request, 4)[0]
            body = struct.pack(">ihi", correlation_id, 0, 1) + struct.pack(">hhh", 18, 0, 3)
            conn.sendall(struct.pack(">i", len(body)) + body)

    thread = threading.Thread(target=answer)
    thread.start()
    try:
        assert probe_api_versions("127.0.0.1", port) == {18: (0, 3)}
    finally:
        thread.join(5)
        server.close()


def _batch(base_offset: int, records: int, attributes: int, producer_id: int, base_sequence: int) -> bytes:
    body_after_length = struct.pack(">ibIhiqqqhii", 0, 2, 0, attributes, records - 1, 1000, 1000 + records,
                                    producer_id, 0, base_sequence, records) + b"\x00" * (5 * records)
    return struct.pack(">qi", base_offset, len(body_after_length)) + body_after_length


def test_read_batch_headers(tmp_path):
    segment = _batch(0, 3, 4, -1, -1) + _batch(3, 2, 1 | 0x20, 17, 3)
    (tmp_path / "00000000000000000000.log").write_bytes(segment + b"\x00" * 64)  # zero tail ignored
    (tmp_path / "00000000000000000005.log").write_bytes(_batch(5, 1, 0, 17, 5) + _batch(6, 4, 3, 17, 6)[:30])
    headers = read_batch_headers(tmp_path)
    assert [(h.base_offset, h.last_offset, h.codec, h.producer_id, h.base_sequence, h.records_count)
            for h in headers] == [(0, 2, "zstd", -1, -1, 3), (3, 4, "gzip", 17, 3, 2), (5, 5, "none", 17, 5, 1)]
    assert [h.is_control for h in headers] == [False, True, False]
    assert all(h.magic == 2 for h in headers)


def test_kcat_line_encoding():
    assert _kcat_line(Msg(b"k", b"v")) == b"k:v\n"
    assert _kcat_line(Msg(None, b"v")) == b"v\n"
    assert _kcat_line(Msg(b"k", None)) == b"k:\n"
