"""The live log of one partition replica: Kafka's on-disk layout, appends, reads, group commit, truncation,
retention, and the segment swap of a compaction pass.

Everything a partition stores lives in one directory ``<topic>-<partition>``:

* ``<base offset>.log`` / ``.index`` / ``.timeindex``: the segments (see segment.py);
* ``leader-epoch-checkpoint``: the leader-epoch cache (see epoch_cache.py);
* ``log-start-offset-checkpoint`` and ``recovery-point-offset-checkpoint``: one offset each, in
  the format of Kafka's per-directory checkpoint files (version, count, then ``<partition dir>
  <offset>``), written atomically;
* ``clean-shutdown``: present only between a clean ``close`` and the next ``open``.

Durability is explicit (../shared/DESIGN.md, fixed decision 7).  ``append`` only writes to the page cache;
``recovery_point`` is the offset below which everything is known to be on stable storage.  The
broker advances it by group commit: ``prepare_flush`` on the event loop captures a target
offset and duplicated descriptors, ``FlushTicket.run`` fsyncs in a worker thread while appends
continue, and ``complete_flush`` back on the loop publishes the new recovery point, which is
what lets a replica's log end offset count toward the high watermark.

Opening is ``log_loader.LogLoader`` (Kafka's LogLoader): it finds the segments and recovers the tail
after a crash; ``open`` then truncates the epoch cache to what survived and fsyncs, so that after
``open`` the whole log is durable.  Compaction (``cleaner``) asks for a ``cleaning_plan`` and hands
its result back through ``swap_segment``; it never touches this class's state.

Threading: every method runs on the owner's (event loop) thread except ``FlushTicket.run``.
"""

from __future__ import annotations

import logging
import os
import threading
from bisect import bisect_right
from collections.abc import Iterator

from cluster.core.errors import (
    CorruptRecordError,
    ErrorCode,
    KafkaError,
    OffsetOutOfRangeError,
    invariant,
)
from cluster.storage.cleaner import (
    CleaningPlan,
    CleanTask,
    complete_cleaning,
    prepare_cleaning,
)
from cluster.storage.config import LogConfig
from cluster.storage.epoch_cache import LeaderEpochCache
from cluster.storage.fs import LOCAL_FS, FileSystem
from cluster.storage.index_file import AppendOnlyIndexFile
from cluster.storage.log_loader import (
    CLEAN_SHUTDOWN_FILE,
    LOG_START_OFFSET_FILE,
    RECOVERY_POINT_FILE,
    LogLoader,
    write_offset_checkpoint,
)
from cluster.storage.segment import (
    DescriptorCache,
    LogSegment,
)
from cluster.wire.records import (
    TIMESTAMP_TYPE_MASK,
    BatchHeader,
    batch_crc_is_valid,
    find_first_record_at_or_after,
    iter_batch_headers,
    set_log_append_time,
    stamp_batch,
)

__all__ = [
    "PartitionLog",
    "FlushTicket",
    "LOG_START_OFFSET_FILE",
    "RECOVERY_POINT_FILE",
    "CLEAN_SHUTDOWN_FILE",
]

logger = logging.getLogger("cluster.storage")

_ITER_CHUNK_BYTES = 1024 * 1024
# Rolled segments of one log whose .log descriptor may stay open after a read (see
# DescriptorCache); enough for a catch-up fetch crossing a segment boundary.
_MAX_OPEN_ROLLED_SEGMENTS = 2


