"""Compression codecs: round trips, interop with the real clients' codec code, and hostile input."""

from __future__ import annotations

import gzip
import os
import struct

import aiokafka.codec as aiokafka_codec
import cramjam
import kafka.codec as kafka_codec
import lz4.frame
import pytest
import zstandard

from cluster.core.errors import CorruptRecordError, ErrorCode, KafkaError
from cluster.wire import compression
from cluster.wire.compression import GZIP, LZ4, NONE, SNAPPY, ZSTD, compress, decompress

CODECS = [NONE, GZIP, SNAPPY, LZ4, ZSTD]
COMPRESSED_CODECS = [GZIP, SNAPPY, LZ4, ZSTD]
PAYLOADS = {
    "empty": b"",
    "one-byte": b"x",
    "text": b"the quick brown fox jumps over the lazy dog " * 300,
    "random-200k": os.urandom(200_000),
    "zeros-1m": bytes(1_000_000),
}


@pytest.mark.parametrize("codec", CODECS)
@pytest.mark.parametrize("name", sorted(PAYLOADS))
def test_round_trip(codec: int, name: str) -> None:
    data = PAYLOADS[name]
    assert decompress(codec, compress(codec, data)) == data


@pytest.mark.parametrize("codec", COMPRESSED_CODECS)
def test_accepts_memoryview_and_bytearray(codec: int) -> None:
    data = PAYLOADS["text"]
    packed = compress(codec, memoryview(data))
    assert decompress(codec, bytearray(packed)) == data
    assert decompress(codec, memoryview(packed)) == data


def test_compression_actually_compresses() -> None:
    data = PAYLOADS["text"]
    for codec in COMPRESSED_CODECS:
        assert len(compress(codec, data)) < len(data) // 5, codec


# -- what we write ---------------------------------------------------------------------------------
def test_snappy_writes_xerial_framing_like_the_java_producer() -> None:
    packed = compress(SNAPPY, b"a" * 100_000)
    assert packed[:8] == b"\x82SNAPPY\x00"
    assert struct.unpack(">ii", packed[8:16]) == (1, 1)
    # 100 000 bytes in 32 KiB blocks: four blocks, each int32-length prefixed raw snappy.
    pos, blocks = 16, 0
    while pos < len(packed):
        (length,) = struct.unpack_from(">i", packed, pos)
        pos += 4 + length
        blocks += 1
    assert pos == len(packed) and blocks == 4


def test_lz4_writes_independent_blocks_without_content_size() -> None:
    packed = compress(LZ4, PAYLOADS["text"])
    assert packed[:4] == b"\x04\x22\x4d\x18"  # LZ4 frame magic
    flg = packed[4]
    assert flg >> 6 == 1  # frame version 01
    assert flg & 0x20  # block independence (Java's KafkaLZ4BlockInputStream needs it)
    assert not flg & 0x08  # no content size
    assert not flg & 0x04  # no content checksum
    info = lz4.frame.get_frame_info(packed)
    assert info["block_linked"] is False


def test_gzip_writes_a_gzip_stream() -> None:
    packed = compress(GZIP, PAYLOADS["text"])
    assert packed[:2] == b"\x1f\x8b"
    assert gzip.decompress(packed) == PAYLOADS["text"]


# -- interop with the clients' own codec functions ----------------------------------------------
@pytest.mark.parametrize(
    "encode",
    [
        pytest.param(kafka_codec.gzip_encode, id="kafka-python-gzip"),
        pytest.param(aiokafka_codec.gzip_encode, id="aiokafka-gzip"),
    ],
)
def test_reads_client_gzip(encode) -> None:
    data = PAYLOADS["text"]
    assert decompress(GZIP, encode(data)) == data


@pytest.mark.parametrize(
    "encode",
    [
        pytest.param(
            lambda d: kafka_codec.snappy_encode(d, xerial_compatible=True), id="kafka-python-xerial"
        ),
        pytest.param(lambda d: kafka_codec.snappy_encode(d, xerial_compatible=False), id="kafka-python-raw"),
        pytest.param(lambda d: aiokafka_codec.snappy_encode(d, xerial_compatible=True), id="aiokafka-xerial"),
        pytest.param(lambda d: aiokafka_codec.snappy_encode(d, xerial_compatible=False), id="aiokafka-raw"),
        pytest.param(lambda d: bytes(cramjam.snappy.compress_raw(d)), id="librdkafka-style-raw"),
    ],
)
@pytest.mark.parametrize("name", ["one-byte", "text", "random-200k"])
def test_reads_client_snappy(encode, name: str) -> None:
    data = PAYLOADS[name]
    assert decompress(SNAPPY, encode(data)) == data


@pytest.mark.parametrize(
    "encode",
    [
        pytest.param(kafka_codec.lz4_encode, id="kafka-python"),
        pytest.param(aiokafka_codec.lz4_encode, id="aiokafka"),
        pytest.param(
            lambda d: lz4.frame.compress(d, content_checksum=True, store_size=True), id="checksum+size"
        ),
    ],
)
def test_reads_client_lz4(encode) -> None:
    data = PAYLOADS["text"] + PAYLOADS["random-200k"]
    assert decompress(LZ4, encode(data)) == data


