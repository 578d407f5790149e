"""Log compaction (Kafka's LogCleaner) for topics whose ``cleanup.policy`` includes ``compact``.

A compacted topic keeps, for every key, at least the latest record: older values of a key are
removed from the segments below the active one, tombstones (null values) are removed once
``delete.retention.ms`` has passed since their batch was first cleaned, and offsets never change
(a rewritten batch keeps its base offset, last offset delta and producer fields, so offset gaps
appear and idempotent producer state can still be rebuilt from the headers).

The work is split the way the broker runs it, so produce and fetch never wait for it:

* ``prepare_cleaning`` (event-loop thread) asks the log for its plan (``PartitionLog.cleaning_plan``:
  the rolled segments below the recovery point and high watermark, only durable data, and the log's
  generation), picks those older than ``min.compaction.lag.ms``, decides whether the dirty ratio
  warrants a pass, and duplicates their descriptors;
* ``CleanTask.run`` (worker thread) reads those descriptors, builds the key -> latest offset map,
  writes each cleaned segment with its indexes into the staging directory ``cleaner.cleaned``
  and fsyncs everything;
* ``complete_cleaning`` (loop thread) renames the staging directory to ``cleaner.swap`` (the
  commit point), moves the files over the old ones and has the log swap the segment objects
  (``PartitionLog.swap_segment``), provided its generation is still the plan's.  A read that
  already resolved a segment finished on the old file; every later read uses the new one.

After a crash ``finish_interrupted_cleaning`` deletes an uncommitted ``cleaner.cleaned`` and
completes a committed ``cleaner.swap``, so either the old or the cleaned segments survive whole.

Deliberate simplifications: segments are rewritten one to one (Kafka also merges small
neighbours); the offset map is an exact dict of keys held in memory (Kafka bounds it with
hashes); the first dirty offset is kept in memory only, so a restart cleans everything once.
"""

from __future__ import annotations

import logging
import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from crc32c import crc32c

from cluster.core.errors import CorruptRecordError
from cluster.storage.config import LogConfig
from cluster.storage.fs import FileSystem
from cluster.storage.segment import INDEX_SUFFIX, LOG_SUFFIX, TIME_INDEX_SUFFIX, LogSegment
from cluster.wire import compression
from cluster.wire.primitives import read_varint, read_varlong, write_varint, write_varlong
from cluster.wire.records import (
    ATTRIBUTES_OFFSET,
    BATCH_HEADER_SIZE,
    COMPRESSION_CODEC_MASK,
    CRC_OFFSET,
    DELETE_HORIZON_MASK,
    LOG_APPEND_TIME,
    LOG_OVERHEAD,
    MAGIC_V2,
    BatchHeader,
    parse_batch_header,
)

if TYPE_CHECKING:
    from cluster.storage.partition_log import PartitionLog

__all__ = [
    "CleaningPlan",
    "CleanTask",
    "CleanStats",
    "prepare_cleaning",
    "complete_cleaning",
    "clean_now",
    "finish_interrupted_cleaning",
    "STAGING_CLEANED_DIR",
    "STAGING_SWAP_DIR",
]

logger = logging.getLogger("cluster.storage.cleaner")

STAGING_CLEANED_DIR = "cleaner.cleaned"
STAGING_SWAP_DIR = "cleaner.swap"
_READ_CHUNK_BYTES = 1024 * 1024
_HEADER = struct.Struct(">qiibIhiqqqhii")
_UINT32 = struct.Struct(">I")
_SEGMENT_SUFFIXES = (LOG_SUFFIX, INDEX_SUFFIX, TIME_INDEX_SUFFIX)


class CleanStats:
    __slots__ = ("records_read", "records_kept", "bytes_read", "bytes_written", "segments")

    def __init__(self) -> None:
        self.records_read = self.records_kept = self.bytes_read = self.bytes_written = self.segments = 0

    def __repr__(self) -> str:
        return (
            f"CleanStats(segments={self.segments}, records {self.records_read}->{self.records_kept}, "
            f"bytes {self.bytes_read}->{self.bytes_written})"
        )


class _Source:
    """A segment to clean, as captured on the loop thread."""

    __slots__ = ("segment", "base_offset", "fd", "size")

    def __init__(self, segment: LogSegment, fd: int) -> None:
        self.segment = segment
        self.base_offset = segment.base_offset
        self.fd = fd
        self.size = segment.size


