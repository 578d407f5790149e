"""Opening a partition's directory: which segments there are and how far each can be trusted, as Kafka's
LogLoader does before the live log (``partition_log``) takes them over.

A log that was closed cleanly (``clean-shutdown`` present) is trusted as it is.  After a crash, segments
wholly below the persisted recovery point are trusted (their index files were synced before that point was
written), and the rest are re-validated batch by batch (structure, offsets, CRC-32C): the log is cut at the
first bad or torn batch and everything after it is deleted; a segment that overlaps its predecessor is
deleted too.  Before that, an interrupted cleaner pass is finished or discarded, temp files and orphan
indexes are removed, and segments wholly below the checkpointed log start offset (retention cut short by a
crash) are deleted.  Batches read during recovery re-seed the leader-epoch cache.

The two offset checkpoints (``log-start-offset-checkpoint``, ``recovery-point-offset-checkpoint``) use the
format of Kafka's per-directory checkpoint files (version, count, then ``<partition dir> <offset>``), written
atomically; they are read here and written by the live log too.
"""

from __future__ import annotations

import logging
import os
from bisect import bisect_right
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from cluster.storage.cleaner import finish_interrupted_cleaning
from cluster.storage.config import LogConfig
from cluster.storage.epoch_cache import LeaderEpochCache
from cluster.storage.fs import FileSystem
from cluster.storage.segment import INDEX_SUFFIX, LOG_SUFFIX, TIME_INDEX_SUFFIX, LogSegment, segment_file_name
from cluster.wire.records import BatchHeader

__all__ = [
    "LogLoader",
    "LoadedLog",
    "read_offset_checkpoint",
    "write_offset_checkpoint",
    "LOG_START_OFFSET_FILE",
    "RECOVERY_POINT_FILE",
    "CLEAN_SHUTDOWN_FILE",
]

logger = logging.getLogger("cluster.storage")

LOG_START_OFFSET_FILE = "log-start-offset-checkpoint"
RECOVERY_POINT_FILE = "recovery-point-offset-checkpoint"
CLEAN_SHUTDOWN_FILE = "clean-shutdown"
_SEGMENT_SUFFIXES = (LOG_SUFFIX, INDEX_SUFFIX, TIME_INDEX_SUFFIX)


def read_offset_checkpoint(fs: FileSystem, dir_path: str, name: str) -> int | None:
    path = os.path.join(dir_path, name)
    data = fs.read_file(path)
    if data is None:
        return None
    try:
        lines = data.decode("ascii").splitlines()
        if lines[0].strip() != "0" or int(lines[1]) != 1 or len(lines) != 3:
            raise ValueError("unexpected layout")
        offset = int(lines[2].split()[-1])
        if offset < 0:
            raise ValueError("negative offset")
        return offset
    except (ValueError, IndexError, UnicodeDecodeError) as exc:
        logger.warning("ignoring malformed %s: %s", path, exc)
        return None


def write_offset_checkpoint(fs: FileSystem, dir_path: str, name: str, offset: int) -> None:
    # Kafka's checkpoint layout (version, count, "<topic-partition> <offset>") so tools and
    # humans read it the same way.
    partition = os.path.basename(os.path.normpath(dir_path))
    fs.write_file_atomically(os.path.join(dir_path, name), f"0\n1\n{partition} {offset}\n".encode("ascii"))


@dataclass(frozen=True)
class LoadedLog:
    """What ``LogLoader.load`` found (the segments themselves went to its ``add_segment``)."""

    recovered: list[LogSegment]  # re-validated segments: their data and indexes still need an fsync
    log_start_offset: int  # as checkpointed (0 without a checkpoint)
    have_epochs: bool  # the leader-epoch checkpoint was there
    epochs_changed: bool  # recovery re-seeded epochs from batches


