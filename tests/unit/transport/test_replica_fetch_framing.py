"""The replica fetch response framing: header message, then records outside protobuf (replication.proto)."""

from __future__ import annotations

import struct
import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cluster.transport.replica_fetch_grpc import (
    PartitionFetchResult,
    ReplicaFetchResponse,
    decode_response,
    encode_response,
)

TOPIC_ID = uuid.UUID("6f1c2b1e-0000-4000-8000-000000000001")


def _result(partition: int, records: bytes, diverging=None, error_code: int = 0) -> PartitionFetchResult:
    return PartitionFetchResult(TOPIC_ID, partition, error_code, 100 + partition, 3, diverging, records,
                                log_end_offset=200 + partition)


@given(st.lists(st.binary(max_size=300), max_size=6), st.integers(0, 100))
def test_round_trip(payloads, error_code):
    response = ReplicaFetchResponse(error_code, [_result(i, data, (i, 7 * i) if i % 2 else None)
                                          for i, data in enumerate(payloads)])
    decoded = decode_response(encode_response(response))
    assert decoded.error_code == error_code
    assert len(decoded.partitions) == len(payloads)
    for original, back in zip(response.partitions, decoded.partitions, strict=True):
        assert bytes(back.records) == original.records
        assert (back.topic_id, back.partition, back.high_watermark, back.log_start_offset, back.diverging_epoch,
                back.log_end_offset) == (
            original.topic_id, original.partition, original.high_watermark, original.log_start_offset,
            original.diverging_epoch, original.log_end_offset)


def test_records_are_slices_of_the_received_body():
    body = encode_response(ReplicaFetchResponse(0, [_result(0, b"a" * 10), _result(1, b"b" * 5)]))
    decoded = decode_response(body)
    assert isinstance(decoded.partitions[0].records, memoryview)
    assert decoded.partitions[0].records.obj is decoded.partitions[1].records.obj


@pytest.mark.parametrize("mangle", [
    lambda body: body[:2],                                   # shorter than the length prefix
    lambda body: struct.pack(">I", 10_000) + body[4:],       # header runs past the body
    lambda body: body[:-1],                                   # last partition's records cut short
    lambda body: body + b"x",                                 # trailing bytes nobody accounts for
])
def test_corrupt_bodies_are_refused(mangle):
    body = encode_response(ReplicaFetchResponse(0, [_result(0, b"r" * 20)]))
    with pytest.raises(ValueError):
        decode_response(mangle(body))