# ----------------------------------------------------------------------------------------------
# planning (loop thread)
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CleaningPlan:
    """What a log offers the cleaner (``PartitionLog.cleaning_plan``, loop thread): its rolled segments wholly
    below the durable limit, oldest first, and the log generation a pass must still find when it swaps its
    result in (truncation, close and every swap bump it).  ``end_offsets[i]`` is the base offset of the
    segment after ``segments[i]``: where a pass over the first i + 1 segments ends."""

    fs: FileSystem
    dir_path: str
    config: LogConfig
    generation: int
    segments: tuple[LogSegment, ...]
    end_offsets: tuple[int, ...]
    first_dirty_offset: int
    delete_horizon_ms: int | None


def prepare_cleaning(
    log: PartitionLog, now_ms: int, high_watermark: int | None = None, *, force: bool = False
) -> CleanTask | None:
    """The cleaning pass due for ``log`` now, or None.  ``force`` ignores the dirty ratio."""
    plan = log.cleaning_plan(high_watermark)
    if plan is None:
        return None
    config = plan.config
    candidates: list[LogSegment] = []
    for segment in plan.segments:
        # min.compaction.lag.ms: a segment is cleanable once all of it is old enough (an empty
        # one, left by an earlier pass, has nothing to protect and only its mtime as a time).
        if segment.size and now_ms - segment.largest_timestamp() < config.min_compaction_lag_ms:
            break
        candidates.append(segment)
    if not candidates:
        return None
    if plan.fs.exists(os.path.join(plan.dir_path, STAGING_SWAP_DIR)):
        # A swap failed half way (disk error): it completes at the next open; never clean over it.
        return None
    total_bytes = sum(s.size for s in candidates)
    dirty_bytes = sum(s.size for s in candidates if s.base_offset >= plan.first_dirty_offset)
    ratio = dirty_bytes / total_bytes if total_bytes else 0.0
    horizon_due = plan.delete_horizon_ms is not None and now_ms >= plan.delete_horizon_ms
    if not force and not horizon_due and (dirty_bytes == 0 or ratio < config.min_cleanable_dirty_ratio):
        return None
    end_offset = plan.end_offsets[len(candidates) - 1]
    sources = [_Source(s, plan.fs.dup(s.fd)) for s in candidates]
    return CleanTask(plan, sources, now_ms, end_offset)


