"""The leader-epoch cache of one partition (Kafka's LeaderEpochFileCache and its checkpoint).

Replicas agree on where their logs diverge by comparing leader epochs, never high watermarks
(KIP-101, KIP-279; replication.md §2.6).  Each replica keeps, per leader epoch, the first offset
written in it; ``end_offset_for`` answers OffsetsForLeaderEpoch and the follower's
diverging-epoch check with Kafka's exact semantics.  Entries stay strictly increasing in both
epoch and start offset: assigning an entry first removes any later entry that conflicts.

The checkpoint file is Kafka's text format (version line ``0``, entry count, then ``epoch
start_offset`` lines), replaced atomically on every change.  Changes are rare (a new leader, a
truncation, retention), so writing synchronously is cheap enough and keeps the file exact.
"""

from __future__ import annotations

import logging
import os
from bisect import bisect_left, bisect_right

from cluster.storage.fs import FileSystem

__all__ = ["LeaderEpochCache", "EPOCH_CHECKPOINT_FILE", "UNDEFINED_EPOCH", "UNDEFINED_EPOCH_OFFSET"]

logger = logging.getLogger("cluster.storage")

EPOCH_CHECKPOINT_FILE = "leader-epoch-checkpoint"
UNDEFINED_EPOCH = -1
UNDEFINED_EPOCH_OFFSET = -1
_CHECKPOINT_VERSION = 0


