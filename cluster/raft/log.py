"""Value types of the replicated metadata log, the read-only view the core needs, and an in-memory log.

Why it exists: the Raft core never writes storage itself (sans-I/O).  It reads the durable log through the
``RaftLogView`` protocol and tells the shell what to write through ``Ready``.  Keeping the view read-only
makes the ownership plain: the shell owns the bytes on disk, the core owns the decisions.

Terms (Kafka's): ``log_start_offset`` is the first offset still held as an entry (everything below it lives
only in the latest snapshot), ``log_end_offset`` (LEO) is the next offset to be written, ranges are
``[start, end)``.  Every entry carries the leader epoch that wrote it, and ``(offset, epoch)`` identifies an
entry uniquely across the cluster.  A snapshot id ``(end_offset, epoch)`` names a snapshot holding the state
of offsets ``< end_offset``; ``epoch`` is the epoch of the entry at ``end_offset - 1``.

Contract of a ``RaftLogView`` (checked by ``RaftNode``):
  * epochs of entries never decrease along the log;
  * if a snapshot exists, ``log_start_offset == latest_snapshot_id().end_offset``; otherwise it is 0
    (the shell makes "write snapshot, then drop the entries below it" atomic, e.g. by finishing the
    compaction during recovery);
  * ``entry_epoch`` and ``read_entries`` are only called for offsets in ``[log_start_offset, log_end_offset)``
    and must be cheap (the core binary-searches epochs).

``MemoryRaftLog`` implements the view plus the write operations a shell performs for a ``Ready``; unit tests
use it directly and the simulator's disk is built from two of them (page cache and durable copy).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Protocol

from cluster.core.errors import invariant


@dataclasses.dataclass(frozen=True, slots=True)
class LogEntry:
    """One record of the metadata log.  ``payload`` is opaque to Raft.

    ``is_control`` marks entries written by the quorum itself (the LeaderChange record a new leader appends
    at the start of its epoch); state machines skip them but they occupy an offset like any record.
    """

    offset: int
    epoch: int
    payload: bytes
    is_control: bool = False


@dataclasses.dataclass(frozen=True, slots=True, order=True)
class SnapshotId:
    """Names a snapshot: the state of offsets ``< end_offset``; ``epoch`` of the entry at ``end_offset-1``."""

    end_offset: int
    epoch: int


@dataclasses.dataclass(frozen=True, slots=True)
class OffsetAndEpoch:
    """An end offset and the epoch it belongs to, as in Kafka's DivergingEpoch field."""

    offset: int
    epoch: int


@dataclasses.dataclass(frozen=True, slots=True)
class ElectionState:
    """What must be durable before a node acts on an election decision (Kafka's quorum-state file).

    ``voted_id`` is the candidate this node voted for in ``epoch`` (itself when it ran); ``leader_id`` the
    leader it learned for ``epoch``.  ``None`` means unknown / not voted.
    """

    epoch: int = 0
    voted_id: int | None = None
    leader_id: int | None = None


class RaftLogView(Protocol):
    """Read-only access to the durable metadata log and its latest snapshot (see module contract)."""

    @property
    def log_start_offset(self) -> int: ...

    @property
    def log_end_offset(self) -> int: ...

    def latest_snapshot_id(self) -> SnapshotId | None: ...

    def entry_epoch(self, offset: int) -> int: ...

    def read_entries(self, start_offset: int, end_offset: int) -> Sequence[LogEntry]: ...

    def snapshot_size_bytes(self, snapshot_id: SnapshotId) -> int | None: ...

    def read_snapshot_chunk(self, snapshot_id: SnapshotId, position: int, max_bytes: int) -> bytes | None: ...


