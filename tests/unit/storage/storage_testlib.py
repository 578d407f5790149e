"""Helpers shared by the storage tests: batch factories and log shorthands."""

from __future__ import annotations

import os

from cluster.storage import LogConfig, PartitionLog
from cluster.wire.records import build_batch, iter_batch_headers, validate_batch

NOW_MS = 1_700_000_000_000


def make_batch(records: int = 1, value_bytes: int = 40, timestamp_ms: int = NOW_MS, **kwargs) -> bytearray:
    """A producer-style batch (base offset 0) of ``records`` records with consecutive timestamps."""
    return bytearray(
        build_batch(
            [(b"key-%d" % i, b"v" * value_bytes, [], timestamp_ms + i) for i in range(records)], **kwargs
        )
    )


def open_log(path, now_ms: int = NOW_MS, **config) -> PartitionLog:
    return PartitionLog.open(str(path), LogConfig(**config), now_ms)


def append(log: PartitionLog, batch: bytearray, epoch: int = 0, now_ms: int = NOW_MS) -> tuple[int, int]:
    return log.append(batch, validate_batch(batch), epoch, now_ms)


def append_many(
    log: PartitionLog,
    count: int,
    records: int = 1,
    value_bytes: int = 40,
    epoch: int = 0,
    timestamp_ms: int = NOW_MS,
) -> list[bytes]:
    """Appends ``count`` batches; returns the bytes as stored (stamped)."""
    stored = []
    for i in range(count):
        batch = make_batch(records, value_bytes, timestamp_ms + i * records)
        append(log, batch, epoch)
        stored.append(bytes(batch))
    return stored


def read_all(log: PartitionLog) -> bytes:
    return log.read(log.log_start_offset, 1 << 40, log.log_end_offset)


def base_offsets(data: bytes) -> list[int]:
    return [header.base_offset for _, header in iter_batch_headers(data)]


def segment_files(path) -> list[str]:
    return sorted(name for name in os.listdir(path) if name.endswith(".log"))
