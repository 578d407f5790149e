"""One log segment: a ``<base offset>.log`` file of RecordBatch v2 bytes plus its two indexes.

A partition log is a sequence of segments so that retention can delete whole files and recovery
only has to scan the tail.  The segment owns the byte-level work: appending a batch and indexing
it, finding the batch that contains an offset, deciding how many whole batches fit in a fetch,
truncating, and recovering after a crash (scan every batch, check its structure and CRC-32C,
cut the file at the first bad one, rebuild the indexes).

Memory stays bounded: batches are read with ``pread`` in chunks and only their 61-byte headers
are decoded; the indexes (a few bytes per ``index_interval_bytes`` of log) load lazily.
Descriptors stay bounded too: index files are opened only to be changed (see index_file.py), and
a rolled segment's ``.log`` descriptor is opened on use and closed when idle (DescriptorCache),
so an idle replica holds one descriptor, its active segment's.
"""

from __future__ import annotations

import logging
import os
import struct
from collections.abc import Callable, Iterator

from crc32c import crc32c

from cluster.core.errors import CorruptRecordError
from cluster.storage.fs import FileSystem
from cluster.storage.offset_index import OFFSET_INDEX_ENTRY_SIZE, OffsetIndex
from cluster.storage.time_index import TIME_INDEX_ENTRY_SIZE, TimeIndex
from cluster.wire.records import (
    ATTRIBUTES_OFFSET,
    BATCH_HEADER_SIZE,
    MAGIC_V2,
    MIN_BATCH_LENGTH,
    BatchHeader,
    parse_batch_header,
)

__all__ = [
    "LogSegment",
    "DescriptorCache",
    "segment_file_name",
    "LOG_SUFFIX",
    "INDEX_SUFFIX",
    "TIME_INDEX_SUFFIX",
]

logger = logging.getLogger("cluster.storage")

LOG_SUFFIX = ".log"
INDEX_SUFFIX = ".index"
TIME_INDEX_SUFFIX = ".timeindex"

_INT32_MAX = 0x7FFFFFFF
# Header scans on the read path cover about one index interval, so a small chunk suffices.
_SCAN_CHUNK_BYTES = 16 * 1024
# Recovery and rebuilds read the whole segment sequentially.
_RECOVERY_CHUNK_BYTES = 1024 * 1024
_HEADER = struct.Struct(">qiibIhiqqqhii")
_OFFSET_ENTRY = struct.Struct(">ii")
_TIME_ENTRY = struct.Struct(">qi")


def segment_file_name(base_offset: int, suffix: str) -> str:
    """Kafka's file naming: the base offset zero-padded to 20 digits."""
    return f"{base_offset:020d}{suffix}"


class DescriptorCache:
    """Bounds how many rolled segments of one log keep their ``.log`` descriptor open.

    A broker hosts thousands of replicas under a hard descriptor limit, and rolled segments are
    read rarely (catch-up fetches, recovery, cleaning).  A rolled segment opens its file on first
    use and registers here; beyond ``max_open`` the one opened longest ago is closed (it reopens
    on its next use).  The active segment is never registered, so its descriptor stays open.
    """

    __slots__ = ("max_open", "_open")

    def __init__(self, max_open: int) -> None:
        self.max_open = max_open
        self._open: dict[LogSegment, None] = {}  # in opening order

    def opened(self, segment: LogSegment) -> None:
        self._open.pop(segment, None)
        self._open[segment] = None
        while len(self._open) > self.max_open:
            oldest = next(iter(self._open))
            del self._open[oldest]
            oldest.close_descriptor()

    def forget(self, segment: LogSegment) -> None:
        self._open.pop(segment, None)

    def release(self, segment: LogSegment) -> None:
        """Closes ``segment``'s descriptor now (it is idle)."""
        if segment in self._open:
            del self._open[segment]
            segment.close_descriptor()

    def release_all(self) -> None:
        for segment in list(self._open):
            self.release(segment)

    def __len__(self) -> int:
        return len(self._open)


