"""A node's disk in the simulator: writes land in a page cache, ``fsync`` makes them durable, a crash loses
what was not synced.

Why: the protocol's durability rules ("persist the vote before replying", "a follower reports only a
flushed log end offset", "the leader counts only its flushed entries") are only tested if a crash can
actually lose an unsynced write.  The model:
  * the running node reads ``log`` / ``election_state`` (the page cache: every write is visible at once);
  * every write is also queued; ``fsync`` applies the queue, in order, to the durable copy;
  * ``crash`` keeps a random prefix of the queue (the kernel may already have written some pages back,
    in order -- a torn tail, never a hole), drops the rest, and resets the cache to the durable copy.
The election state is written like Kafka's quorum-state file (temp file + rename), so it is atomic: a
crash leaves either the old or the new state, never a mix.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from cluster.raft.log import ElectionState, LogEntry, MemoryRaftLog, SnapshotId


class SimDisk:
    """Election state + metadata log + latest snapshot of one node, with crash semantics (see module)."""

    def __init__(self) -> None:
        self._durable_state = ElectionState()
        self._durable_log = MemoryRaftLog()
        self.election_state = ElectionState()
        self.log = MemoryRaftLog()
        self._unsynced: list[tuple[str, tuple]] = []
        self.fsync_count = 0

    # -- writes (visible at once, durable after fsync) ------------------------------------------------------------
    def write_election_state(self, state: ElectionState) -> None:
        self.election_state = state
        self._unsynced.append(("state", (state,)))

    def install_snapshot(self, snapshot_id: SnapshotId, data: bytes) -> None:
        self.log.install_snapshot(snapshot_id, data)
        self._unsynced.append(("install_snapshot", (snapshot_id, data)))

    def compact_to_snapshot(self, snapshot_id: SnapshotId, data: bytes) -> None:
        self.log.compact_to_snapshot(snapshot_id, data)
        self._unsynced.append(("compact_to_snapshot", (snapshot_id, data)))

    def truncate_to(self, end_offset: int) -> None:
        self.log.truncate_to(end_offset)
        self._unsynced.append(("truncate_to", (end_offset,)))

    def append(self, entries: Sequence[LogEntry]) -> None:
        self.log.append(entries)
        self._unsynced.append(("append", (tuple(entries),)))

    def fsync(self) -> None:
        self._apply_durably(self._unsynced)
        self._unsynced = []
        self.fsync_count += 1

    # -- faults --------------------------------------------------------------------------------------------------
    def crash(self, rng: random.Random) -> int:
        """Power loss: a random prefix of the unsynced writes survives.  Returns how many were lost."""
        kept = rng.randint(0, len(self._unsynced)) if self._unsynced else 0
        lost = len(self._unsynced) - kept
        self._apply_durably(self._unsynced[:kept])
        self._unsynced = []
        self.election_state = self._durable_state
        self.log = self._durable_log.copy()
        return lost

    @property
    def durable_state(self) -> ElectionState:
        return self._durable_state

    @property
    def durable_log(self) -> MemoryRaftLog:
        return self._durable_log

    def _apply_durably(self, operations: list[tuple[str, tuple]]) -> None:
        for name, args in operations:
            if name == "state":
                self._durable_state = args[0]
            else:
                getattr(self._durable_log, name)(*args)