class FlushTicket:
    """One group commit: fsyncs captured on the loop thread, run on a worker thread.

    It holds duplicated descriptors of the segments' data files, so the loop may roll, truncate
    or delete segments (closing its own descriptors) while ``run`` is in progress; an fsync of an
    unlinked file is harmless.  Index files and the directory hold no descriptor between
    flushes: ``run`` opens, writes, fsyncs and closes them one at a time.  An index file is
    opened by path, so every index write checks, under the log's checkpoint lock, that nothing
    replaced or truncated the files since ``prepare_flush`` (the log's generation).
    """

    __slots__ = (
        "target_offset",
        "_fs",
        "_log",
        "_data_fds",
        "_sync_dir",
        "_generation",
        "_dir_generation",
        "_index_segments",
        "_data_segments",
        "_index_writes",
        "_index_written",
        "_persist_offset",
        "done",
    )

    def __init__(self, log: PartitionLog, target_offset: int) -> None:
        self.target_offset = target_offset
        self._fs = log._fs
        self._log = log
        self._data_fds: list[int] = []
        self._sync_dir = False
        self._generation = log._generation
        self._dir_generation = log._dir_generation
        self._index_segments: list[LogSegment] = []
        self._data_segments: list[LogSegment] = []
        # (index, first entry, entry count, bytes): entries captured on the loop thread.
        self._index_writes: list[tuple[AppendOnlyIndexFile, int, int, bytes]] = []
        self._index_written: list[bool] = []
        # When set, run() also rewrites the recovery-point file with this offset.
        self._persist_offset: int | None = None
        self.done = False

    def run(self) -> None:
        """Worker thread: make everything below target_offset durable.  Raises OSError if the
        disk fails; the log's state is then unchanged and a later ticket retries."""
        try:
            for fd in self._data_fds:
                self._fs.fdatasync(fd)
            for index, start, _, data in self._index_writes:
                with self._log._checkpoint_lock:
                    if self._generation != self._log._generation:
                        return  # voided: complete_flush will ignore this ticket anyway
                    self._index_written.append(index.write_at(start, data))
            if self._sync_dir:
                self._fs.fsync_dir(self._log.dir_path)
            if self._persist_offset is not None:
                self._log._persist_recovery_point(self._persist_offset, self._generation)
            self.done = True
        finally:
            self.close()

    def close(self) -> None:
        """Releases the duplicated descriptors (run() does it; call it for a ticket never run)."""
        for fd in self._data_fds:
            self._fs.close(fd)
        self._data_fds = []


