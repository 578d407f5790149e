"""Behaviour of the generated codecs on known byte vectors and on hostile input."""

from __future__ import annotations

import tracemalloc
import uuid

import pytest

from cluster.core.errors import ProtocolDecodeError
from cluster.wire import messages
from cluster.wire.messages import (
    api_versions_request,
    api_versions_response,
    describe_topic_partitions_request,
    fetch_request,
    fetch_response,
    metadata_request,
    produce_request,
)

TOPIC_ID = uuid.UUID("0123456789abcdef0123456789abcdef")


def _check_all_prefixes_fail(module, raw, version):
    for cut in range(len(raw)):
        with pytest.raises(ProtocolDecodeError):
            module.decode(raw[:cut], 0, version)


# ---- known vectors ------------------------------------------------------------------------------


def test_api_versions_v0_request_has_an_empty_body():
    req, end = api_versions_request.decode(b"", 0, 0)
    assert end == 0
    assert req == api_versions_request.ApiVersionsRequest()
    assert bytes(api_versions_request.encode(req, 0)) == b""


def test_api_versions_v3_request_vector():
    raw = b"\x0blibrdkafka\x062.0.2\x00"
    req, end = api_versions_request.decode(raw, 0, 3)
    assert end == len(raw)
    assert req.client_software_name == "librdkafka"
    assert req.client_software_version == "2.0.2"
    assert bytes(api_versions_request.encode(req, 3)) == raw


def test_api_versions_response_vectors():
    resp = api_versions_response.ApiVersionsResponse(
        error_code=0,
        api_keys=[api_versions_response.ApiVersion(api_key=18, min_version=0, max_version=4)],
    )
    v0 = b"\x00\x00" + b"\x00\x00\x00\x01" + b"\x00\x12\x00\x00\x00\x04"
    assert bytes(api_versions_response.encode(resp, 0)) == v0
    # v3: compact array (N+1), entry tags, throttle_time_ms, and no tagged fields at their defaults
    v3 = b"\x00\x00" + b"\x02" + b"\x00\x12\x00\x00\x00\x04\x00" + b"\x00\x00\x00\x00" + b"\x00"
    assert bytes(api_versions_response.encode(resp, 3)) == v3
    resp.zk_migration_ready = True
    assert bytes(api_versions_response.encode(resp, 3)) == v3[:-1] + b"\x01\x03\x01\x01"
    back, _ = api_versions_response.decode(v3[:-1] + b"\x01\x03\x01\x01", 0, 3)
    assert back.zk_migration_ready is True
    assert back.finalized_features_epoch == -1


def _metadata_v12(tags: bytes) -> bytes:
    return (
        b"\x02"  # one topic
        + TOPIC_ID.bytes
        + b"\x02t"  # name "t"
        + b"\x00"  # topic tagged fields
        + b"\x01"  # allow_auto_topic_creation
        + b"\x00"  # include_topic_authorized_operations
        + tags
    )


def test_metadata_v12_request_with_unknown_tagged_field_is_skipped():
    raw = _metadata_v12(b"\x01\x05\x02\xaa\xbb")
    req, end = metadata_request.decode(raw, 0, 12)
    assert end == len(raw)
    assert req.topics == [metadata_request.MetadataRequestTopic(topic_id=TOPIC_ID, name="t")]
    assert req.allow_auto_topic_creation is True
    assert req.include_topic_authorized_operations is False
    # unknown tags are dropped: re-encoding writes an empty section
    assert bytes(metadata_request.encode(req, 12)) == _metadata_v12(b"\x00")


def test_metadata_v12_null_topics_means_all():
    req = metadata_request.MetadataRequest(topics=None)
    raw = bytes(metadata_request.encode(req, 12))
    assert raw == b"\x00\x01\x00\x00"
    assert metadata_request.decode(raw, 0, 12)[0].topics is None


def test_fetch_v12_known_tagged_field():
    req = fetch_request.FetchRequest(cluster_id="c1", max_wait_ms=500)
    raw = bytes(fetch_request.encode(req, 12))
    assert raw.endswith(b"\x01\x00\x03\x03c1")  # one tag: 0, size 3, compact string "c1"
    back, end = fetch_request.decode(raw, 0, 12)
    assert end == len(raw) and back == req
    plain = bytes(fetch_request.encode(fetch_request.FetchRequest(max_wait_ms=500), 12))
    assert plain.endswith(b"\x00") and len(plain) == len(raw) - 5