class LeaderEpochCache:
    def __init__(self, fs: FileSystem, dir_path: str) -> None:
        self._fs = fs
        self.path = os.path.join(dir_path, EPOCH_CHECKPOINT_FILE)
        self._epochs: list[int] = []
        self._start_offsets: list[int] = []

    # -- persistence ---------------------------------------------------------------------------
    def load(self) -> bool:
        """Reads the checkpoint; returns False (and starts empty) if it is missing or malformed."""
        data = self._fs.read_file(self.path)
        if data is None:
            return False
        try:
            entries = parse_checkpoint(data)
        except ValueError as exc:
            logger.warning("ignoring malformed %s: %s", self.path, exc)
            return False
        self._epochs = []
        self._start_offsets = []
        for epoch, start_offset in entries:
            self._assign(epoch, start_offset)
        return True

    def flush(self) -> None:
        self._fs.write_file_atomically(self.path, format_checkpoint(self.entries()))

    # -- queries -------------------------------------------------------------------------------
    def entries(self) -> list[tuple[int, int]]:
        return list(zip(self._epochs, self._start_offsets, strict=True))

    @property
    def latest_epoch(self) -> int | None:
        return self._epochs[-1] if self._epochs else None

    @property
    def earliest_entry(self) -> tuple[int, int] | None:
        return (self._epochs[0], self._start_offsets[0]) if self._epochs else None

    def start_offset_of(self, epoch: int) -> int | None:
        i = bisect_left(self._epochs, epoch)
        return self._start_offsets[i] if i < len(self._epochs) and self._epochs[i] == epoch else None

    def epoch_for_offset(self, offset: int) -> int | None:
        """The epoch whose range contains ``offset`` (the last entry starting at or before it)."""
        i = bisect_right(self._start_offsets, offset) - 1
        return self._epochs[i] if i >= 0 else None

    def end_offset_for(self, requested_epoch: int, log_end_offset: int) -> tuple[int, int]:
        """(largest epoch <= requested, its end offset), as Kafka's endOffsetFor.

        The end offset is the start offset of the next larger epoch, or ``log_end_offset`` when
        the requested epoch is the latest.  An epoch below every cached one yields (requested,
        first start offset); an epoch above the latest, an undefined epoch or an empty cache
        yields (-1, -1).
        """
        if requested_epoch == UNDEFINED_EPOCH or not self._epochs:
            return UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET
        if requested_epoch == self._epochs[-1]:
            return requested_epoch, log_end_offset
        higher = bisect_right(self._epochs, requested_epoch)
        if higher == len(self._epochs):
            return UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET
        if higher == 0:
            return requested_epoch, self._start_offsets[0]
        return self._epochs[higher - 1], self._start_offsets[higher]

    # -- changes -------------------------------------------------------------------------------
    def assign(self, epoch: int, start_offset: int, *, flush: bool = True) -> bool:
        """Records that ``epoch`` starts at ``start_offset``; returns True if the cache changed.

        Re-assigning the latest epoch at a later offset is a no-op (its first offset is already
        known).  Otherwise entries with an epoch >= ``epoch`` or a start offset >=
        ``start_offset`` are removed first, keeping both columns strictly increasing.
        """
        if epoch < 0 or start_offset < 0:
            raise ValueError(f"invalid leader epoch entry ({epoch}, {start_offset})")
        changed = self._assign(epoch, start_offset)
        if changed and flush:
            self.flush()
        return changed

    def _assign(self, epoch: int, start_offset: int) -> bool:
        if self._epochs and self._epochs[-1] == epoch and self._start_offsets[-1] <= start_offset:
            return False
        removed = []
        while self._epochs and (self._epochs[-1] >= epoch or self._start_offsets[-1] >= start_offset):
            removed.append((self._epochs.pop(), self._start_offsets.pop()))
        if len(removed) > 1 or (removed and removed[0][1] != start_offset):
            logger.warning(
                "%s: new epoch entry (%d, %d) removed conflicting entries %s",
                self.path,
                epoch,
                start_offset,
                removed,
            )
        self._epochs.append(epoch)
        self._start_offsets.append(start_offset)
        return True

    def truncate_from_end(self, end_offset: int, *, flush: bool = True) -> bool:
        """Removes entries starting at or after ``end_offset`` (the log was truncated there)."""
        changed = False
        while self._start_offsets and self._start_offsets[-1] >= end_offset >= 0:
            self._epochs.pop()
            self._start_offsets.pop()
            changed = True
        if changed and flush:
            self.flush()
        return changed

    def truncate_from_start(self, start_offset: int, *, flush: bool = True) -> bool:
        """Drops entries wholly before ``start_offset``; the epoch covering it now starts there."""
        removed = bisect_right(self._start_offsets, start_offset)
        if removed == 0:
            return False
        if removed == 1 and self._start_offsets[0] == start_offset:
            return False
        kept_epoch = self._epochs[removed - 1]
        del self._epochs[:removed]
        del self._start_offsets[:removed]
        self._epochs.insert(0, kept_epoch)
        self._start_offsets.insert(0, start_offset)
        if flush:
            self.flush()
        return True

    def clear(self, *, flush: bool = True) -> None:
        self._epochs = []
        self._start_offsets = []
        if flush:
            self.flush()


def format_checkpoint(entries: list[tuple[int, int]]) -> bytes:
    lines = [str(_CHECKPOINT_VERSION), str(len(entries))]
    lines.extend(f"{epoch} {start_offset}" for epoch, start_offset in entries)
    return ("\n".join(lines) + "\n").encode("ascii")


def parse_checkpoint(data: bytes) -> list[tuple[int, int]]:
    """Parses Kafka's checkpoint text; raises ValueError on anything unexpected."""
    try:
        lines = data.decode("ascii").splitlines()
    except UnicodeDecodeError:
        raise ValueError("not ASCII text") from None
    if len(lines) < 2:
        raise ValueError("missing version or count line")
    if lines[0].strip() != str(_CHECKPOINT_VERSION):
        raise ValueError(f"unsupported version {lines[0]!r}")
    count = int(lines[1])
    if count < 0 or len(lines) - 2 != count:
        raise ValueError(f"count {count} does not match {len(lines) - 2} entry lines")
    entries = []
    for line in lines[2:]:
        parts = line.split()
        if len(parts) != 2:
            raise ValueError(f"malformed entry line {line!r}")
        epoch, start_offset = int(parts[0]), int(parts[1])
        if epoch < 0 or start_offset < 0:
            raise ValueError(f"negative entry {line!r}")
        entries.append((epoch, start_offset))
    return entries