class MemoryRaftLog:
    """A ``RaftLogView`` held in memory, plus the write operations a shell applies from a ``Ready``.

    Not durable by itself: the simulator pairs two of these to model a page cache and a disk.
    """

    __slots__ = ("_start", "_entries", "_epochs", "_snapshot_id", "_snapshot_data")

    def __init__(self) -> None:
        self._start = 0
        self._entries: list[LogEntry] = []
        # Parallel list of epochs, so that epoch lookups need no attribute access per probe.
        self._epochs: list[int] = []
        self._snapshot_id: SnapshotId | None = None
        self._snapshot_data = b""

    # -- RaftLogView -------------------------------------------------------------------------------------
    @property
    def log_start_offset(self) -> int:
        return self._start

    @property
    def log_end_offset(self) -> int:
        return self._start + len(self._entries)

    def latest_snapshot_id(self) -> SnapshotId | None:
        return self._snapshot_id

    def entry_epoch(self, offset: int) -> int:
        if not self._start <= offset < self.log_end_offset:
            invariant(False, f"entry_epoch({offset}) outside the log")
        return self._epochs[offset - self._start]

    def read_entries(self, start_offset: int, end_offset: int) -> Sequence[LogEntry]:
        if not self._start <= start_offset <= end_offset <= self.log_end_offset:
            invariant(False, f"read_entries[{start_offset}, {end_offset}) outside the log")
        return self._entries[start_offset - self._start:end_offset - self._start]

    def snapshot_size_bytes(self, snapshot_id: SnapshotId) -> int | None:
        return len(self._snapshot_data) if snapshot_id == self._snapshot_id else None

    def read_snapshot_chunk(self, snapshot_id: SnapshotId, position: int, max_bytes: int) -> bytes | None:
        if snapshot_id != self._snapshot_id:
            return None
        return self._snapshot_data[position:position + max_bytes]

    # -- writes a shell performs ---------------------------------------------------------------------------
    def snapshot_data(self) -> bytes:
        return self._snapshot_data

    def append(self, entries: Sequence[LogEntry]) -> None:
        """Appends entries that must continue the log exactly (offsets contiguous, epochs not decreasing)."""
        for entry in entries:
            if entry.offset != self.log_end_offset:
                invariant(False, f"append at {entry.offset}, LEO {self.log_end_offset}")
            invariant(not self._epochs or entry.epoch >= self._epochs[-1], "append with a decreasing epoch")
            self._entries.append(entry)
            self._epochs.append(entry.epoch)

    def truncate_to(self, end_offset: int) -> None:
        """Drops entries at offsets ``>= end_offset``."""
        invariant(self._start <= end_offset <= self.log_end_offset, f"truncate_to({end_offset}) outside the log")
        del self._entries[end_offset - self._start:]
        del self._epochs[end_offset - self._start:]

    def install_snapshot(self, snapshot_id: SnapshotId, data: bytes) -> None:
        """Replaces the whole log by a snapshot received from the leader (every entry is dropped)."""
        self._entries.clear()
        self._epochs.clear()
        self._start = snapshot_id.end_offset
        self._snapshot_id = snapshot_id
        self._snapshot_data = bytes(data)

    def compact_to_snapshot(self, snapshot_id: SnapshotId, data: bytes) -> None:
        """Stores a locally taken snapshot and drops the entries it covers (offsets below its end)."""
        invariant(self._start <= snapshot_id.end_offset <= self.log_end_offset, "snapshot outside the log")
        last = snapshot_id.end_offset - 1
        invariant(last < self._start or self._epochs[last - self._start] == snapshot_id.epoch,
                  "snapshot epoch does not match the entry it ends at")
        drop = snapshot_id.end_offset - self._start
        del self._entries[:drop]
        del self._epochs[:drop]
        self._start = snapshot_id.end_offset
        self._snapshot_id = snapshot_id
        self._snapshot_data = bytes(data)

    def copy(self) -> MemoryRaftLog:
        clone = MemoryRaftLog()
        clone._start = self._start
        clone._entries = list(self._entries)
        clone._epochs = list(self._epochs)
        clone._snapshot_id = self._snapshot_id
        clone._snapshot_data = self._snapshot_data
        return clone