def test_nullable_struct_field():
    m = describe_topic_partitions_request
    no_cursor = bytes(m.encode(m.DescribeTopicPartitionsRequest(response_partition_limit=7), 0))
    assert no_cursor == b"\x01" + b"\x00\x00\x00\x07" + b"\xff" + b"\x00"
    with_cursor = m.DescribeTopicPartitionsRequest(cursor=m.Cursor(topic_name="a", partition_index=3))
    raw = bytes(m.encode(with_cursor, 0))
    assert raw[5:] == b"\x01" + b"\x02a" + b"\x00\x00\x00\x03" + b"\x00" + b"\x00"
    assert m.decode(raw, 0, 0)[0] == with_cursor


def test_tagged_struct_field_written_only_when_not_default():
    m = fetch_response
    part = m.PartitionData(partition_index=0, records=b"")
    resp = m.FetchResponse(responses=[m.FetchableTopicResponse(topic_id=TOPIC_ID, partitions=[part])])
    plain = bytes(m.encode(resp, 12))
    part.current_leader = m.LeaderIdAndEpoch(leader_id=2, leader_epoch=5)
    tagged = bytes(m.encode(resp, 12))
    assert len(tagged) == len(plain) + 1 + 1 + 9  # count grows in place; +tag, size, 8 bytes + tags
    back, _ = m.decode(tagged, 0, 12)
    assert back.responses[0].partitions[0].current_leader == m.LeaderIdAndEpoch(leader_id=2, leader_epoch=5)
    assert back.responses[0].partitions[0].diverging_epoch == m.EpochEndOffset()


# ---- records ------------------------------------------------------------------------------------


def _produce(records, version=9):
    return produce_request.ProduceRequest(
        acks=-1,
        timeout_ms=1000,
        topic_data=[
            produce_request.TopicProduceData(
                name="t", partition_data=[produce_request.PartitionProduceData(index=0, records=records)]
            )
        ],
    )


def test_records_decode_is_a_zero_copy_view():
    raw = bytes(produce_request.encode(_produce(b"batch-bytes"), 9))
    req, _ = produce_request.decode(raw, 0, 9)
    records = req.topic_data[0].partition_data[0].records
    assert isinstance(records, memoryview)
    assert records.obj is raw
    assert records == b"batch-bytes"


@pytest.mark.parametrize("version", [3, 9])
def test_records_encode_accepts_chunks_and_buffers(version):
    joined = bytes(produce_request.encode(_produce(b"abcdef"), version))
    assert bytes(produce_request.encode(_produce([b"ab", memoryview(b"cd"), bytearray(b"ef")]), version)) == joined
    assert bytes(produce_request.encode(_produce(memoryview(b"abcdef")), version)) == joined
    assert bytes(produce_request.encode(_produce(bytearray(b"abcdef")), version)) == joined
    nulled, _ = produce_request.decode(produce_request.encode(_produce(None), version), 0, version)
    assert nulled.topic_data[0].partition_data[0].records is None


def test_encode_into_appends():
    out = bytearray(b"HDR")
    produce_request.encode_into(out, _produce(b"x"), 9)
    assert bytes(out) == b"HDR" + bytes(produce_request.encode(_produce(b"x"), 9))


# ---- hostile input ------------------------------------------------------------------------------


@pytest.mark.parametrize("version", [0, 3, 9, 11])
def test_every_truncation_of_a_produce_request_is_rejected(version):
    raw = bytes(produce_request.encode(_produce(b"0123456789"), version))
    _check_all_prefixes_fail(produce_request, raw, version)


def test_every_truncation_of_a_fetch_response_is_rejected():
    m = fetch_response
    part = m.PartitionData(
        partition_index=1,
        aborted_transactions=[m.AbortedTransaction(producer_id=1, first_offset=2)],
        records=b"rec",
        snapshot_id=m.SnapshotId(end_offset=4, epoch=1),
    )
    resp = m.FetchResponse(responses=[m.FetchableTopicResponse(topic="t", partitions=[part])])
    for version in (4, 12, 16):
        raw = bytes(m.encode(resp, version))
        assert m.decode(raw, 0, version)[1] == len(raw)
        _check_all_prefixes_fail(m, raw, version)


