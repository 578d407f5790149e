"""Record-batch compression codecs (attributes bits 0-2 of a RecordBatch v2).

The hot path never decompresses (../shared/DESIGN.md, fixed decision 6): a produced batch is validated by its header and
CRC-32C and stored as is.  Decompression is needed only where semantics demand it (timestamp
lookups, the group coordinator's own topic, tests and our CLI), and compression only where the
broker builds batches itself.  Every codec here must therefore read whatever the real clients
write, and write something every real client reads:

* 1 gzip: RFC 1952 stream (Java's GZIPOutputStream, librdkafka's zlib).  We also accept a zlib
  header and concatenated gzip members, because zlib's auto-detect costs nothing.
* 2 snappy: two framings exist in the wild.  librdkafka, franz-go and Sarama write *raw* snappy;
  the Java producer (xerial SnappyOutputStream) and kafka-python/aiokafka by default write the
  *xerial* framing (16-byte header ``\\x82SNAPPY\\x00`` + version + compat, then blocks of
  int32 length + raw snappy).  Every client reads both (Java's SnappyInputStream falls back to
  raw; librdkafka detects the xerial magic; kafka-python and aiokafka likewise), so we read both
  and **write xerial**, exactly what a Java producer would have put in a Kafka log.
* 3 lz4: the LZ4 *frame* format with the correct header checksum (Kafka >= 0.10, KIP-57), written
  with independent blocks and no content size or content checksum, as Kafka's own
  KafkaLZ4BlockOutputStream does, because Java's reader rejects linked blocks.
* 4 zstd: standard zstd frames.  Frames from streaming writers carry no content size, so we
  decompress by streaming, never by trusting a header.

Every decompressor is bounded by ``max_output_bytes`` so that a tiny hostile batch cannot expand
into gigabytes (a decompression bomb): exceeding it, or any malformed input, raises
``CorruptRecordError``.  An unknown codec id raises ``KafkaError(UNSUPPORTED_COMPRESSION_TYPE)``.
"""

from __future__ import annotations

import struct
import zlib

import cramjam
import lz4.frame
import zstandard

from cluster.core.errors import CorruptRecordError, ErrorCode, KafkaError

__all__ = [
    "NONE",
    "GZIP",
    "SNAPPY",
    "LZ4",
    "ZSTD",
    "CODEC_NAMES",
    "DEFAULT_MAX_OUTPUT_BYTES",
    "compress",
    "decompress",
]

NONE = 0
GZIP = 1
SNAPPY = 2
LZ4 = 3
ZSTD = 4

CODEC_NAMES = {NONE: "none", GZIP: "gzip", SNAPPY: "snappy", LZ4: "lz4", ZSTD: "zstd"}

# A decompressed batch larger than this is treated as hostile.  Real batches are bounded by the
# producer's batch.size (16 KiB default, rarely above a few MiB); 64 MiB leaves a wide margin.
DEFAULT_MAX_OUTPUT_BYTES = 64 * 1024 * 1024

# Java's Deflater default level, so our gzip output is what a Java producer would produce.
_GZIP_LEVEL = 6
# Kafka's default zstd level (KIP-390).
_ZSTD_LEVEL = 3
# xerial's SnappyOutputStream default block size.
_XERIAL_BLOCK_BYTES = 32 * 1024
_XERIAL_MAGIC = b"\x82SNAPPY\x00"
_XERIAL_HEADER = _XERIAL_MAGIC + struct.pack(">ii", 1, 1)
_INT32 = struct.Struct(">i")
# wbits = 32 + 15: let zlib detect a gzip or a zlib header by itself.
_ZLIB_AUTO_WBITS = 47
_ZSTD_MAX_RATIO = 32768
_ZSTD_MIN_FEED_BYTES = 64

# lz4 reports bad frames as RuntimeError; cramjam has its own DecompressionError.
_CODEC_ERRORS = (
    zlib.error,
    zstandard.ZstdError,
    cramjam.DecompressionError,
    RuntimeError,
    ValueError,
    struct.error,
)


def _unsupported(codec: int) -> KafkaError:
    return KafkaError(ErrorCode.UNSUPPORTED_COMPRESSION_TYPE, f"unknown compression codec {codec}")


def compress(codec: int, data) -> bytes:
    """Compresses ``data`` the way Kafka's Java producer does for ``codec``; NONE returns it as bytes."""
    if codec == NONE:
        return bytes(data)
    if codec == GZIP:
        compressor = zlib.compressobj(_GZIP_LEVEL, zlib.DEFLATED, 31)  # 31 = gzip container
        return compressor.compress(data) + compressor.flush()
    if codec == SNAPPY:
        return _snappy_xerial_compress(data)
    if codec == LZ4:
        return lz4.frame.compress(
            data,
            block_size=lz4.frame.BLOCKSIZE_MAX64KB,
            block_linked=False,
            content_checksum=False,
            store_size=False,
        )
    if codec == ZSTD:
        # A zstandard context must not be shared between threads, and compaction may compress
        # in a worker thread, so each call gets its own (a few microseconds).
        return zstandard.ZstdCompressor(level=_ZSTD_LEVEL).compress(data)
    raise _unsupported(codec)