@pytest.mark.parametrize(
    "encode",
    [
        pytest.param(kafka_codec.zstd_encode, id="kafka-python"),
        pytest.param(aiokafka_codec.zstd_encode, id="aiokafka"),
    ],
)
def test_reads_client_zstd(encode) -> None:
    data = PAYLOADS["text"]
    assert decompress(ZSTD, encode(data)) == data


def test_reads_zstd_without_content_size_and_multiple_frames() -> None:
    # A streaming writer (Java's ZstdOutputStream, librdkafka) does not record the content size.
    cobj = zstandard.ZstdCompressor().compressobj()
    streamed = cobj.compress(b"first frame " * 100) + cobj.flush()
    assert zstandard.get_frame_parameters(streamed).content_size == zstandard.CONTENTSIZE_UNKNOWN
    second = zstandard.ZstdCompressor().compress(b"second")
    assert decompress(ZSTD, streamed + second) == b"first frame " * 100 + b"second"


def test_reads_concatenated_gzip_members() -> None:
    assert decompress(GZIP, gzip.compress(b"one") + gzip.compress(b"two")) == b"onetwo"


def test_reads_xerial_with_little_endian_version_fields() -> None:
    # Redpanda wrote version/compat little-endian (kafka-python #2414): every client ignores them.
    block = bytes(cramjam.snappy.compress_raw(b"hello"))
    framed = b"\x82SNAPPY\x00" + struct.pack("<ii", 1, 1) + struct.pack(">i", len(block)) + block
    assert decompress(SNAPPY, framed) == b"hello"


@pytest.mark.parametrize(
    "decode",
    [
        pytest.param((GZIP, kafka_codec.gzip_decode), id="kafka-python-gzip"),
        pytest.param((SNAPPY, kafka_codec.snappy_decode), id="kafka-python-snappy"),
        pytest.param((LZ4, kafka_codec.lz4_decode), id="kafka-python-lz4"),
        pytest.param((ZSTD, kafka_codec.zstd_decode), id="kafka-python-zstd"),
        pytest.param((GZIP, aiokafka_codec.gzip_decode), id="aiokafka-gzip"),
        pytest.param((SNAPPY, aiokafka_codec.snappy_decode), id="aiokafka-snappy"),
        pytest.param((LZ4, aiokafka_codec.lz4_decode), id="aiokafka-lz4"),
        pytest.param((ZSTD, aiokafka_codec.zstd_decode), id="aiokafka-zstd"),
    ],
)
def test_clients_read_what_we_write(decode) -> None:
    codec, decoder = decode
    data = PAYLOADS["text"] + PAYLOADS["random-200k"][:50_000]
    assert decoder(compress(codec, data)) == data


# -- hostile input ---------------------------------------------------------------------------------
@pytest.mark.parametrize("codec", [5, 6, 7, -1])
def test_unknown_codec(codec: int) -> None:
    with pytest.raises(KafkaError) as err:
        compress(codec, b"x")
    assert err.value.error_code == ErrorCode.UNSUPPORTED_COMPRESSION_TYPE
    with pytest.raises(KafkaError) as err:
        decompress(codec, b"x")
    assert err.value.error_code == ErrorCode.UNSUPPORTED_COMPRESSION_TYPE


@pytest.mark.parametrize("codec", COMPRESSED_CODECS)
@pytest.mark.parametrize("garbage", [b"\x00", b"not compressed at all, not at all", os.urandom(300)])
def test_garbage_is_corrupt_not_a_crash(codec: int, garbage: bytes) -> None:
    if codec == SNAPPY and garbage == b"\x00":
        # A lone 0 byte is a valid raw snappy stream of length zero.
        assert decompress(codec, garbage) == b""
        return
    with pytest.raises(CorruptRecordError):
        decompress(codec, garbage)


@pytest.mark.parametrize("codec", COMPRESSED_CODECS)
def test_truncated_input_is_corrupt(codec: int) -> None:
    packed = compress(codec, PAYLOADS["text"])
    with pytest.raises(CorruptRecordError):
        decompress(codec, packed[: len(packed) - 3])


@pytest.mark.parametrize("codec", CODECS)
def test_decompression_is_bounded(codec: int) -> None:
    bomb = compress(codec, bytes(2_000_000))
    with pytest.raises(CorruptRecordError, match="expands beyond"):
        decompress(codec, bomb, max_output_bytes=1_000_000)
    # Exactly at the bound is fine.
    assert len(decompress(codec, compress(codec, bytes(1_000_000)), max_output_bytes=1_000_000)) == 1_000_000


def test_zstd_bomb_with_lying_content_size_is_bounded() -> None:
    # A frame that claims a small content size but expands hugely must still be cut off.
    huge = zstandard.ZstdCompressor().compress(bytes(50_000_000))
    assert len(huge) < 10_000
    with pytest.raises(CorruptRecordError):
        decompress(ZSTD, huge, max_output_bytes=compression.DEFAULT_MAX_OUTPUT_BYTES // 4)
