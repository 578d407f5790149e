"""File-backed storage of one node's metadata quorum: the Raft log, its latest snapshot, the election state.

Why it exists: the Raft core (cluster/raft) only reads a ``RaftLogView`` and tells its shell what to write
(ready.py).  This module is the durable version of ``MemoryRaftLog`` the real shell writes to.  Layout of a
raft directory::

    meta.json            {"cluster_id", "node_id", "directory_id"}: written once when the directory is formatted
    quorum-state         {"epoch", "voted_id", "leader_id"}: Kafka's quorum-state file (tmp + fsync + rename)
    peers.json           directory id seen for each voter (see raft_driver: detection of a wiped voter)
    raft.log             append-only records: u32 body length, u32 CRC-32C of body, body
                         body = i64 offset, i32 epoch, u8 flags (1 = control), payload
    <end>-<epoch>.snapshot  u32 CRC-32C of data, data (only the latest is kept)

Durability: ``append``/``truncate_to`` write through the OS and become durable with ``sync()`` (the driver
calls it in a worker thread, once per Ready). Appends, truncations, fsyncs and rewrites go through the storage
seam (``fs.FileSystem``), so the power-loss test hook (power_loss.py) models a lost unsynced tail here too.
Election state and snapshots are written atomically and fsynced before the call returns. "Write a snapshot,
then drop the entries below it" is crash-safe because the snapshot is made durable first and recovery treats
it as the truth: entries below its end offset are dropped on open, and entries above it are kept only if the
log holds the snapshot's last entry with the snapshot's epoch (the log-matching property then says the suffix
continues it); otherwise the log is empty. Recovery also truncates a torn tail at the first short, corrupt
(CRC) or non-contiguous record.

Entries are kept in memory next to their file positions (the metadata log is bounded by snapshots).
"""

from __future__ import annotations

import json
import os
import struct
import uuid
from collections.abc import Sequence
from pathlib import Path

import crc32c

from cluster.core.errors import invariant
from cluster.raft.log import ElectionState, LogEntry, SnapshotId
from cluster.storage.fs import LOCAL_FS, FileSystem

_HEADER = struct.Struct(">II")          # body length, CRC-32C of body
_BODY = struct.Struct(">qiB")           # offset, epoch, flags
_FLAG_CONTROL = 1
_LOG_NAME = "raft.log"
_STATE_NAME = "quorum-state"
_META_NAME = "meta.json"
_PEERS_NAME = "peers.json"
_SNAPSHOT_SUFFIX = ".snapshot"


class RaftStoreError(Exception):
    """The raft directory belongs to another cluster or node, or a snapshot file is corrupt."""


def encode_record(entry: LogEntry) -> bytes:
    body = _BODY.pack(entry.offset, entry.epoch, _FLAG_CONTROL if entry.is_control else 0) + entry.payload
    return _HEADER.pack(len(body), crc32c.crc32c(body)) + body