class LogSegment:
    __slots__ = (
        "_fs",
        "base_offset",
        "log_path",
        "_fd",
        "_closed",
        "fd_cache",
        "size",
        "next_offset",
        "max_timestamp",
        "offset_of_max_timestamp",
        "rolling_base_ms",
        "offset_index",
        "time_index",
        "indexes_synced",
        "_index_interval_bytes",
        "_bytes_since_last_index_entry",
        "_indexes_loaded",
    )

    def __init__(
        self,
        fs: FileSystem,
        dir_path: str,
        base_offset: int,
        index_interval_bytes: int,
        max_index_entries: int,
    ) -> None:
        self._fs = fs
        self.base_offset = base_offset
        self.log_path = os.path.join(dir_path, segment_file_name(base_offset, LOG_SUFFIX))
        self._fd = fs.open_append(self.log_path)
        self._closed = False
        # None while the segment is active (its descriptor stays open); else the log's cache.
        self.fd_cache: DescriptorCache | None = None
        self.size = fs.file_size(self._fd)
        self.next_offset = base_offset
        # The largest batch maxTimestamp in the segment and the base offset of that batch.
        self.max_timestamp = -1
        self.offset_of_max_timestamp = base_offset
        self.rolling_base_ms = 0
        self.offset_index = OffsetIndex(
            fs,
            os.path.join(dir_path, segment_file_name(base_offset, INDEX_SUFFIX)),
            base_offset,
            max_index_entries,
        )
        self.time_index = TimeIndex(
            fs, os.path.join(dir_path, segment_file_name(base_offset, TIME_INDEX_SUFFIX)), base_offset
        )
        # Whether the index files are known to be on stable storage (see PartitionLog flushing).
        self.indexes_synced = False
        self._index_interval_bytes = index_interval_bytes
        self._bytes_since_last_index_entry = 0
        self._indexes_loaded = False

    # -- lifecycle -----------------------------------------------------------------------------
    @classmethod
    def create(
        cls,
        fs: FileSystem,
        dir_path: str,
        base_offset: int,
        index_interval_bytes: int,
        max_index_entries: int,
        now_ms: int,
    ) -> LogSegment:
        """A new empty segment (any stale files with the same name are emptied)."""
        segment = cls(fs, dir_path, base_offset, index_interval_bytes, max_index_entries)
        if segment.size:
            fs.truncate(segment.fd, 0)
            segment.size = 0
        segment.offset_index.rewrite_file()
        segment.time_index.rewrite_file()
        segment._indexes_loaded = True
        segment.rolling_base_ms = now_ms
        return segment

    @property
    def fd(self) -> int:
        """The ``.log`` descriptor, reopened if the descriptor cache closed it; -1 once the
        segment is closed.  Use it at once: opening another segment's file may close it."""
        if self._fd < 0 and not self._closed:
            self._fd = self._fs.open_append(self.log_path)
            if self.fd_cache is not None:
                self.fd_cache.opened(self)
        return self._fd

    def close_descriptor(self) -> None:
        """Closes the ``.log`` descriptor until the next use (the segment stays usable)."""
        if self._fd >= 0:
            self._fs.close(self._fd)
            self._fd = -1

    @property
    def has_open_descriptor(self) -> bool:
        return self._fd >= 0

    def close(self) -> None:
        self._closed = True
        self.close_descriptor()
        if self.fd_cache is not None:
            self.fd_cache.forget(self)

    def sync_indexes(self) -> None:
        """Blocking: writes the pending index entries and fsyncs both index files."""
        self.offset_index.sync()
        self.time_index.sync()
        self.indexes_synced = True

    def delete_files(self) -> None:
        self.close()
        for path in (self.log_path, self.offset_index.path, self.time_index.path):
            self._fs.unlink(path)

    def init_rolling_base(self, now_ms: int) -> None:
        """Time-based rolls count from the first batch's timestamp, as Kafka does, clamped to
        now so that a client clock in the future cannot keep a segment open forever."""
        self.rolling_base_ms = now_ms
        if self.size >= BATCH_HEADER_SIZE:
            header = BatchHeader._make(_HEADER.unpack(self._fs.pread(self.fd, BATCH_HEADER_SIZE, 0)))
            if 0 <= header.max_timestamp < now_ms:
                self.rolling_base_ms = header.max_timestamp

    def largest_timestamp(self) -> int:
        """For time-based retention: the largest batch timestamp, else the file's mtime."""
        if self.max_timestamp >= 0:
            return self.max_timestamp
        return self._fs.mtime_ms(self.log_path)

    def finish(self) -> None:
        """Called when the segment stops being the active one: index its final maximum timestamp."""
        before = len(self.time_index)
        self.time_index.maybe_append(self.max_timestamp, self.offset_of_max_timestamp)
        if len(self.time_index) != before:
            self.indexes_synced = False

    # -- appending -----------------------------------------------------------------------------
    def append(self, batch, header: BatchHeader) -> None:
        position = self.size
        try:
            self._fs.write(self.fd, batch)
        except OSError:
            # A partial write would leave a torn batch in the middle of the log: cut it off.
            try:
                self._fs.truncate(self.fd, position)
            except OSError:
                pass
            raise
        self.size = position + header.batch_length + 12
        self._track_batch(position, header)

    def _track_batch(self, position: int, header: BatchHeader) -> None:
        if header.max_timestamp > self.max_timestamp:
            self.max_timestamp = header.max_timestamp
            self.offset_of_max_timestamp = header.base_offset
        # Like Kafka: the batch is indexed once more than an interval of bytes precedes it.
        if self._bytes_since_last_index_entry > self._index_interval_bytes:
            self.offset_index.append(header.base_offset, position)
            self.time_index.maybe_append(self.max_timestamp, self.offset_of_max_timestamp)
            self._bytes_since_last_index_entry = 0
            self.indexes_synced = False
        self._bytes_since_last_index_entry += header.batch_length + 12
        self.next_offset = header.base_offset + header.last_offset_delta + 1

    def can_hold(self, header: BatchHeader, segment_bytes: int) -> bool:
        """Whether ``header``'s batch may go into this segment without rolling first."""
        if self.size == 0:
            return header.last_offset - self.base_offset <= _INT32_MAX
        return (
            self.size + header.batch_length + 12 <= segment_bytes
            and not self.offset_index.is_full
            and header.last_offset - self.base_offset <= _INT32_MAX
        )

    # -- reading -------------------------------------------------------------------------------
    def iter_headers(
        self, position: int = 0, chunk_bytes: int = _SCAN_CHUNK_BYTES
    ) -> Iterator[tuple[int, BatchHeader]]:
        """(position, header) of each batch from ``position`` to the end of the segment.

        Reads in chunks and decodes headers only.  A batch that cannot be one or runs past the
        end raises CorruptRecordError naming the file and position.
        """
        end = self.size
        buf = b""
        buf_start = position
        while position < end:
            offset_in_buf = position - buf_start
            if offset_in_buf + BATCH_HEADER_SIZE > len(buf):
                buf = self._fs.pread(self.fd, max(chunk_bytes, BATCH_HEADER_SIZE), position)
                buf_start = position
                offset_in_buf = 0
            try:
                header = parse_batch_header(buf, offset_in_buf)
            except CorruptRecordError as exc:
                raise CorruptRecordError(f"{self.log_path} position {position}: {exc.message}") from None
            next_position = position + header.batch_length + 12
            if next_position > end:
                raise CorruptRecordError(f"{self.log_path} position {position}: batch runs past the end")
            yield position, header
            position = next_position

    def find_batch(self, offset: int) -> tuple[int, BatchHeader] | None:
        """The first batch whose last offset is >= ``offset`` (the one containing it, if any)."""
        self.ensure_indexes_loaded()
        for position, header in self.iter_headers(self.offset_index.lookup(offset)):
            if header.base_offset + header.last_offset_delta >= offset:
                return position, header
        return None

    def read_at(self, position: int, size: int) -> bytes:
        return self._fs.pread(self.fd, size, position)

    def visible_end(
        self, start: int, first: BatchHeader, max_bytes: int, max_offset: int, take_first: bool
    ) -> int:
        """End of the longest run of whole batches from ``start`` whose last offsets are below
        ``max_offset`` and whose total size is <= ``max_bytes``; the first batch counts even when
        larger than ``max_bytes`` if ``take_first``.  Returns ``start`` when none qualifies."""
        if first.last_offset >= max_offset:
            return start
        first_end = start + first.size_in_bytes
        limit = start + max_bytes
        if first_end > limit:
            return first_end if take_first else start
        if self.next_offset <= max_offset and self.size <= limit:
            return self.size
        # Every batch before an indexed position <= limit ends by that position, and every batch
        # before the indexed batch starting at or below max_offset ends below max_offset: jump
        # to the nearer of the two and scan the last stretch.
        jump = min(self.offset_index.floor_position(limit), self.offset_index.lookup(max_offset))
        for position, header in self.iter_headers(max(first_end, jump)):
            if header.last_offset >= max_offset or position + header.size_in_bytes > limit:
                return position
        return self.size

    # -- indexes -------------------------------------------------------------------------------
    def ensure_indexes_loaded(self) -> None:
        """Loads both indexes on first use; a file that fails its sanity check is rebuilt."""
        if self._indexes_loaded:
            return
        offset_data = self._fs.read_file(self.offset_index.path)
        time_data = self._fs.read_file(self.time_index.path)
        if offset_data is None or time_data is None:
            reason = "index file missing"
        else:
            reason = self.offset_index.load(offset_data, self.size, self.next_offset)
            if reason is None:
                reason = self.time_index.load(time_data, self.next_offset)
                if reason is not None:
                    reason = f"{self.time_index.path}: {reason}"
            else:
                reason = f"{self.offset_index.path}: {reason}"
        self._indexes_loaded = True
        if reason is not None:
            logger.warning("rebuilding indexes of %s: %s", self.log_path, reason)
            self.rebuild_indexes()

    def rebuild_indexes(self) -> None:
        """Re-derives both indexes from batch headers without touching the log file."""
        self._reset_tracking()
        try:
            for position, header in self.iter_headers(0, _RECOVERY_CHUNK_BYTES):
                self._track_batch(position, header)
        except CorruptRecordError as exc:
            # Only reachable for durable data damaged on disk; keep what can be indexed.
            logger.error("cannot index %s past offset %d: %s", self.log_path, self.next_offset, exc.message)
        self.offset_index.rewrite_file()
        self.time_index.rewrite_file()
        self._indexes_loaded = True
        self.indexes_synced = False

    def _reset_tracking(self) -> None:
        self.offset_index.clear()
        self.time_index.clear()
        self.max_timestamp = -1
        self.offset_of_max_timestamp = self.base_offset
        self.next_offset = self.base_offset
        self._bytes_since_last_index_entry = 0

    # -- opening and recovery ------------------------------------------------------------------
    def load_tail(self) -> str | None:
        """Cheap open for a segment below the recovery point: trust the data, read the last index
        entries and scan the batch headers after them to learn next_offset and the maximum
        timestamp.  Returns why the segment must be recovered instead, or None."""
        start, first_base = 0, None
        index_size = self._fs.path_size(self.offset_index.path)
        if index_size > 0:
            if index_size % OFFSET_INDEX_ENTRY_SIZE:
                return f"{self.offset_index.path}: size {index_size} is not a multiple of 8"
            raw = self._fs.read_range(
                self.offset_index.path, index_size - OFFSET_INDEX_ENTRY_SIZE, OFFSET_INDEX_ENTRY_SIZE
            )
            relative_offset, position = _OFFSET_ENTRY.unpack(raw)
            if relative_offset < 0 or not 0 <= position < self.size:
                return f"{self.offset_index.path}: last entry ({relative_offset}, {position}) is out of range"
            start, first_base = position, self.base_offset + relative_offset
        max_timestamp, offset_of_max = -1, self.base_offset
        time_size = self._fs.path_size(self.time_index.path)
        if time_size > 0:
            if time_size % TIME_INDEX_ENTRY_SIZE:
                return f"{self.time_index.path}: size {time_size} is not a multiple of 12"
            raw = self._fs.read_range(
                self.time_index.path, time_size - TIME_INDEX_ENTRY_SIZE, TIME_INDEX_ENTRY_SIZE
            )
            max_timestamp, relative_offset = _TIME_ENTRY.unpack(raw)
            offset_of_max = self.base_offset + relative_offset
        return self._restore_tail(start, first_base, max_timestamp, offset_of_max)

    def _restore_tail(
        self, start: int, first_base: int | None, max_timestamp: int, offset_of_max: int
    ) -> str | None:
        next_offset = first_base if first_base is not None else self.base_offset
        try:
            for position, header in self.iter_headers(start):
                if header.base_offset < next_offset or (
                    position == start and first_base not in (None, header.base_offset)
                ):
                    return f"{self.log_path} position {position}: offset {header.base_offset} out of order"
                if header.max_timestamp > max_timestamp:
                    max_timestamp, offset_of_max = header.max_timestamp, header.base_offset
                next_offset = header.next_offset
        except CorruptRecordError as exc:
            return exc.message
        if self.size and offset_of_max >= next_offset:
            return f"{self.time_index.path}: last entry points past the segment's end"
        self.next_offset = next_offset
        self.max_timestamp = max_timestamp
        self.offset_of_max_timestamp = offset_of_max
        self._bytes_since_last_index_entry = self.size - start
        return None

    def recover(self, on_batch: Callable[[BatchHeader], None]) -> bool:
        """Validates every batch (structure, offsets, CRC-32C), truncates the file at the first
        invalid or torn one, and rebuilds both indexes.  Returns True if it truncated."""
        self._reset_tracking()
        position = 0
        buf = b""
        buf_start = 0
        reason = None
        while position < self.size:
            offset_in_buf = position - buf_start
            if offset_in_buf + BATCH_HEADER_SIZE > len(buf):
                buf = self._fs.pread(self.fd, _RECOVERY_CHUNK_BYTES, position)
                buf_start, offset_in_buf = position, 0
            header, reason = self._check_header(buf, offset_in_buf, position)
            if reason is not None:
                break
            batch_size = header.batch_length + 12
            if offset_in_buf + batch_size > len(buf):
                buf = self._fs.pread(self.fd, max(_RECOVERY_CHUNK_BYTES, batch_size), position)
                buf_start, offset_in_buf = position, 0
            if (
                crc32c(memoryview(buf)[offset_in_buf + ATTRIBUTES_OFFSET : offset_in_buf + batch_size])
                != header.crc
            ):
                reason = "CRC-32C mismatch"
                break
            on_batch(header)
            self._track_batch(position, header)
            position += batch_size
        if reason is not None:
            logger.warning(
                "recovery truncates %s at position %d (next offset %d, %d bytes dropped): %s",
                self.log_path,
                position,
                self.next_offset,
                self.size - position,
                reason,
            )
            self._fs.truncate(self.fd, position)
            self.size = position
        self.offset_index.rewrite_file()
        self.time_index.rewrite_file()
        self._indexes_loaded = True
        self.indexes_synced = False
        return reason is not None

    def _check_header(self, buf, offset_in_buf: int, position: int) -> tuple[BatchHeader | None, str | None]:
        if len(buf) - offset_in_buf < BATCH_HEADER_SIZE:
            return None, f"torn batch header ({self.size - position} bytes left)"
        header = BatchHeader._make(_HEADER.unpack_from(buf, offset_in_buf))
        if header.magic != MAGIC_V2:
            return None, f"magic {header.magic}"
        if header.batch_length < MIN_BATCH_LENGTH:
            return None, f"batch length {header.batch_length}"
        if position + header.batch_length + 12 > self.size:
            return (
                None,
                f"torn batch: {header.batch_length + 12} bytes declared, {self.size - position} present",
            )
        if header.last_offset_delta < 0 or header.records_count < 0:
            return None, f"lastOffsetDelta {header.last_offset_delta}, recordsCount {header.records_count}"
        if header.base_offset < self.next_offset:
            return None, f"base offset {header.base_offset} below expected {self.next_offset}"
        if header.last_offset - self.base_offset > _INT32_MAX:
            return None, f"offset {header.last_offset} out of the segment's range"
        return header, None

    # -- truncation ----------------------------------------------------------------------------
    def truncate_to(self, offset: int) -> None:
        """Removes every batch whose last offset is >= ``offset`` (a batch containing ``offset``
        goes entirely: batches are atomic).  next_offset becomes <= ``offset``."""
        found = self.find_batch(offset)
        if found is None:
            return
        position, header = found
        self._fs.truncate(self.fd, position)
        self.size = position
        self.offset_index.truncate_to_offset(header.base_offset)
        self.time_index.truncate_to_offset(header.base_offset)
        last_index_entry = self.offset_index.last_entry()
        start, first_base = (last_index_entry[1], last_index_entry[0]) if last_index_entry else (0, None)
        last_time_entry = self.time_index.last_entry()
        max_timestamp, offset_of_max = last_time_entry if last_time_entry else (-1, self.base_offset)
        reason = self._restore_tail(start, first_base, max_timestamp, offset_of_max)
        if reason is not None:  # the prefix was valid a moment ago: indexes and file disagree
            logger.warning("rebuilding indexes of %s after truncation: %s", self.log_path, reason)
            self.rebuild_indexes()
        self.indexes_synced = False