class LogLoader:
    """Loads the segments of one partition directory, recovering its tail after a crash."""

    def __init__(self, fs: FileSystem, dir_path: str, config: LogConfig, epoch_cache: LeaderEpochCache) -> None:
        self._fs = fs
        self.dir_path = dir_path
        self.config = config
        self._epoch_cache = epoch_cache

    def _path(self, name: str) -> str:
        return os.path.join(self.dir_path, name)

    def load(self, add_segment: Callable[[LogSegment], None]) -> LoadedLog:
        """Hands every segment to keep, oldest first, to ``add_segment`` as soon as it is loaded (so the
        log's descriptor cache bounds what stays open while later segments are recovered)."""
        fs = self._fs
        finish_interrupted_cleaning(fs, self.dir_path)
        bases = self._scan_directory()
        clean = fs.exists(self._path(CLEAN_SHUTDOWN_FILE))
        log_start_offset = read_offset_checkpoint(fs, self.dir_path, LOG_START_OFFSET_FILE) or 0
        recovery_point = read_offset_checkpoint(fs, self.dir_path, RECOVERY_POINT_FILE)
        have_epochs = self._epoch_cache.load()
        bases = self._drop_segments_below_log_start(bases, log_start_offset)

        if clean:
            first_recovered = len(bases)
        elif recovery_point is None:
            first_recovered = 0
        else:
            first_recovered = max(bisect_right(bases, recovery_point) - 1, 0)
        recovered: list[LogSegment] = []
        previous: LogSegment | None = None
        epochs_changed = False

        def on_batch(header: BatchHeader) -> None:
            nonlocal epochs_changed
            # As Kafka's LogSegment.recover: batches re-seed the cache with increasing epochs.
            epochs_changed |= self._seed_epoch(header)

        for i, base in enumerate(bases):
            segment = LogSegment(
                fs, self.dir_path, base, self.config.index_interval_bytes, self.config.max_index_entries
            )
            previous_end = previous.next_offset if previous is not None else None
            if previous_end is not None and base < previous_end:
                logger.warning(
                    "%s overlaps the previous segment (ends at %d): deleting it",
                    segment.log_path,
                    previous_end,
                )
                self._delete_segments_from(bases, i, segment)
                break
            reason = None if i >= first_recovered else segment.load_tail()
            if reason is not None:
                logger.warning(
                    "recovering %s although below the recovery point: %s", segment.log_path, reason
                )
            truncated = False
            if i >= first_recovered or reason is not None:
                truncated = segment.recover(on_batch)
                recovered.append(segment)
            else:
                # Below the persisted recovery point: its index files were synced before that
                # point was written (see PartitionLog._safe_recovery_point).
                segment.indexes_synced = True
            add_segment(segment)
            previous = segment
            if truncated:
                self._delete_segments_from(bases, i + 1, None)
                break
        return LoadedLog(recovered, log_start_offset, have_epochs, epochs_changed)

    def _seed_epoch(self, header: BatchHeader) -> bool:
        epoch = header.partition_leader_epoch
        latest = self._epoch_cache.latest_epoch
        if epoch >= 0 and (latest is None or epoch > latest):
            return self._epoch_cache.assign(epoch, header.base_offset, flush=False)
        return False

    def rebuild_epoch_cache(self, headers: Iterable[BatchHeader]) -> bool:
        """The leader-epoch checkpoint was missing and recovery scanned only the tail: rebuilds the cache
        from every batch header from the log start on (not flushed)."""
        logger.warning("%s: leader-epoch checkpoint missing; rebuilding it from batch headers", self.dir_path)
        self._epoch_cache.clear(flush=False)
        changed = True
        for header in headers:
            changed |= self._seed_epoch(header)
        return changed

    def _scan_directory(self) -> list[int]:
        """Sorted base offsets of the segments present; removes temp files and orphan indexes."""
        bases = set()
        index_files = []
        for name in self._fs.listdir(self.dir_path):
            if name.endswith(self._fs.tmp_suffix):
                self._fs.unlink(self._path(name))
                continue
            stem, dot, suffix = name.partition(".")
            if not (len(stem) == 20 and stem.isdigit() and dot and "." + suffix in _SEGMENT_SUFFIXES):
                continue
            if name.endswith(LOG_SUFFIX):
                bases.add(int(stem))
            else:
                index_files.append((int(stem), name))
        for base, name in index_files:
            if base not in bases:
                logger.info("%s: removing orphan index %s", self.dir_path, name)
                self._fs.unlink(self._path(name))
        return sorted(bases)

    def _drop_segments_below_log_start(self, bases: list[int], log_start_offset: int) -> list[int]:
        """Segments wholly below the checkpointed log start offset (retention was cut short by a
        crash) are deleted; the last segment always stays."""
        keep_from = 0
        while keep_from + 1 < len(bases) and bases[keep_from + 1] <= log_start_offset:
            keep_from += 1
        for base in bases[:keep_from]:
            logger.info("%s: deleting segment %d below log start offset %d", self.dir_path, base, log_start_offset)
            self._delete_segment_files(base)
        return bases[keep_from:]

    def _delete_segments_from(self, bases: list[int], start: int, opened: LogSegment | None) -> None:
        if opened is not None:
            opened.delete_files()
        for base in bases[start:]:
            if opened is not None and base == opened.base_offset:
                continue
            logger.warning("%s: deleting segment %020d after the recovered log end", self.dir_path, base)
            self._delete_segment_files(base)

    def _delete_segment_files(self, base_offset: int) -> None:
        for suffix in _SEGMENT_SUFFIXES:
            self._fs.unlink(self._path(segment_file_name(base_offset, suffix)))
