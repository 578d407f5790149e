"""Safety properties of the quorum, checked by the simulator after every step (and at every write/apply).

Why here and not in the node: a node can only check itself; these properties are about the whole cluster
and about history (what was committed before).  Each check raises ``SimViolation`` naming the property:

  single-leader       at most one leader per epoch, ever (Election Safety).
  log-matching        two entries with the same (offset, epoch) have the same payload and the same
                      predecessor epoch, on every node, whenever they are written (Log Matching, inductively).
  committed-changed   an offset, once committed, always holds the same entry: on every node below its
                      high watermark, in every applied entry and in every snapshot (State Machine Safety).
  hw-beyond-commit    no node's high watermark exceeds what some leader committed.
  hw-decreased        a node's high watermark never decreases while it runs (a restart may re-learn it).
  leader-completeness every entry committed by a leader of epoch c is in the log (or snapshot) of every
                      leader of an epoch > c -- checked when a leader appears and when a commit happens.
  node-invariant      the node's own ``check_invariants`` (or any core invariant) failed.

"Committed" is recorded globally the moment any leader's high watermark passes an offset: the entry is read
from that leader's log and kept, with the epoch of the leader that committed it, and a running digest so
snapshots can be compared in O(1).
"""

from __future__ import annotations

import dataclasses

from cluster.raft.log import LogEntry, MemoryRaftLog, SnapshotId
from cluster.raft.node import RaftNode
from cluster.raft.state import Role
from cluster.testing.sim_state_machine import ZERO_DIGEST, decode_snapshot, entry_digest