def decompress(codec: int, data, max_output_bytes: int = DEFAULT_MAX_OUTPUT_BYTES) -> bytes:
    """Inverse of ``compress`` that also reads every framing real clients write (see module doc)."""
    if codec == NONE:
        return _bounded(bytes(data), max_output_bytes, "none")
    try:
        if codec == GZIP:
            return _gzip_decompress(data, max_output_bytes)
        if codec == SNAPPY:
            return _snappy_decompress(data, max_output_bytes)
        if codec == LZ4:
            return _lz4_decompress(data, max_output_bytes)
        if codec == ZSTD:
            return _zstd_decompress(data, max_output_bytes)
    except CorruptRecordError:
        raise
    except _CODEC_ERRORS as exc:
        # Garbage from a client must surface as CORRUPT_MESSAGE, never as a crash.
        raise CorruptRecordError(f"{CODEC_NAMES[codec]} decompression failed: {exc}") from None
    raise _unsupported(codec)


def _bounded(out: bytes, max_output_bytes: int, name: str) -> bytes:
    if len(out) > max_output_bytes:
        raise CorruptRecordError(f"{name} payload expands beyond {max_output_bytes} bytes")
    return out


def _gzip_decompress(data, max_output_bytes: int) -> bytes:
    chunks = []
    total = 0
    remaining = bytes(data)
    while True:
        decompressor = zlib.decompressobj(_ZLIB_AUTO_WBITS)
        # max_length + 1 lets us tell "exactly at the limit" from "over the limit".
        out = decompressor.decompress(remaining, max_output_bytes - total + 1)
        total += len(out)
        if total > max_output_bytes:
            raise CorruptRecordError(f"gzip payload expands beyond {max_output_bytes} bytes")
        chunks.append(out)
        if not decompressor.eof:
            raise CorruptRecordError("gzip payload is truncated")
        remaining = decompressor.unused_data
        # Concatenated gzip members are legal (RFC 1952 §2.2); anything else trailing is not.
        if not remaining:
            return b"".join(chunks)


def _snappy_xerial_compress(data) -> bytes:
    view = memoryview(data)
    parts = [_XERIAL_HEADER]
    for start in range(0, len(view), _XERIAL_BLOCK_BYTES):
        block = bytes(cramjam.snappy.compress_raw(view[start : start + _XERIAL_BLOCK_BYTES]))
        parts.append(_INT32.pack(len(block)))
        parts.append(block)
    return b"".join(parts)


def _snappy_raw_block(block, budget: int) -> bytes:
    # The raw format starts with the uncompressed length, so the bound is checked before any work.
    expected = cramjam.snappy.decompress_raw_len(block)
    if expected > budget:
        raise CorruptRecordError("snappy payload expands beyond the allowed size")
    return bytes(cramjam.snappy.decompress_raw(block))


def _snappy_decompress(data, max_output_bytes: int) -> bytes:
    view = memoryview(data)
    if len(view) < 16 or bytes(view[:8]) != _XERIAL_MAGIC:
        return _snappy_raw_block(bytes(view), max_output_bytes)
    # xerial framing: version and compat (8 bytes) are ignored, as every client does, because
    # some writers (Redpanda) got their byte order wrong (kafka-python issue #2414).
    chunks = []
    total = 0
    pos = 16
    end = len(view)
    while pos < end:
        if pos + 4 > end:
            raise CorruptRecordError("xerial snappy block length is truncated")
        (block_len,) = _INT32.unpack_from(view, pos)
        pos += 4
        if block_len < 0 or pos + block_len > end:
            raise CorruptRecordError(f"xerial snappy block length {block_len} out of range")
        out = _snappy_raw_block(bytes(view[pos : pos + block_len]), max_output_bytes - total)
        total += len(out)
        chunks.append(out)
        pos += block_len
    return b"".join(chunks)


def _lz4_decompress(data, max_output_bytes: int) -> bytes:
    decompressor = lz4.frame.LZ4FrameDecompressor()
    out = decompressor.decompress(bytes(data), max_length=max_output_bytes + 1)
    if len(out) > max_output_bytes:
        raise CorruptRecordError(f"lz4 payload expands beyond {max_output_bytes} bytes")
    if not decompressor.eof:
        raise CorruptRecordError("lz4 frame is truncated")
    return out


def _zstd_decompress(data, max_output_bytes: int) -> bytes:
    # zstandard's one-shot API trusts the frame's content size and its stream_reader returns
    # silently on truncated input, so frames are decoded with decompressobj (which reports eof)
    # and fed in slices small enough that one call cannot overshoot the bound by much: a zstd
    # block of at most 128 KiB output costs at least 4 input bytes, so a ratio above 32768 is
    # impossible.
    chunks = []
    total = 0
    view = memoryview(bytes(data))
    pos = 0
    end = len(view)
    decompressor = zstandard.ZstdDecompressor()
    while pos < end:
        frame = decompressor.decompressobj()
        while not frame.eof:
            if pos >= end:
                raise CorruptRecordError("zstd frame is truncated")
            step = max(_ZSTD_MIN_FEED_BYTES, (max_output_bytes - total) // _ZSTD_MAX_RATIO)
            out = frame.decompress(view[pos : pos + step])
            pos += min(step, end - pos)
            total += len(out)
            if total > max_output_bytes:
                raise CorruptRecordError(f"zstd payload expands beyond {max_output_bytes} bytes")
            chunks.append(out)
        # Input fed beyond the end of this frame belongs to the next one.
        pos -= len(frame.unused_data)
    return b"".join(chunks)
