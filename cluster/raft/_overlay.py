"""The core's view of its log: the shell's durable log plus the changes not yet handed back by ``advance``.

Why: the core decides to append, truncate and install snapshots at any step, but only the shell writes
storage, and only between ``poll`` (which hands out a ``Ready``) and ``advance`` (which says it is done).
Until then the core must read its own pending changes.  This is etcd raft's ``unstable`` log: the logical
log is

    durable entries [log_start, stable_end)  +  unstable entries [stable_end, log_end)

where ``stable_end <= view.log_end_offset`` (a pending truncation lowers it).  A pending snapshot install
replaces the durable part entirely: the logical log then starts at the snapshot's end.

Contract with the shell (via ``Ready``): install the snapshot (if any), truncate the durable log to
``stable_end`` (if lower than its end), append the unstable entries, fsync, then ``advance``.  ``on_advance``
checks that the view now matches and clears the overlay.  Epoch lookups binary-search ``entry_epoch``,
which the view contract requires to be cheap.
"""

from __future__ import annotations

import dataclasses

from cluster.core.errors import invariant
from cluster.raft.log import LogEntry, RaftLogView, SnapshotId


@dataclasses.dataclass(frozen=True, slots=True)
class SnapshotInstall:
    """A snapshot received from the leader, to be written by the shell in place of the whole log."""

    snapshot_id: SnapshotId
    data: bytes


@dataclasses.dataclass(frozen=True, slots=True)
class LogChanges:
    """What the shell must write for one ``Ready``, in this order."""

    install_snapshot: SnapshotInstall | None
    truncate_to: int | None
    append_entries: tuple[LogEntry, ...]