class SimViolation(Exception):
    """A broken safety or liveness property; ``kind`` is one of the names in the module docstring."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(f"{kind}: {message}")
        self.kind = kind


@dataclasses.dataclass(frozen=True, slots=True)
class _Committed:
    epoch: int
    payload: bytes
    is_control: bool
    commit_epoch: int    # epoch of the leader whose HW first passed this offset


def _same(entry: LogEntry, committed: _Committed) -> bool:
    return (entry.epoch, entry.payload, entry.is_control) == (committed.epoch, committed.payload, committed.is_control)


class RaftInvariantChecker:
    """Global history of the run and the checks over it (see module docstring)."""

    def __init__(self) -> None:
        self._leader_of_epoch: dict[int, int] = {}
        self._committed: list[_Committed] = []
        self._digests: list[bytes] = [ZERO_DIGEST]     # _digests[i] = digest of committed [0, i)
        self._entry_ids: dict[tuple[int, int], tuple[bytes, bool, int]] = {}
        self._node_hw: dict[int, int] = {}
        self._leaders_seen: set[tuple[int, int]] = set()
        self._recheck_leaders_above: int | None = None

    @property
    def leaders_elected(self) -> int:
        """How many epochs had a leader so far (each epoch has at most one)."""
        return len(self._leader_of_epoch)

    @property
    def committed_end(self) -> int:
        return len(self._committed)

    def committed_payload(self, offset: int) -> bytes | None:
        return self._committed[offset].payload if offset < len(self._committed) else None

    # -- events from the simulated shell ---------------------------------------------------------------------------
    def on_restart(self, node_id: int) -> None:
        self._node_hw.pop(node_id, None)

    def on_append(self, node_id: int, log: MemoryRaftLog, entries: tuple[LogEntry, ...]) -> None:
        """Called before ``entries`` are appended to ``log`` (the node's page cache)."""
        previous_epoch = _epoch_before(log, log.log_end_offset)
        for entry in entries:
            key = (entry.offset, entry.epoch)
            value = (entry.payload, entry.is_control, previous_epoch)
            known = self._entry_ids.setdefault(key, value)
            if known != value:
                raise SimViolation("log-matching", f"node {node_id} wrote {key} as {value}, elsewhere {known}")
            previous_epoch = entry.epoch

    def on_apply(self, node_id: int, entry: LogEntry) -> None:
        if entry.offset >= len(self._committed):
            raise SimViolation("hw-beyond-commit", f"node {node_id} applied offset {entry.offset}, "
                                                   f"committed end is {len(self._committed)}")
        if not _same(entry, self._committed[entry.offset]):
            raise SimViolation("committed-changed", f"node {node_id} applied {entry} at a committed offset")

    def on_snapshot(self, node_id: int, snapshot_id: SnapshotId, data: bytes, how: str) -> None:
        """A snapshot was created, installed or loaded: it must hold exactly the committed prefix."""
        end_offset, digest = decode_snapshot(data)
        if end_offset != snapshot_id.end_offset:
            raise SimViolation("committed-changed", f"node {node_id} {how} snapshot {snapshot_id} ends at {end_offset}")
        if end_offset >= len(self._digests):
            raise SimViolation("hw-beyond-commit", f"node {node_id} {how} snapshot past the committed end")
        if digest != self._digests[end_offset]:
            raise SimViolation("committed-changed", f"node {node_id} {how} snapshot {snapshot_id} differs")

    # -- after every step ------------------------------------------------------------------------------------------
    def after_step(self, nodes: dict[int, RaftNode], logs: dict[int, MemoryRaftLog]) -> None:
        for node_id, node in nodes.items():
            self._check_node(node_id, node)
        for node_id, node in nodes.items():
            if node.role is Role.LEADER:
                self._check_leader(node_id, node, nodes, logs)
        self._recheck_leaders_above = None
        for node_id, node in nodes.items():
            self._check_high_watermark(node_id, node)

    def _check_node(self, node_id: int, node: RaftNode) -> None:
        try:
            node.check_invariants()
        except AssertionError as error:
            raise SimViolation("node-invariant", f"node {node_id}: {error}") from error

    def before_ready(self, node_id: int, node: RaftNode) -> None:
        """Called before a node's Ready is carried out: nothing it writes or sends escapes unchecked."""
        if node.role is Role.LEADER:
            self._check_single_leader(node_id, node.epoch)
            self.record_commits(node_id, node)

    def _check_single_leader(self, node_id: int, epoch: int) -> None:
        holder = self._leader_of_epoch.setdefault(epoch, node_id)
        if holder != node_id:
            raise SimViolation("single-leader", f"nodes {holder} and {node_id} both led epoch {epoch}")

    def _check_leader(self, node_id: int, node: RaftNode, nodes: dict[int, RaftNode],
                      logs: dict[int, MemoryRaftLog]) -> None:
        epoch = node.epoch
        self._check_single_leader(node_id, epoch)
        if (node_id, epoch) not in self._leaders_seen:
            self._leaders_seen.add((node_id, epoch))
            self._check_completeness(node_id, node, logs[node_id])
        self.record_commits(node_id, node)
        if self._recheck_leaders_above is not None and epoch > self._recheck_leaders_above:
            self._check_completeness(node_id, node, logs[node_id])

    def record_commits(self, node_id: int, node: RaftNode) -> None:
        """A leader's HW passed new offsets: remember those entries as committed (call before applying)."""
        if node.role is not Role.LEADER or node.high_watermark <= len(self._committed):
            return
        start = len(self._committed)
        if start < node.log_start_offset:
            raise SimViolation("hw-beyond-commit", f"leader {node_id} compacted uncommitted offsets")
        for entry in node.read_entries(start, node.high_watermark):
            self._committed.append(_Committed(entry.epoch, entry.payload, entry.is_control, node.epoch))
            self._digests.append(entry_digest(self._digests[-1], entry))
        # Leaders of later epochs (stale leaders aside, there are none normally) must hold these entries.
        previous = self._recheck_leaders_above
        self._recheck_leaders_above = node.epoch if previous is None else min(previous, node.epoch)

    def _check_completeness(self, node_id: int, node: RaftNode, log: MemoryRaftLog) -> None:
        """Every entry committed by an earlier epoch is in this leader's log or snapshot."""
        required = [offset for offset, c in enumerate(self._committed) if c.commit_epoch < node.epoch]
        if not required:
            return
        needed_end = required[-1] + 1
        if node.log_end_offset < needed_end:
            raise SimViolation("leader-completeness",
                               f"leader {node_id} of epoch {node.epoch} ends at {node.log_end_offset}, "
                               f"committed entries reach {needed_end}")
        start = node.log_start_offset
        if start > 0:
            self.on_snapshot(node_id, log.latest_snapshot_id(), log.snapshot_data(), "holds")
        entries = node.read_entries(max(start, required[0]), needed_end) if needed_end > start else []
        for entry in entries:
            committed = self._committed[entry.offset]
            if committed.commit_epoch < node.epoch and not _same(entry, committed):
                raise SimViolation("leader-completeness",
                                   f"leader {node_id} of epoch {node.epoch} has {entry} at a committed offset")

    def _check_high_watermark(self, node_id: int, node: RaftNode) -> None:
        high_watermark = node.high_watermark
        previous = self._node_hw.get(node_id)
        if previous is not None and high_watermark < previous:
            raise SimViolation("hw-decreased", f"node {node_id} HW went from {previous} to {high_watermark}")
        if high_watermark > len(self._committed):
            raise SimViolation("hw-beyond-commit",
                               f"node {node_id} HW {high_watermark} > committed end {len(self._committed)}")
        low = max(previous if previous is not None else 0, node.log_start_offset)
        if high_watermark > low:
            for entry in node.read_entries(low, high_watermark):
                if not _same(entry, self._committed[entry.offset]):
                    raise SimViolation("committed-changed", f"node {node_id} holds {entry} below its HW")
        self._node_hw[node_id] = high_watermark


def _epoch_before(log: MemoryRaftLog, offset: int) -> int:
    if offset > log.log_start_offset:
        return log.entry_epoch(offset - 1)
    snapshot = log.latest_snapshot_id()
    return snapshot.epoch if snapshot is not None else 0