class CleanTask:
    """One cleaning pass over a prefix of segments; ``run`` it on a worker thread."""

    def __init__(self, plan: CleaningPlan, sources: list[_Source], now_ms: int, end_offset: int) -> None:
        self.fs: FileSystem = plan.fs
        self.dir_path = plan.dir_path
        self.config = plan.config
        self.staging_path = os.path.join(plan.dir_path, STAGING_CLEANED_DIR)
        self._sources = sources
        self.generation = plan.generation
        self._index_interval_bytes = plan.config.index_interval_bytes
        self._max_index_entries = plan.config.max_index_entries
        self._delete_retention_ms = plan.config.delete_retention_ms
        self.now_ms = now_ms
        self.end_offset = end_offset
        # Smallest delete horizon of a batch that still holds tombstones: the next pass due.
        self.next_delete_horizon_ms: int | None = None
        self.stats = CleanStats()
        self.done = False

    @property
    def base_offsets(self) -> list[int]:
        return [s.base_offset for s in self._sources]

    def run(self) -> None:
        """Worker thread: writes and fsyncs the cleaned segments into the staging directory.
        Raises OSError or CorruptRecordError on failure; the log is then untouched."""
        try:
            latest_offsets, last_producer_batch = self._build_offset_map()
            self.fs.rmtree(self.staging_path)
            self.fs.makedirs(self.staging_path)
            for source in self._sources:
                self._clean_segment(source, latest_offsets, last_producer_batch)
            self.fs.fsync_dir(self.staging_path)
            self.done = True
        finally:
            self.close()

    def close(self) -> None:
        for source in self._sources:
            if source.fd >= 0:
                self.fs.close(source.fd)
                source.fd = -1

    # -- pass 1: the offset map ----------------------------------------------------------------
    def _build_offset_map(self) -> tuple[dict[bytes, int], dict[int, int]]:
        latest: dict[bytes, int] = {}
        last_producer_batch: dict[int, int] = {}
        for source in self._sources:
            for header, batch in _iter_batches(self.fs, source):
                if header.producer_id >= 0:
                    last_producer_batch[header.producer_id] = header.base_offset
                if header.is_control or header.records_count == 0:
                    continue
                for record in _iter_raw_records(batch, header):
                    if record.key is not None:
                        latest[record.key] = header.base_offset + record.offset_delta
        return latest, last_producer_batch

    # -- pass 2: rewriting ---------------------------------------------------------------------
    def _clean_segment(
        self, source: _Source, latest: dict[bytes, int], last_producer_batch: dict[int, int]
    ) -> None:
        segment = LogSegment.create(
            self.fs,
            self.staging_path,
            source.base_offset,
            self._index_interval_bytes,
            self._max_index_entries,
            self.now_ms,
        )
        try:
            for header, batch in _iter_batches(self.fs, source):
                self.stats.bytes_read += header.size_in_bytes
                cleaned = self._clean_batch(header, batch, latest, last_producer_batch)
                if cleaned is None:
                    continue
                new_header = parse_batch_header(cleaned, 0)
                segment.append(cleaned, new_header)
                self.stats.bytes_written += len(cleaned)
            segment.finish()
            self.fs.fdatasync(segment.fd)
            segment.sync_indexes()
            self.stats.segments += 1
        finally:
            segment.close()

    def _clean_batch(
        self, header: BatchHeader, batch, latest: dict[bytes, int], last_producer_batch: dict[int, int]
    ):
        """The batch to write in place of ``batch``: itself, a rewritten one, or None to drop it."""
        if header.is_control:
            return batch  # transaction markers are kept (transactions are not cleaned yet)
        records = list(_iter_raw_records(batch, header)) if header.records_count else []
        self.stats.records_read += len(records)
        has_horizon = bool(header.attributes & DELETE_HORIZON_MASK)
        horizon_passed = has_horizon and self.now_ms >= header.base_timestamp
        kept = [
            r
            for r in records
            if r.key is not None  # keyless records are invalid in a compacted topic (as Kafka)
            and latest.get(r.key) == header.base_offset + r.offset_delta
            and not (r.is_tombstone and horizon_passed)
        ]
        self.stats.records_kept += len(kept)
        has_tombstones = any(r.is_tombstone for r in kept)
        if has_tombstones:
            horizon = header.base_timestamp if has_horizon else self.now_ms + self._delete_retention_ms
            if self.next_delete_horizon_ms is None or horizon < self.next_delete_horizon_ms:
                self.next_delete_horizon_ms = horizon
        if len(kept) == len(records) and (has_horizon or not has_tombstones):
            return batch
        if not kept:
            if header.producer_id >= 0 and last_producer_batch.get(header.producer_id) == header.base_offset:
                # The producer's last batch stays as an empty header: producer state is rebuilt
                # from headers, and its sequence must not go back (Kafka does the same).
                return _empty_batch(header)
            return None
        return _rebuild_batch(header, kept, has_tombstones, self.now_ms + self._delete_retention_ms)


# ----------------------------------------------------------------------------------------------
# swapping (loop thread)
# ----------------------------------------------------------------------------------------------
def complete_cleaning(log: PartitionLog, task: CleanTask) -> int:
    """Loop thread, after ``task.run()`` returned: swaps the cleaned segments in.  Segments that
    changed meanwhile (retention deleted them, truncation removed them) are skipped.  Returns
    the number of segments swapped."""
    task.close()
    fs = task.fs
    if not task.done:
        fs.rmtree(task.staging_path)
        return 0
    unchanged = {id(s) for s in log.unchanged_segments(task.generation, [(s.segment, s.size) for s in task._sources])}
    valid = [s for s in task._sources if id(s.segment) in unchanged]
    valid_bases = {s.base_offset for s in valid}
    for source in task._sources:
        if source.base_offset not in valid_bases:
            for suffix in _SEGMENT_SUFFIXES:
                fs.unlink(os.path.join(task.staging_path, _name(source.base_offset, suffix)))
    if not valid:
        fs.rmtree(task.staging_path)
        return 0
    swap_path = os.path.join(task.dir_path, STAGING_SWAP_DIR)
    if fs.exists(swap_path):
        fs.rmtree(task.staging_path)
        return 0
    for source in valid:
        # Indexes load lazily by path: load them now, so that if the moves below fail half way the
        # old segments keep serving from their open descriptors and in-memory indexes.
        source.segment.ensure_indexes_loaded()
    # The commit point: from here a crash completes the swap instead of discarding it.
    # Files at the cleaned segments' paths are about to be replaced: a flush ticket in flight
    # must not write index entries of the old segments into them.
    log.void_flush_tickets()
    os.replace(task.staging_path, swap_path)
    fs.fsync_dir(task.dir_path)
    _move_swap_files(fs, task.dir_path)
    for source in valid:
        log.swap_segment(source.segment, _open_cleaned_segment(task, source.base_offset))
    log.record_cleaning(task.end_offset, task.next_delete_horizon_ms)
    logger.info("%s: cleaned %d segment(s) up to offset %d: %s", task.dir_path, len(valid), task.end_offset,
                task.stats)
    return len(valid)