def test_every_truncation_of_api_versions_response_with_tags_is_rejected():
    resp = api_versions_response.ApiVersionsResponse(
        api_keys=[api_versions_response.ApiVersion(api_key=0, min_version=0, max_version=9)],
        supported_features=[api_versions_response.SupportedFeatureKey(name="f", min_version=0, max_version=1)],
        finalized_features_epoch=3,
        zk_migration_ready=True,
    )
    raw = bytes(api_versions_response.encode(resp, 3))
    assert api_versions_response.decode(raw, 0, 3)[0] == resp
    _check_all_prefixes_fail(api_versions_response, raw, 3)


def _max_allocation(fn):
    """Peak bytes allocated while ``fn`` fails; the error must come from the length check itself."""
    tracemalloc.start()
    try:
        with pytest.raises(ProtocolDecodeError, match="exceeds the 3 bytes remaining"):
            fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_huge_array_length_is_rejected_before_allocating():
    # Produce v3: transactional_id null, acks, timeout, then topic count 2**31-1 with 3 bytes left
    raw = b"\xff\xff" + b"\x00\x01" + b"\x00\x00\x03\xe8" + b"\x7f\xff\xff\xff" + b"abc"
    assert _max_allocation(lambda: produce_request.decode(raw, 0, 3)) < 100_000
    # Produce v9: compact array length as a 5-byte uvarint (2**32 - 1)
    raw = b"\x00" + b"\x00\x01" + b"\x00\x00\x03\xe8" + b"\xff\xff\xff\xff\x0f" + b"abc"
    assert _max_allocation(lambda: produce_request.decode(raw, 0, 9)) < 100_000
    # ApiVersions v0: an array of fixed-size structs
    assert _max_allocation(lambda: api_versions_response.decode(b"\x00\x00\x7f\xff\xff\xffabc", 0, 0)) < 100_000
    # OffsetFetch v5 (not flexible): an array of int32, the primitive-array path
    from cluster.wire.messages import offset_fetch_request

    raw = b"\x00\x01g" + b"\x00\x00\x00\x01" + b"\x00\x01t" + b"\x7f\xff\xff\xff" + b"abc"
    assert _max_allocation(lambda: offset_fetch_request.decode(raw, 0, 5)) < 100_000


def test_huge_string_and_records_lengths_are_rejected():
    # Produce v3 with the topic name declaring 0x7fff bytes
    raw = b"\xff\xff\x00\x01\x00\x00\x03\xe8\x00\x00\x00\x01" + b"\x7f\xffabc"
    with pytest.raises(ProtocolDecodeError, match="Name"):
        produce_request.decode(raw, 0, 3)
    # records declaring 2**31-1 bytes
    raw = b"\xff\xff\x00\x01\x00\x00\x03\xe8\x00\x00\x00\x01\x00\x01t\x00\x00\x00\x01\x00\x00\x00\x00"
    raw += b"\x7f\xff\xff\xff" + b"xyz"
    assert _max_allocation(lambda: produce_request.decode(raw, 0, 3)) < 100_000


def test_negative_lengths_of_non_nullable_fields_are_rejected():
    # Produce v3 with topic count 1 and topic name length -1 (names are not nullable)
    raw = b"\xff\xff\x00\x01\x00\x00\x03\xe8\x00\x00\x00\x01\xff\xff"
    with pytest.raises(ProtocolDecodeError):
        produce_request.decode(raw, 0, 3)
    # Produce v3 with topic count -1 (the array is not nullable)
    with pytest.raises(ProtocolDecodeError):
        produce_request.decode(b"\xff\xff\x00\x01\x00\x00\x03\xe8\xff\xff\xff\xff", 0, 3)


def test_overlong_varint_is_rejected():
    raw = b"\x00\x00\x01\x00\x00\x03\xe8" + b"\x80\x80\x80\x80\x80\x01"
    with pytest.raises(ProtocolDecodeError):
        produce_request.decode(raw, 0, 9)


def test_invalid_utf8_is_rejected():
    raw = _metadata_v12(b"\x00").replace(b"\x02t", b"\x02\xff")
    with pytest.raises(ProtocolDecodeError, match="UTF-8"):
        metadata_request.decode(raw, 0, 12)


@pytest.mark.parametrize(
    "tags",
    [
        b"\x02\x05\x00\x03\x00",  # 5 then 3: out of order
        b"\x02\x05\x00\x05\x00",  # 5 twice
        b"\x01\x05\x09\xaa",  # size beyond the buffer
    ],
)
def test_bad_tag_sections_without_known_tags_are_rejected(tags):
    with pytest.raises(ProtocolDecodeError):
        metadata_request.decode(_metadata_v12(tags), 0, 12)