class PartitionLog:
    """One partition replica's log.  Create with ``PartitionLog.open``."""

    def __init__(self, fs: FileSystem, dir_path: str, config: LogConfig) -> None:
        self._fs = fs
        self.dir_path = dir_path
        self.config = config
        self._segments: list[LogSegment] = []
        self._base_offsets: list[int] = []
        self._epoch_cache = LeaderEpochCache(fs, dir_path)
        self.log_start_offset = 0
        self.log_end_offset = 0
        self.recovery_point = 0
        self._size_in_bytes = 0
        self._fd_cache = DescriptorCache(_MAX_OPEN_ROLLED_SEGMENTS)
        self._closed = False
        # Bumped (under _checkpoint_lock) by anything that can make a prepared ticket's target
        # or captured index entries wrong: truncation, a cleaner swap, close, delete.  Tickets
        # of an old generation write no index entries, and complete_flush ignores them.
        self._generation = 0
        # Bumped when a file is created in or removed from the directory; a ticket fsyncs the
        # directory when its captured value is above the last synced one.
        self._dir_generation = 0
        self._dir_synced_generation = 0
        self._checkpoint_lock = threading.Lock()
        self._persisted_recovery_point = -1
        self._last_recovery_point_persist_ms: int | None = None
        # Log cleaner state (compacted topics; see cleaner.py), in memory only: segments from
        # the first dirty offset on have not been cleaned since open; a pass is also due once
        # the earliest delete horizon of a batch still holding tombstones has passed.
        self.cleaner_first_dirty_offset = 0
        self.cleaner_delete_horizon_ms: int | None = None

    # ------------------------------------------------------------------------------------------
    # opening and recovery
    # ------------------------------------------------------------------------------------------
    @classmethod
    def open(
        cls, dir_path: str, config: LogConfig, now_ms: int, *, fs: FileSystem = LOCAL_FS
    ) -> PartitionLog:
        """Opens the log in ``dir_path``, creating it or recovering it after a crash."""
        log = cls(fs, dir_path, config)
        if fs.makedirs(dir_path):
            fs.fsync_dir(os.path.dirname(os.path.abspath(dir_path)))
        log._recover(now_ms)
        return log

    def _path(self, name: str) -> str:
        return os.path.join(self.dir_path, name)

    def _recover(self, now_ms: int) -> None:
        """Loads the segments (LogLoader: recovery of the tail after a crash), then makes the
        result durable: epochs, indexes, the directory and both checkpoints."""
        fs = self._fs
        loader = LogLoader(fs, self.dir_path, self.config, self._epoch_cache)
        loaded = loader.load(self._add_segment)
        self.log_start_offset = loaded.log_start_offset
        recovered = loaded.recovered
        epochs_changed = loaded.epochs_changed
        if not self._segments:
            self._add_segment(self._create_segment(self.log_start_offset, now_ms))
        self.log_end_offset = self._segments[-1].next_offset
        self.log_start_offset = max(self.log_start_offset, self._segments[0].base_offset)
        if self.log_start_offset > self.log_end_offset:
            logger.warning(
                "%s: log start offset %d beyond the recovered log end %d: starting over at it",
                self.dir_path,
                self.log_start_offset,
                self.log_end_offset,
            )
            self._replace_all_segments(self.log_start_offset, now_ms)
            recovered = list(self._segments)
        active = self._segments[-1]
        active.ensure_indexes_loaded()
        active.init_rolling_base(now_ms)

        if (
            not loaded.have_epochs
            and len(recovered) < len(self._segments)
            and self.log_end_offset > self.log_start_offset
        ):
            # Recovery re-seeded epochs only from the segments it scanned.
            epochs_changed |= loader.rebuild_epoch_cache(self.iter_batch_headers(self.log_start_offset))
        epochs_changed |= self._epoch_cache.truncate_from_end(self.log_end_offset, flush=False)
        epochs_changed |= self._epoch_cache.truncate_from_start(self.log_start_offset, flush=False)
        if epochs_changed or not loaded.have_epochs:
            self._epoch_cache.flush()

        for segment in recovered:
            self._sync_segment(segment)
        # The clean-shutdown marker goes durably before anything new is written: a crash from now
        # on must trigger recovery of the tail.
        fs.unlink(self._path(CLEAN_SHUTDOWN_FILE))
        fs.fsync_dir(self.dir_path)
        self._dir_synced_generation = self._dir_generation
        self.recovery_point = self.log_end_offset
        self._write_offset_checkpoint(LOG_START_OFFSET_FILE, self.log_start_offset)
        self._write_recovery_point_now(now_ms)
        # Recovery read rolled segments; an idle log holds only its active segment open.
        self._fd_cache.release_all()

    # ------------------------------------------------------------------------------------------
    # small checkpoint files (format and reading: log_loader)
    # ------------------------------------------------------------------------------------------
    def _write_offset_checkpoint(self, name: str, offset: int) -> None:
        write_offset_checkpoint(self._fs, self.dir_path, name, offset)

    def _safe_recovery_point(self, offset: int) -> int:
        """The value that may be persisted for a durable offset: not beyond the first segment
        whose index files are not yet synced, because recovery trusts indexes below it."""
        for segment in self._segments:
            if not segment.indexes_synced:
                return min(offset, segment.base_offset)
        return offset

    def _persist_recovery_point(self, offset: int, generation: int) -> None:
        """Writes the recovery-point file unless a truncation since made ``offset`` unsafe.
        Called from flush tickets on a worker thread, hence the lock."""
        with self._checkpoint_lock:
            if generation != self._generation or offset <= self._persisted_recovery_point:
                return
            self._write_offset_checkpoint(RECOVERY_POINT_FILE, offset)
            self._persisted_recovery_point = offset

    def _write_recovery_point_now(self, now_ms: int | None) -> None:
        offset = self._safe_recovery_point(self.recovery_point)
        with self._checkpoint_lock:
            self._write_offset_checkpoint(RECOVERY_POINT_FILE, offset)
            self._persisted_recovery_point = offset
        if now_ms is not None:
            self._last_recovery_point_persist_ms = now_ms

    def checkpoint_recovery_point(self, now_ms: int | None = None) -> None:
        """Persists the recovery point now (loop thread, blocking: a few fsyncs)."""
        self._write_recovery_point_now(now_ms)

    # ------------------------------------------------------------------------------------------
    # state
    # ------------------------------------------------------------------------------------------
    @property
    def latest_epoch(self) -> int | None:
        return self._epoch_cache.latest_epoch

    @property
    def epoch_entries(self) -> list[tuple[int, int]]:
        """(leader epoch, start offset) pairs of the epoch cache, oldest first."""
        return self._epoch_cache.entries()

    @property
    def size_in_bytes(self) -> int:
        return self._size_in_bytes

    @property
    def segment_count(self) -> int:
        return len(self._segments)

    @property
    def segment_base_offsets(self) -> list[int]:
        return list(self._base_offsets)

    @property
    def active_segment(self) -> LogSegment:
        return self._segments[-1]

    def _add_segment(self, segment: LogSegment) -> None:
        """Appends ``segment`` as the new active segment."""
        if self._segments:
            self._make_evictable(self._segments[-1])
        segment.fd_cache = None
        self._segments.append(segment)
        self._base_offsets.append(segment.base_offset)
        self._size_in_bytes += segment.size

    def _make_evictable(self, segment: LogSegment) -> None:
        """A segment that is not (or no longer) active: its descriptor may be closed when idle."""
        segment.fd_cache = self._fd_cache
        if segment.has_open_descriptor:
            self._fd_cache.opened(segment)

    def _pin_active(self) -> None:
        active = self._segments[-1]
        self._fd_cache.forget(active)
        active.fd_cache = None

    def _create_segment(self, base_offset: int, now_ms: int) -> LogSegment:
        segment = LogSegment.create(
            self._fs,
            self.dir_path,
            base_offset,
            self.config.index_interval_bytes,
            self.config.max_index_entries,
            now_ms,
        )
        self._dir_generation += 1
        return segment

    def _sync_segment(self, segment: LogSegment) -> None:
        self._fs.fdatasync(segment.fd)
        segment.sync_indexes()

    # ------------------------------------------------------------------------------------------
    # appending
    # ------------------------------------------------------------------------------------------
    def append(
        self, batch: bytearray, header: BatchHeader, leader_epoch: int, now_ms: int
    ) -> tuple[int, int]:
        """Leader append of one validated batch: assigns offsets and the leader epoch in place,
        applies LogAppendTime if configured, writes (no fsync).  Returns (base, last) offset."""
        self._check_open()
        size = len(batch)
        if size != header.batch_length + 12:
            invariant(False, f"batch of {size} bytes but its header says {header.size_in_bytes}")
        if size > self.config.max_message_bytes:
            raise KafkaError(
                ErrorCode.MESSAGE_TOO_LARGE,
                f"batch of {size} bytes exceeds max.message.bytes {self.config.max_message_bytes}",
            )
        latest = self._epoch_cache.latest_epoch
        if latest is not None and 0 <= leader_epoch < latest:
            invariant(False, f"leader epoch {leader_epoch} below the log's latest epoch {latest}")
        base_offset = self.log_end_offset
        stamp_batch(batch, base_offset, leader_epoch)
        header = header._replace(base_offset=base_offset, partition_leader_epoch=leader_epoch)
        if self.config.log_append_time:
            set_log_append_time(batch, now_ms)
            header = header._replace(attributes=header.attributes | TIMESTAMP_TYPE_MASK, max_timestamp=now_ms)
        if leader_epoch >= 0 and latest != leader_epoch:
            # Before the data, as Kafka does: the epoch's start must never be missing from the
            # cache while its batches are in the log.
            self._epoch_cache.assign(leader_epoch, base_offset)
        self._append_to_segment(batch, header, now_ms)
        return base_offset, header.last_offset

    def append_as_follower(self, records, now_ms: int) -> tuple[int, int] | None:
        """Follower append of batches fetched from the leader, offsets and epochs as they are.

        Validates each batch's CRC; a truncated trailing batch (normal at the end of a fetch
        response) is ignored.  Returns (first base offset, last offset) or None if no complete
        batch was present.
        """
        self._check_open()
        view = memoryview(records)
        first = last = None
        for position, header in iter_batch_headers(view):
            if not batch_crc_is_valid(view, position, header):
                raise CorruptRecordError(f"replicated batch at offset {header.base_offset} fails its CRC-32C")
            if header.base_offset < self.log_end_offset:
                raise KafkaError(
                    ErrorCode.INVALID_RECORD,
                    f"replicated batch at offset {header.base_offset} below log end offset {self.log_end_offset}",
                )
            epoch = header.partition_leader_epoch
            latest = self._epoch_cache.latest_epoch
            if epoch >= 0 and (latest is None or epoch > latest):
                self._epoch_cache.assign(epoch, header.base_offset)
            self._append_to_segment(view[position : position + header.size_in_bytes], header, now_ms)
            if first is None:
                first = header.base_offset
            last = header.last_offset
        return None if first is None else (first, last)

    def _append_to_segment(self, batch, header: BatchHeader, now_ms: int) -> None:
        active = self._segments[-1]
        if not active.can_hold(header, self.config.segment_bytes) or self._time_to_roll(active, now_ms):
            active = self._roll(header.base_offset, now_ms)
        active.ensure_indexes_loaded()
        if active.size == 0:
            # Time-based rolling counts from the segment's first append.
            active.rolling_base_ms = now_ms
        try:
            active.append(batch, header)
        except OSError as exc:
            raise KafkaError(
                ErrorCode.KAFKA_STORAGE_ERROR, f"write to {active.log_path} failed: {exc}"
            ) from exc
        self._size_in_bytes += header.size_in_bytes
        self.log_end_offset = active.next_offset

    def assign_epoch_start(self, leader_epoch: int) -> None:
        """A new leader caches (epoch, log end offset) before any write (KAFKA-7415)."""
        self._epoch_cache.assign(leader_epoch, self.log_end_offset)

    # ------------------------------------------------------------------------------------------
    # rolling
    # ------------------------------------------------------------------------------------------
    def _time_to_roll(self, segment: LogSegment, now_ms: int) -> bool:
        if segment.size == 0:
            return False
        jitter_ms = 0
        if self.config.segment_jitter_ms:
            # Deterministic per segment, so a restart does not change when a segment rolls.
            jitter_ms = (segment.base_offset * 2654435761) % (self.config.segment_jitter_ms + 1)
        return now_ms - segment.rolling_base_ms > self.config.segment_ms - jitter_ms

    def maybe_roll(self, now_ms: int) -> bool:
        """Time-based roll for a periodic task: rolls if the active segment is old enough."""
        self._check_open()
        if not self._time_to_roll(self._segments[-1], now_ms):
            return False
        self._roll(self.log_end_offset, now_ms)
        return True

    def _roll(self, base_offset: int, now_ms: int) -> LogSegment:
        old = self._segments[-1]
        if old.size == 0:
            # An empty active segment is reused rather than left as an empty file in the middle.
            invariant(old.base_offset == base_offset, "empty active segment must start at the log end")
            return old
        old.finish()
        segment = self._create_segment(base_offset, now_ms)
        self._add_segment(segment)
        return segment

    # ------------------------------------------------------------------------------------------
    # reading
    # ------------------------------------------------------------------------------------------
    def _check_range(self, offset: int) -> None:
        if offset < self.log_start_offset or offset > self.log_end_offset:
            raise OffsetOutOfRangeError(
                f"offset {offset} outside [{self.log_start_offset}, {self.log_end_offset}] of {self.dir_path}"
            )

    def read(self, fetch_offset: int, max_bytes: int, max_offset: int, min_one_batch: bool = True) -> bytes:
        """Whole batches from the one containing ``fetch_offset``: only batches whose last
        offset is below ``max_offset`` (the high watermark, exclusive), at most ``max_bytes`` in
        total except that the first batch is returned whole when ``min_one_batch``.  May span
        segments.  b"" when nothing is visible."""
        self._check_open()
        self._check_range(fetch_offset)
        max_offset = min(max_offset, self.log_end_offset)
        if fetch_offset >= max_offset:
            return b""
        chunks = []
        budget = max_bytes
        take_first = min_one_batch
        i = bisect_right(self._base_offsets, fetch_offset) - 1
        while i < len(self._segments):
            segment = self._segments[i]
            found = segment.find_batch(fetch_offset)
            i += 1
            if found is None:
                continue
            start, first = found
            end = segment.visible_end(start, first, budget, max_offset, take_first)
            if end > start:
                chunks.append(segment.read_at(start, end - start))
                budget -= end - start
                take_first = False
            if end < segment.size or budget <= 0:
                break
        return b"".join(chunks)

    def iter_batch_headers(self, start_offset: int = 0) -> Iterator[BatchHeader]:
        """Headers of every batch whose last offset is >= ``start_offset`` (for rebuilding
        producer state).  Do not append or truncate while iterating."""
        i = max(bisect_right(self._base_offsets, start_offset) - 1, 0)
        for segment in self._segments[i:]:
            if segment.next_offset <= start_offset:
                continue
            position = 0
            if segment.base_offset < start_offset:
                found = segment.find_batch(start_offset)
                if found is None:
                    continue
                position = found[0]
            for _, header in segment.iter_headers(position, _ITER_CHUNK_BYTES):
                if header.last_offset >= start_offset:
                    yield header

    def offset_for_timestamp(
        self, timestamp_ms: int, max_offset: int | None = None
    ) -> tuple[int, int, int] | None:
        """The first record with timestamp >= ``timestamp_ms`` (and offset below ``max_offset``
        if given): (offset, timestamp, leader_epoch), or None.  Only batches that may hold it
        are read and decoded."""
        self._check_open()
        for segment in self._segments:
            if segment.max_timestamp < timestamp_ms or segment.next_offset <= self.log_start_offset:
                continue
            segment.ensure_indexes_loaded()
            below = segment.time_index.lookup_below(timestamp_ms)
            start_offset = max(segment.base_offset if below is None else below, self.log_start_offset)
            found = segment.find_batch(start_offset)
            if found is None:
                continue
            for position, header in segment.iter_headers(found[0]):
                if max_offset is not None and header.base_offset >= max_offset:
                    return None
                if header.max_timestamp < timestamp_ms or header.last_offset < self.log_start_offset:
                    continue
                batch = segment.read_at(position, header.size_in_bytes)
                hit = find_first_record_at_or_after(batch, timestamp_ms, min_offset=self.log_start_offset)
                if hit is not None:
                    if max_offset is not None and hit[0] >= max_offset:
                        return None
                    return hit[0], hit[1], header.partition_leader_epoch
        return None

    def max_timestamp_and_offset(self) -> tuple[int, int, int] | None:
        """The record with the largest timestamp (ListOffsets MAX_TIMESTAMP, -3):
        (timestamp, offset, leader_epoch), or None for an empty log."""
        self._check_open()
        best = None
        for segment in self._segments:
            if segment.next_offset > self.log_start_offset and segment.max_timestamp >= 0:
                if best is None or segment.max_timestamp > best.max_timestamp:
                    best = segment
        if best is None:
            return None
        found = best.find_batch(best.offset_of_max_timestamp)
        if found is None:
            return None
        position, header = found
        hit = find_first_record_at_or_after(best.read_at(position, header.size_in_bytes), best.max_timestamp)
        if hit is None:  # the header's maxTimestamp exceeds every record's (a client's lie)
            return header.max_timestamp, header.last_offset, header.partition_leader_epoch
        return hit[1], hit[0], header.partition_leader_epoch

    def end_offset_for_epoch(self, leader_epoch: int) -> tuple[int, int]:
        """(largest epoch <= leader_epoch, its end offset) with Kafka's semantics; (-1, -1) if unknown."""
        return self._epoch_cache.end_offset_for(leader_epoch, self.log_end_offset)

    # ------------------------------------------------------------------------------------------
    # flushing (group commit)
    # ------------------------------------------------------------------------------------------
    def prepare_flush(self, now_ms: int | None = None) -> FlushTicket | None:
        """Loop thread: captures what must be fsynced to make the current log end durable.

        Returns None when there is nothing to do.  With ``now_ms``, the ticket also rewrites the
        recovery-point file once every ``recovery_point_checkpoint_interval_ms``.
        """
        self._check_open()
        unsynced_indexes = [s for s in self._segments[:-1] if not s.indexes_synced]
        dir_dirty = self._dir_generation != self._dir_synced_generation
        if self.recovery_point >= self.log_end_offset and not unsynced_indexes and not dir_dirty:
            return None
        ticket = FlushTicket(self, self.log_end_offset)
        fs = self._fs
        for segment in self._segments:
            if segment.next_offset > self.recovery_point:
                ticket._data_fds.append(fs.dup(segment.fd))
                ticket._data_segments.append(segment)
        for segment in unsynced_indexes:
            for index in (segment.offset_index, segment.time_index):
                ticket._index_writes.append((index, *index.pending()))
            ticket._index_segments.append(segment)
        ticket._sync_dir = dir_dirty
        if now_ms is not None and (
            self._last_recovery_point_persist_ms is None
            or now_ms - self._last_recovery_point_persist_ms
            >= self.config.recovery_point_checkpoint_interval_ms
        ):
            # The active segment's indexes are never synced by a ticket, so the persisted value
            # stops at its base: recovery then re-validates (and re-indexes) the active segment.
            safe = ticket.target_offset
            for segment in self._segments:
                if not segment.indexes_synced and segment not in ticket._index_segments:
                    safe = min(safe, segment.base_offset)
                    break
            ticket._persist_offset = safe
            self._last_recovery_point_persist_ms = now_ms
        return ticket

    def complete_flush(self, ticket: FlushTicket) -> None:
        """Loop thread, after ``ticket.run()`` returned: publishes the new recovery point."""
        ticket.close()
        for segment in ticket._data_segments:
            # A rolled segment is written for the last time before its final flush: idle now.
            if segment.fd_cache is not None:
                self._fd_cache.release(segment)
        if not ticket.done or ticket._generation != self._generation or self._closed:
            return
        self.recovery_point = max(self.recovery_point, min(ticket.target_offset, self.log_end_offset))
        for (index, start, count, _), written in zip(
            ticket._index_writes, ticket._index_written, strict=True
        ):
            if written:
                index.mark_written(start, count)
        for segment in ticket._index_segments:
            # Entries added since prepare_flush (none are expected for a rolled segment) or a
            # file that vanished keep the segment unsynced.
            indexes = (segment.offset_index, segment.time_index)
            if all(index.written_count == len(index) for index in indexes):
                segment.indexes_synced = True
        self._dir_synced_generation = max(self._dir_synced_generation, ticket._dir_generation)

    def flush(self) -> None:
        """Synchronous flush of everything (tests, shutdown)."""
        ticket = self.prepare_flush()
        if ticket is not None:
            ticket.run()
            self.complete_flush(ticket)

    # ------------------------------------------------------------------------------------------
    # truncation and retention
    # ------------------------------------------------------------------------------------------
    def truncate_to(self, offset: int) -> None:
        """Removes everything at or above ``offset`` (follower truncation).  A batch containing
        ``offset`` is removed whole, so log_end_offset may end below ``offset``.  Below the log
        start offset the log is emptied and restarts at ``offset``.  The truncation is fsynced
        before returning (it is rare, and a truncation that a crash undoes would resurrect
        divergent data)."""
        self._check_open()
        if offset >= self.log_end_offset:
            return
        self.void_flush_tickets()
        if offset < self.log_start_offset:
            self._truncate_fully_and_start_at(offset)
            return
        removed = False
        while len(self._segments) > 1 and self._segments[-1].base_offset > offset:
            segment = self._segments.pop()
            self._base_offsets.pop()
            self._size_in_bytes -= segment.size
            segment.delete_files()
            removed = True
        self._pin_active()
        active = self._segments[-1]
        before = active.size
        active.truncate_to(offset)
        self._size_in_bytes -= before - active.size
        self.log_end_offset = active.next_offset
        self._epoch_cache.truncate_from_end(self.log_end_offset)
        self._fs.fdatasync(active.fd)
        if removed:
            self._dir_generation += 1
            self._fs.fsync_dir(self.dir_path)
            self._dir_synced_generation = self._dir_generation
        self._after_truncation()

    def reset_to(self, offset: int) -> None:
        """Empties the log and restarts it at ``offset`` (a follower whose leader deleted, by retention, every
        offset beyond our log end: nothing we hold is still on the leader).  Fsynced before returning."""
        self._check_open()
        self.void_flush_tickets()
        self._truncate_fully_and_start_at(offset)

    def void_flush_tickets(self) -> None:
        """Before files are truncated or replaced: tickets prepared earlier must neither write
        their captured index entries nor publish their target (see FlushTicket)."""
        with self._checkpoint_lock:
            self._generation += 1

    def _after_truncation(self) -> None:
        with self._checkpoint_lock:
            self._generation += 1
            self.recovery_point = min(self.recovery_point, self.log_end_offset)
            safe = self._safe_recovery_point(self.recovery_point)
            if self._persisted_recovery_point > safe:
                self._write_offset_checkpoint(RECOVERY_POINT_FILE, safe)
                self._persisted_recovery_point = safe

    def _truncate_fully_and_start_at(self, offset: int) -> None:
        self._replace_all_segments(offset, 0)
        self._epoch_cache.clear()
        self._write_offset_checkpoint(LOG_START_OFFSET_FILE, offset)
        self._fs.fsync_dir(self.dir_path)
        self._dir_synced_generation = self._dir_generation
        self._after_truncation()

    def _replace_all_segments(self, offset: int, now_ms: int) -> None:
        for segment in self._segments:
            segment.delete_files()
        self._segments = []
        self._base_offsets = []
        self._size_in_bytes = 0
        self._add_segment(self._create_segment(offset, now_ms))
        self.log_start_offset = offset
        self.log_end_offset = offset
        self.recovery_point = min(self.recovery_point, offset)

    def delete_old_segments(self, now_ms: int, high_watermark: int | None = None) -> int:
        """Retention: deletes the oldest segments whose largest timestamp is older than
        retention.ms, then while the log exceeds retention.bytes.  Never the active segment,
        never data at or above the recovery point (or the high watermark, if given).  Advances
        log_start_offset; returns the number of segments deleted.  Only with cleanup.policy
        "delete": a compact-only topic keeps every key's latest record forever, as Kafka does."""
        self._check_open()
        if not self.config.delete:
            return 0
        limit = self.recovery_point if high_watermark is None else min(self.recovery_point, high_watermark)
        doomed = 0
        retention_ms = self.config.retention_ms
        excess_bytes = (
            self._size_in_bytes - self.config.retention_bytes if self.config.retention_bytes >= 0 else 0
        )
        for segment in self._segments[:-1]:
            if segment.next_offset > limit:
                break
            expired = retention_ms >= 0 and now_ms - segment.largest_timestamp() > retention_ms
            oversized = self.config.retention_bytes >= 0 and excess_bytes - segment.size >= 0
            if not (expired or oversized):
                break
            excess_bytes -= segment.size
            doomed += 1
        if doomed:
            self._delete_first_segments(doomed)
        return doomed

    # ------------------------------------------------------------------------------------------
    # compaction (cleanup.policy=compact; the work itself is in cleaner.py)
    # ------------------------------------------------------------------------------------------
    def prepare_cleaning(
        self, now_ms: int, high_watermark: int | None = None, *, force: bool = False
    ) -> CleanTask | None:
        """Loop thread: the cleaning pass due now (run it with ``task.run()`` on a worker
        thread, then call ``complete_cleaning``), or None."""
        self._check_open()
        return prepare_cleaning(self, now_ms, high_watermark, force=force)

    def complete_cleaning(self, task: CleanTask) -> int:
        """Loop thread: swaps the cleaned segments in; returns how many were swapped."""
        return complete_cleaning(self, task)

    # The cleaner's side of a pass, so that it never touches the log's own state: it asks for a plan,
    # and the log applies the result.
    def cleaning_plan(self, high_watermark: int | None = None) -> CleaningPlan | None:
        """The rolled segments a pass may rewrite: wholly below the recovery point and the high
        watermark (only durable data), with the generation the swap must find unchanged.  None if
        the log is closed or not compacted."""
        if self._closed or not self.config.compact:
            return None
        limit = self.recovery_point if high_watermark is None else min(self.recovery_point, high_watermark)
        segments: list[LogSegment] = []
        for segment in self._segments[:-1]:
            if segment.next_offset > limit:
                break
            segments.append(segment)
        end_offsets = tuple(self._segments[i + 1].base_offset for i in range(len(segments)))
        return CleaningPlan(self._fs, self.dir_path, self.config, self._generation, tuple(segments), end_offsets,
                            self.cleaner_first_dirty_offset, self.cleaner_delete_horizon_ms)

    def unchanged_segments(self, generation: int, captured: list[tuple[LogSegment, int]]) -> list[LogSegment]:
        """Of the (segment, size) pairs a pass captured, those still rolled segments of this log at
        that size; none once the generation moved on (truncation, close) since the plan."""
        if generation != self._generation or self._closed:
            return []
        rolled = {id(segment) for segment in self._segments[:-1]}
        return [segment for segment, size in captured if id(segment) in rolled and segment.size == size]

    def swap_segment(self, old: LogSegment, replacement: LogSegment) -> None:
        """Puts a cleaned copy (same base offset, its files already moved into place) where ``old``
        was, and closes ``old``.  Call ``void_flush_tickets`` before the files move."""
        index = self._segments.index(old)
        old.close()
        self._make_evictable(replacement)
        self._fd_cache.release(replacement)
        self._segments[index] = replacement
        self._size_in_bytes += replacement.size - old.size

    def record_cleaning(self, end_offset: int, next_delete_horizon_ms: int | None) -> None:
        """A pass cleaned everything below ``end_offset``; the next is due by the dirty ratio or at
        ``next_delete_horizon_ms`` (tombstones to drop)."""
        self.cleaner_first_dirty_offset = max(self.cleaner_first_dirty_offset, end_offset)
        self.cleaner_delete_horizon_ms = next_delete_horizon_ms

    def _delete_first_segments(self, count: int) -> None:
        doomed = self._segments[:count]
        new_start = self._segments[count].base_offset
        # Persist the new start first: a crash before the unlinks then deletes them on open.
        self.log_start_offset = max(self.log_start_offset, new_start)
        self._write_offset_checkpoint(LOG_START_OFFSET_FILE, self.log_start_offset)
        del self._segments[:count]
        del self._base_offsets[:count]
        for segment in doomed:
            self._size_in_bytes -= segment.size
            logger.info("%s: retention deletes segment %020d", self.dir_path, segment.base_offset)
            segment.delete_files()
        self._dir_generation += 1
        self._epoch_cache.truncate_from_start(self.log_start_offset)

    # ------------------------------------------------------------------------------------------
    # closing
    # ------------------------------------------------------------------------------------------
    def _check_open(self) -> None:
        if self._closed:
            invariant(False, f"log {self.dir_path} is closed")

    def close(self) -> None:
        """Clean shutdown: fsync everything, record it, release descriptors.  The next open
        then skips recovery."""
        if self._closed:
            return
        self.flush()
        for segment in self._segments:
            if not segment.indexes_synced:
                self._sync_segment(segment)
        self.recovery_point = self.log_end_offset
        self._write_recovery_point_now(None)
        self._fs.write_file_atomically(self._path(CLEAN_SHUTDOWN_FILE), b"")
        self._release()

    def abandon(self) -> None:
        """Releases descriptors without flushing or recording a clean shutdown: what a crash
        leaves behind.  For a log whose directory failed, and for crash tests."""
        if not self._closed:
            self._release()

    def _release(self) -> None:
        with self._checkpoint_lock:
            self._generation += 1
            self._closed = True
        for segment in self._segments:
            segment.close()

    def delete(self) -> None:
        """Removes the partition's directory and everything in it."""
        if not self._closed:
            self._release()
        self._fs.rmtree(self.dir_path)
        parent = os.path.dirname(os.path.abspath(self.dir_path))
        if self._fs.exists(parent):
            self._fs.fsync_dir(parent)