def _open_cleaned_segment(task: CleanTask, base_offset: int) -> LogSegment:
    config = task.config
    segment = LogSegment(task.fs, task.dir_path, base_offset, config.index_interval_bytes,
                         config.max_index_entries)
    reason = segment.load_tail()
    if reason is None:
        segment.indexes_synced = True  # fsynced by the task before the commit point
    else:  # cannot happen for files we just wrote; stay correct anyway
        logger.warning("rebuilding indexes of cleaned %s: %s", segment.log_path, reason)
        segment.rebuild_indexes()
    return segment


def _move_swap_files(fs: FileSystem, dir_path: str) -> None:
    swap_path = os.path.join(dir_path, STAGING_SWAP_DIR)
    for name in sorted(fs.listdir(swap_path)):
        # rename(2) replaces atomically; FileSystem has no rename yet, so os is used directly.
        os.replace(os.path.join(swap_path, name), os.path.join(dir_path, name))
    fs.fsync_dir(dir_path)
    fs.rmtree(swap_path)
    fs.fsync_dir(dir_path)


def finish_interrupted_cleaning(fs: FileSystem, dir_path: str) -> None:
    """Recovery, before the segments are scanned: an uncommitted pass is discarded, a committed
    one is completed."""
    cleaned = os.path.join(dir_path, STAGING_CLEANED_DIR)
    if fs.exists(cleaned):
        logger.warning("%s: discarding an interrupted cleaning pass", dir_path)
        fs.rmtree(cleaned)
    if fs.exists(os.path.join(dir_path, STAGING_SWAP_DIR)):
        logger.warning("%s: completing an interrupted segment swap", dir_path)
        _move_swap_files(fs, dir_path)


def clean_now(log: PartitionLog, now_ms: int, high_watermark: int | None = None, *, force: bool = False) -> int:
    """Synchronous pass (tests, tools): prepare, run and complete on the caller's thread."""
    task = prepare_cleaning(log, now_ms, high_watermark, force=force)
    if task is None:
        return 0
    task.run()
    return complete_cleaning(log, task)


def _name(base_offset: int, suffix: str) -> str:
    return f"{base_offset:020d}{suffix}"


# ----------------------------------------------------------------------------------------------
# batches and raw records
# ----------------------------------------------------------------------------------------------
def _iter_batches(fs: FileSystem, source: _Source) -> Iterator[tuple[BatchHeader, bytes]]:
    """(header, whole batch bytes) of every batch of a source segment, read in chunks."""
    position = 0
    buf = b""
    buf_start = 0
    while position < source.size:
        offset = position - buf_start
        if offset + BATCH_HEADER_SIZE > len(buf):
            buf = fs.pread(source.fd, _READ_CHUNK_BYTES, position)
            buf_start, offset = position, 0
        header = parse_batch_header(buf, offset)
        size = header.size_in_bytes
        if offset + size > len(buf):
            buf = fs.pread(source.fd, max(_READ_CHUNK_BYTES, size), position)
            buf_start, offset = position, 0
            if size > len(buf):
                raise CorruptRecordError(f"segment {source.base_offset}: batch at {position} runs past the end")
        yield header, buf[offset : offset + size]
        position += size