def _fetch_v12_with_tags(tags: bytes) -> bytes:
    plain = bytes(fetch_request.encode(fetch_request.FetchRequest(), 12))
    assert plain.endswith(b"\x00")
    return plain[:-1] + tags


@pytest.mark.parametrize(
    "tags",
    [
        b"\x02\x01\x00\x00\x03\x03c1",  # unknown tag 1 then known tag 0: out of order
        b"\x02\x00\x03\x03c1\x00\x03\x03c1",  # tag 0 twice
        b"\x01\x00\x05\x03c1\x00\x00",  # declared size 5, value uses 3
        b"\x01\x00\x02\x03c1",  # declared size 2, value needs 3
    ],
)
def test_bad_tag_sections_with_known_tags_are_rejected(tags):
    with pytest.raises(ProtocolDecodeError):
        fetch_request.decode(_fetch_v12_with_tags(tags), 0, 12)


def test_unknown_tags_around_known_ones_are_skipped():
    raw = _fetch_v12_with_tags(b"\x02\x00\x03\x03c1\x09\x02zz")
    req, end = fetch_request.decode(raw, 0, 12)
    assert end == len(raw)
    assert req.cluster_id == "c1"


def test_unsupported_version_is_rejected():
    with pytest.raises(ProtocolDecodeError):
        produce_request.decode(b"", 0, 12)
    with pytest.raises(ProtocolDecodeError):
        produce_request.decode(b"", 0, -1)
    with pytest.raises(ValueError):
        produce_request.encode(_produce(b""), 12)


# ---- module interface and API table ---------------------------------------------------------


def test_module_constants():
    assert produce_request.API_KEY == 0
    assert produce_request.VALID_VERSIONS == (0, 11)
    assert produce_request.FLEXIBLE_MIN_VERSION == 9
    from cluster.wire.messages import sasl_handshake_request

    assert sasl_handshake_request.FLEXIBLE_MIN_VERSION is None
    name, structs = produce_request.SCHEMA
    assert name == "ProduceRequest"
    assert set(structs) == {"ProduceRequest", "TopicProduceData", "PartitionProduceData"}
    assert structs["ProduceRequest"][0] == (
        "transactional_id", "string", (3, 32767), (3, 32767), None, None, None,
    )


def test_identical_versions_share_one_function():
    assert api_versions_request._DECODERS[0] is api_versions_request._DECODERS[2]
    assert api_versions_request._DECODERS[2] is not api_versions_request._DECODERS[3]
    assert len(set(produce_request._DECODERS)) < len(produce_request._DECODERS)


def test_struct_defaults_equality_and_repr():
    a = produce_request.ProduceRequest()
    b = produce_request.ProduceRequest()
    assert a == b and a.topic_data is not b.topic_data
    assert a.transactional_id is None and a.acks == 0 and a.topic_data == []
    b.acks = 1
    assert a != b
    assert "acks=1" in repr(b)
    assert fetch_request.FetchTopic().topic_id == uuid.UUID(int=0)
    with pytest.raises(TypeError):
        produce_request.ProduceRequest(None)  # keyword-only
    with pytest.raises(AttributeError):
        a.no_such_field = 1  # __slots__


def test_api_table():
    produce = messages.API_KEYS[0]
    assert produce.name == "Produce"
    assert produce.request_module is produce_request
    assert produce.response_module.API_KEY == 0
    assert produce.valid_versions == (0, 11)
    assert produce.request_flexible_min == 9 and produce.response_flexible_min == 9
    assert messages.API_KEYS[18].name == "ApiVersions"
    assert messages.API_KEYS[17].request_flexible_min is None
    assert len(messages.API_KEYS) == 88


@pytest.mark.parametrize(
    ("api_key", "version", "request_header", "response_header"),
    [
        (0, 8, 1, 0),
        (0, 9, 2, 1),
        (18, 0, 1, 0),
        (18, 3, 2, 0),  # ApiVersions responses always use header v0 (KIP-511)
        (18, 4, 2, 0),
        (7, 0, 0, 0),  # ControlledShutdown v0: request header v0
        (7, 1, 1, 0),
        (7, 3, 2, 1),
        (17, 1, 1, 0),  # SaslHandshake: never flexible
        (3, 12, 2, 1),
    ],
)
def test_header_versions(api_key, version, request_header, response_header):
    assert messages.request_header_version(api_key, version) == request_header
    assert messages.response_header_version(api_key, version) == response_header