class RaftLog:
    """Logical log = durable view (up to ``stable_end``) + unstable tail + optional pending snapshot."""

    __slots__ = ("_view", "_stable_end", "_unstable", "_pending_snapshot")

    def __init__(self, view: RaftLogView) -> None:
        self._view = view
        self._stable_end = view.log_end_offset
        self._unstable: list[LogEntry] = []
        self._pending_snapshot: SnapshotInstall | None = None
        self._check_view()

    # -- reads -------------------------------------------------------------------------------------------
    @property
    def log_start_offset(self) -> int:
        if self._pending_snapshot is not None:
            return self._pending_snapshot.snapshot_id.end_offset
        return self._view.log_start_offset

    @property
    def log_end_offset(self) -> int:
        return self._stable_end + len(self._unstable)

    @property
    def durable_end_offset(self) -> int:
        """End of the part already fsynced by the shell (what a leader may count toward the HW)."""
        return self._stable_end if self._pending_snapshot is None else self.log_start_offset

    def snapshot_id(self) -> SnapshotId | None:
        if self._pending_snapshot is not None:
            return self._pending_snapshot.snapshot_id
        return self._view.latest_snapshot_id()

    def entry_epoch(self, offset: int) -> int:
        if offset >= self._stable_end:
            return self._unstable[offset - self._stable_end].epoch
        if offset < self.log_start_offset:
            invariant(False, f"entry_epoch({offset}) below log start {self.log_start_offset}")
        return self._view.entry_epoch(offset)

    def epoch_before(self, offset: int) -> int:
        """Epoch of the entry at ``offset - 1``: an entry, else the snapshot at log start, else 0."""
        if offset > self.log_start_offset:
            return self.entry_epoch(offset - 1)
        invariant(offset == self.log_start_offset, f"epoch_before({offset}) below log start")
        snapshot = self.snapshot_id()
        return snapshot.epoch if snapshot is not None else 0

    @property
    def last_epoch(self) -> int:
        return self.epoch_before(self.log_end_offset)

    def entries(self, start_offset: int, end_offset: int) -> list[LogEntry]:
        """Entries in ``[start_offset, end_offset)``, all within ``[log_start, log_end)``."""
        if not self.log_start_offset <= start_offset <= end_offset <= self.log_end_offset:
            invariant(False, f"entries[{start_offset}, {end_offset}) outside the log")
        result: list[LogEntry] = []
        if start_offset < self._stable_end:
            result.extend(self._view.read_entries(start_offset, min(end_offset, self._stable_end)))
        if end_offset > self._stable_end:
            low = max(start_offset, self._stable_end) - self._stable_end
            result.extend(self._unstable[low:end_offset - self._stable_end])
        return result

    def end_offset_for_epoch(self, epoch: int) -> tuple[int, int] | None:
        """``(largest epoch <= epoch in this log, end offset of that epoch)``, or None if it is compacted.

        The end offset of an epoch is the offset of the first entry of a later epoch (or the LEO), as in
        Kafka's ``endOffsetForEpoch``.  ``(0, 0)`` describes the empty prefix of an uncompacted log.
        """
        low, high = self.log_start_offset, self.log_end_offset
        while low < high:   # first offset whose entry epoch is > epoch
            middle = (low + high) // 2
            if self.entry_epoch(middle) > epoch:
                high = middle
            else:
                low = middle + 1
        if low > self.log_start_offset:
            return self.entry_epoch(low - 1), low
        start_epoch = self.epoch_before(self.log_start_offset)
        if self.log_start_offset == 0 or start_epoch <= epoch:
            return start_epoch, self.log_start_offset
        return None

    def snapshot_size_bytes(self, snapshot_id: SnapshotId) -> int | None:
        if self._pending_snapshot is not None:
            pending = self._pending_snapshot
            return len(pending.data) if pending.snapshot_id == snapshot_id else None
        return self._view.snapshot_size_bytes(snapshot_id)

    def read_snapshot_chunk(self, snapshot_id: SnapshotId, position: int, max_bytes: int) -> bytes | None:
        if self._pending_snapshot is not None:
            pending = self._pending_snapshot
            if pending.snapshot_id != snapshot_id:
                return None
            return pending.data[position:position + max_bytes]
        return self._view.read_snapshot_chunk(snapshot_id, position, max_bytes)

    # -- changes -------------------------------------------------------------------------------------------
    def append(self, entry: LogEntry) -> None:
        if entry.offset != self.log_end_offset:
            invariant(False, f"append at {entry.offset}, LEO {self.log_end_offset}")
        invariant(entry.epoch >= self.last_epoch, "appended entry has an older epoch than the log")
        self._unstable.append(entry)

    def truncate_to(self, end_offset: int) -> None:
        """Drops entries at offsets ``>= end_offset``; no-op when ``end_offset`` is the LEO."""
        invariant(self.log_start_offset <= end_offset <= self.log_end_offset,
                  f"truncate_to({end_offset}) outside [{self.log_start_offset}, {self.log_end_offset}]")
        if end_offset >= self._stable_end:
            del self._unstable[end_offset - self._stable_end:]
            return
        self._unstable.clear()
        self._stable_end = end_offset

    def install_snapshot(self, snapshot_id: SnapshotId, data: bytes) -> None:
        """Replaces the whole log by the snapshot; the log then ends at ``snapshot_id.end_offset``."""
        self._pending_snapshot = SnapshotInstall(snapshot_id, bytes(data))
        self._unstable.clear()
        self._stable_end = snapshot_id.end_offset

    def pending_changes(self) -> LogChanges:
        truncate_to = None
        if self._pending_snapshot is None and self._stable_end < self._view.log_end_offset:
            truncate_to = self._stable_end
        return LogChanges(self._pending_snapshot, truncate_to, tuple(self._unstable))

    def has_pending_changes(self) -> bool:
        return (self._pending_snapshot is not None or bool(self._unstable)
                or self._stable_end < self._view.log_end_offset)

    def on_advance(self, changes: LogChanges, compacted_to: SnapshotId | None) -> None:
        """The shell applied ``changes`` (and a local snapshot ``compacted_to``): drop the overlay."""
        if self._view.log_end_offset != self.log_end_offset:
            invariant(False, f"shell log ends at {self._view.log_end_offset}, core expects {self.log_end_offset}")
        expected_snapshot = compacted_to or (changes.install_snapshot.snapshot_id
                                             if changes.install_snapshot else None)
        if expected_snapshot is not None:
            invariant(self._view.latest_snapshot_id() == expected_snapshot, "shell did not store the snapshot")
        self._pending_snapshot = None
        self._unstable.clear()
        self._stable_end = self._view.log_end_offset
        self._check_view()

    def _check_view(self) -> None:
        snapshot = self._view.latest_snapshot_id()
        expected_start = snapshot.end_offset if snapshot is not None else 0
        if self._view.log_start_offset != expected_start:
            invariant(False, f"log view starts at {self._view.log_start_offset}, its snapshot ends at {expected_start}")
        invariant(self._view.log_end_offset >= self._view.log_start_offset, "log view ends before it starts")