class _RawRecord:
    """A record as stored: the fields compaction needs, plus the undecoded key..headers bytes."""

    __slots__ = ("attributes", "timestamp_delta", "offset_delta", "key", "is_tombstone", "tail")

    def __init__(self, attributes, timestamp_delta, offset_delta, key, is_tombstone, tail) -> None:
        self.attributes = attributes
        self.timestamp_delta = timestamp_delta
        self.offset_delta = offset_delta
        self.key = key
        self.is_tombstone = is_tombstone
        self.tail = tail


def _iter_raw_records(batch, header: BatchHeader) -> Iterator[_RawRecord]:
    section = memoryview(batch)[BATCH_HEADER_SIZE : header.size_in_bytes]
    if header.compression_type:
        section = compression.decompress(header.compression_type, section)
    end = len(section)
    pos = 0
    for _ in range(header.records_count):
        length, pos = read_varint(section, pos)
        record_end = pos + length
        if length < 1 or record_end > end:
            raise CorruptRecordError(f"batch {header.base_offset}: record length {length} overruns the batch")
        attributes = section[pos]
        timestamp_delta, field_pos = read_varlong(section, pos + 1)
        offset_delta, field_pos = read_varint(section, field_pos)
        tail_start = field_pos
        key_length, field_pos = read_varint(section, field_pos)
        key = None
        if key_length >= 0:
            key = bytes(section[field_pos : field_pos + key_length])
            field_pos += key_length
        value_length, _ = read_varint(section, field_pos)
        yield _RawRecord(
            attributes, timestamp_delta, offset_delta, key, value_length < 0, bytes(section[tail_start:record_end])
        )
        pos = record_end
    if pos != end:
        raise CorruptRecordError(f"batch {header.base_offset}: {end - pos} bytes follow the last record")


def _rebuild_batch(header: BatchHeader, kept: list[_RawRecord], has_tombstones: bool, new_horizon_ms: int) -> bytes:
    """A batch holding only ``kept``, with the original offsets, producer fields and codec.

    With tombstones left, bit 6 of the attributes marks baseTimestamp as the delete horizon
    (KIP-534) and record timestamp deltas are re-based on it; otherwise baseTimestamp is a real
    timestamp again.
    """
    had_horizon = bool(header.attributes & DELETE_HORIZON_MASK)
    timestamps = [header.base_timestamp + r.timestamp_delta for r in kept]
    if has_tombstones:
        base_timestamp = header.base_timestamp if had_horizon else new_horizon_ms
        attributes = header.attributes | DELETE_HORIZON_MASK
    else:
        base_timestamp = timestamps[0] if had_horizon else header.base_timestamp
        attributes = header.attributes & ~DELETE_HORIZON_MASK
    if header.timestamp_type == LOG_APPEND_TIME:
        max_timestamp = header.max_timestamp
    else:
        max_timestamp = max(timestamps)
    parts = []
    for record, timestamp in zip(kept, timestamps, strict=True):
        body = b"".join(
            (bytes((record.attributes,)), write_varlong(timestamp - base_timestamp),
             write_varint(record.offset_delta), record.tail)
        )
        parts.append(write_varint(len(body)))
        parts.append(body)
    section = b"".join(parts)
    codec = header.attributes & COMPRESSION_CODEC_MASK
    if codec:
        section = compression.compress(codec, section)
    return _pack_batch(header, attributes, base_timestamp, max_timestamp, len(kept), section)


def _empty_batch(header: BatchHeader) -> bytes:
    attributes = header.attributes & ~(DELETE_HORIZON_MASK | COMPRESSION_CODEC_MASK)
    return _pack_batch(header, attributes, header.max_timestamp, header.max_timestamp, 0, b"")


def _pack_batch(header: BatchHeader, attributes: int, base_timestamp: int, max_timestamp: int,
                records_count: int, section: bytes) -> bytes:
    batch = bytearray(BATCH_HEADER_SIZE)
    _HEADER.pack_into(
        batch,
        0,
        header.base_offset,
        BATCH_HEADER_SIZE - LOG_OVERHEAD + len(section),
        header.partition_leader_epoch,
        MAGIC_V2,
        0,
        attributes,
        header.last_offset_delta,  # kept: offsets and producer sequences must not move
        base_timestamp,
        max_timestamp,
        header.producer_id,
        header.producer_epoch,
        header.base_sequence,
        records_count,
    )
    batch += section
    _UINT32.pack_into(batch, CRC_OFFSET, crc32c(memoryview(batch)[ATTRIBUTES_OFFSET:]))
    return bytes(batch)