class RaftStore:
    """A ``RaftLogView`` on files, plus the writes the shell performs for a ``Ready``."""

    def __init__(self, directory: str | os.PathLike[str], *, cluster_id: str, node_id: int,
                 fs: FileSystem = LOCAL_FS) -> None:
        self._fs = fs   # raft.log goes through the storage seam, so the power-loss test hook covers it too
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.directory_id = self._format_or_check(cluster_id, node_id)
        self.election_state = self._read_election_state()
        self._snapshot_id, self._snapshot_path = self._find_latest_snapshot()
        self._entries: list[LogEntry] = []
        self._epochs: list[int] = []
        self._positions: list[int] = []      # file position of each entry's record
        self._start = self._snapshot_id.end_offset if self._snapshot_id else 0
        self._log_path = self.directory / _LOG_NAME
        self.truncated_bytes = self._recover_log()
        self._open_log_for_append()

    # -- formatting ------------------------------------------------------------------------------------------------
    def _format_or_check(self, cluster_id: str, node_id: int) -> str:
        path = self.directory / _META_NAME
        if not path.exists():
            directory_id = uuid.uuid4().hex
            meta = {"cluster_id": cluster_id, "node_id": node_id, "directory_id": directory_id}
            self._write_atomically(path, json.dumps(meta).encode())
            return directory_id
        meta = json.loads(path.read_bytes())
        if meta["cluster_id"] != cluster_id:
            raise RaftStoreError(f"{self.directory} belongs to cluster {meta['cluster_id']!r}, not {cluster_id!r}")
        if meta["node_id"] != node_id:
            raise RaftStoreError(f"{self.directory} belongs to node {meta['node_id']}, not {node_id}")
        return meta["directory_id"]

    # -- election state ----------------------------------------------------------------------------------------------
    def _read_election_state(self) -> ElectionState:
        path = self.directory / _STATE_NAME
        if not path.exists():
            return ElectionState()
        raw = json.loads(path.read_bytes())
        return ElectionState(raw["epoch"], raw["voted_id"], raw["leader_id"])

    def write_election_state(self, state: ElectionState) -> None:
        """Durable before return (the node may send a vote right after)."""
        raw = {"epoch": state.epoch, "voted_id": state.voted_id, "leader_id": state.leader_id}
        self._write_atomically(self.directory / _STATE_NAME, json.dumps(raw).encode())
        self.election_state = state

    # -- peers' directory ids (kept here because it is per-node durable state of the quorum) ----------------------
    def read_peer_directory_ids(self) -> dict[int, str]:
        path = self.directory / _PEERS_NAME
        if not path.exists():
            return {}
        return {int(k): v for k, v in json.loads(path.read_bytes()).items()}

    def write_peer_directory_ids(self, directory_ids: dict[int, str]) -> None:
        self._write_atomically(self.directory / _PEERS_NAME,
                               json.dumps({str(k): v for k, v in sorted(directory_ids.items())}).encode())

    # -- recovery ------------------------------------------------------------------------------------------------------
    def _find_latest_snapshot(self) -> tuple[SnapshotId | None, Path | None]:
        found: list[tuple[SnapshotId, Path]] = []
        for path in self.directory.glob("*" + _SNAPSHOT_SUFFIX):
            end, _, epoch = path.name[:-len(_SNAPSHOT_SUFFIX)].partition("-")
            found.append((SnapshotId(int(end), int(epoch)), path))
        for tmp in self.directory.glob("*.tmp"):
            tmp.unlink()       # an interrupted atomic write: the old file (if any) is still in place
        if not found:
            return None, None
        found.sort()
        for _, stale in found[:-1]:
            stale.unlink()     # superseded; the crash came before we deleted it
        return found[-1]

    def _recover_log(self) -> int:
        """Loads valid records, drops those the snapshot covers, truncates a torn tail; returns bytes cut."""
        if not self._log_path.exists():
            return 0
        data = self._log_path.read_bytes()
        entries, positions, valid_end = _scan_records(data)
        cut = len(data) - valid_end
        if cut:
            fd = self._fs.open_write(str(self._log_path))
            try:
                self._fs.truncate(fd, valid_end)
                self._fs.fsync(fd)
            finally:
                self._fs.close(fd)
        snapshot = self._snapshot_id
        if snapshot is not None and entries and entries[0].offset < snapshot.end_offset:
            entries, positions = self._finish_compaction(entries, positions, snapshot)
        elif snapshot is not None and entries and entries[0].offset != snapshot.end_offset:
            entries, positions = self._rewrite_log([])   # a gap after the snapshot: unusable
        elif snapshot is None and entries and entries[0].offset != 0:
            invariant(False, f"{self._log_path} starts at {entries[0].offset} without a snapshot")
        self._entries = entries
        self._epochs = [e.epoch for e in entries]
        self._positions = positions
        return cut

    def _finish_compaction(self, entries: list[LogEntry], positions: list[int],
                           snapshot: SnapshotId) -> tuple[list[LogEntry], list[int]]:
        keep_from = snapshot.end_offset - entries[0].offset
        matches = (keep_from > 0 and keep_from <= len(entries)
                   and entries[keep_from - 1].epoch == snapshot.epoch)
        return self._rewrite_log(entries[keep_from:] if matches else [])

    def _rewrite_log(self, entries: list[LogEntry]) -> tuple[list[LogEntry], list[int]]:
        """Replaces the log file by ``entries`` atomically; returns the entries and their new positions."""
        positions, chunks, position = [], [], 0
        for entry in entries:
            record = encode_record(entry)
            positions.append(position)
            chunks.append(record)
            position += len(record)
        self._write_atomically(self._log_path, b"".join(chunks))
        return list(entries), positions

    # -- RaftLogView -----------------------------------------------------------------------------------------------
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
        if snapshot_id != self._snapshot_id:
            return None
        return self._snapshot_path.stat().st_size - 4

    def read_snapshot_chunk(self, snapshot_id: SnapshotId, position: int, max_bytes: int) -> bytes | None:
        if snapshot_id != self._snapshot_id:
            return None
        with open(self._snapshot_path, "rb") as f:
            f.seek(4 + position)
            return f.read(max_bytes)

    def snapshot_data(self) -> bytes:
        """The latest snapshot's bytes, CRC-checked (what a state machine loads)."""
        if self._snapshot_path is None:
            return b""
        raw = self._snapshot_path.read_bytes()
        if len(raw) < 4 or struct.unpack(">I", raw[:4])[0] != crc32c.crc32c(raw[4:]):
            raise RaftStoreError(f"snapshot {self._snapshot_path} is corrupt")
        return raw[4:]

    # -- writes ------------------------------------------------------------------------------------------------------
    def append(self, entries: Sequence[LogEntry]) -> None:
        """Appends entries continuing the log exactly; durable after ``sync``."""
        chunks = []
        for entry in entries:
            if entry.offset != self.log_end_offset:
                invariant(False, f"append at {entry.offset}, LEO {self.log_end_offset}")
            invariant(not self._epochs or entry.epoch >= self._epochs[-1], "append with a decreasing epoch")
            record = encode_record(entry)
            self._entries.append(entry)
            self._epochs.append(entry.epoch)
            self._positions.append(self._file_end + sum(len(c) for c in chunks))
            chunks.append(record)
        data = b"".join(chunks)
        self._fs.pwrite(self._fd, data, self._file_end)
        self._file_end += len(data)
        self._dirty = True

    def truncate_to(self, end_offset: int) -> None:
        """Drops entries at offsets ``>= end_offset``; durable after ``sync``."""
        invariant(self._start <= end_offset <= self.log_end_offset, f"truncate_to({end_offset}) outside the log")
        index = end_offset - self._start
        if index == len(self._entries):
            return
        self._file_end = self._positions[index]
        self._fs.truncate(self._fd, self._file_end)
        del self._entries[index:], self._epochs[index:], self._positions[index:]
        self._dirty = True

    def sync(self) -> None:
        """fsync of the log file: makes every append and truncation so far durable."""
        if self._dirty:
            self._fs.fsync(self._fd)
            self._dirty = False

    def install_snapshot(self, snapshot_id: SnapshotId, data: bytes) -> None:
        """Replaces the whole log by a snapshot received from the leader; durable before return."""
        self._write_snapshot(snapshot_id, data)
        self._replace_log([], snapshot_id)

    def compact_to_snapshot(self, snapshot_id: SnapshotId, data: bytes) -> None:
        """Stores a snapshot taken locally and drops the entries below it; durable before return."""
        invariant(self._start <= snapshot_id.end_offset <= self.log_end_offset, "snapshot outside the log")
        last = snapshot_id.end_offset - 1
        invariant(last < self._start or self._epochs[last - self._start] == snapshot_id.epoch,
                  "snapshot epoch does not match the entry it ends at")
        self.sync()   # the suffix we are about to copy must be the durable one
        self._write_snapshot(snapshot_id, data)
        self._replace_log(self._entries[snapshot_id.end_offset - self._start:], snapshot_id)

    def _write_snapshot(self, snapshot_id: SnapshotId, data: bytes) -> None:
        path = self.directory / f"{snapshot_id.end_offset:020d}-{snapshot_id.epoch:010d}{_SNAPSHOT_SUFFIX}"
        self._write_atomically(path, struct.pack(">I", crc32c.crc32c(data)) + bytes(data))
        previous = self._snapshot_path
        self._snapshot_id, self._snapshot_path = snapshot_id, path
        if previous is not None and previous != path:
            previous.unlink(missing_ok=True)   # the new snapshot is durable: the old one is garbage

    def _replace_log(self, entries: list[LogEntry], snapshot_id: SnapshotId) -> None:
        self._fs.close(self._fd)
        self._entries, self._positions = self._rewrite_log(entries)
        self._epochs = [e.epoch for e in self._entries]
        self._start = snapshot_id.end_offset
        self._open_log_for_append()

    def _write_atomically(self, path: Path, data: bytes) -> None:
        """tmp + fsync + rename + directory fsync: after return, ``path`` holds ``data`` across a crash."""
        self._fs.write_file_atomically(str(path), data)

    def _open_log_for_append(self) -> None:
        self._fd = self._fs.open_write(str(self._log_path), create=True)
        self._file_end = self._fs.file_size(self._fd)
        self._dirty = False

    def close(self) -> None:
        self.sync()
        self._fs.close(self._fd)


def _scan_records(data: bytes) -> tuple[list[LogEntry], list[int], int]:
    """Valid records from the start of ``data``; stops at the first torn, corrupt or out-of-order one."""
    entries: list[LogEntry] = []
    positions: list[int] = []
    position = 0
    while position + _HEADER.size <= len(data):
        length, crc = _HEADER.unpack_from(data, position)
        body_start = position + _HEADER.size
        body = data[body_start:body_start + length]
        if length < _BODY.size or len(body) < length or crc32c.crc32c(body) != crc:
            break
        offset, epoch, flags = _BODY.unpack_from(body)
        if entries and (offset != entries[-1].offset + 1 or epoch < entries[-1].epoch):
            break
        entries.append(LogEntry(offset, epoch, bytes(body[_BODY.size:]), bool(flags & _FLAG_CONTROL)))
        positions.append(position)
        position = body_start + length
    return entries, positions, position
