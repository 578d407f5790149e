"""``Ready``: the one batch of work the core hands to its shell, and the results of ``propose``.

Why a single batch with a fixed order (style rule 2, etcd raft's ``Ready``/``Advance``, Kafka's
``QuorumState.durableTransitionTo``): nothing may leave the node before the state it depends on is durable.
A vote is only granted once the vote is on disk; a Fetch only reports a log end offset that is fsynced; a
leader only counts entries it has flushed.  The shell therefore processes a ``Ready`` strictly in this order:

  1. persist: write ``persist_election_state`` (if set), then the log changes (``install_snapshot``, then
     ``truncate_to``, then ``append_entries``), and fsync both;
  2. send every message in ``outbox`` (in order, best effort: the protocol tolerates loss);
  3. apply: if ``load_snapshot`` is set, reset the state machine to that snapshot (read it from the log
     storage), then apply ``committed_entries`` in order (skip ``is_control`` ones);
  4. if ``create_snapshot`` is set, write a snapshot of the state machine as of that id (it covers exactly
     the offsets below ``create_snapshot.end_offset``, all applied by step 3) and drop the entries below it,
     atomically with respect to crashes;
  5. call ``RaftNode.advance(ready)``, then sleep until a message arrives or ``next_deadline_ms``, calling
     ``poll`` again first if ``RaftNode.has_ready()`` is true.

No ``step``/``propose``/``poll`` may happen between ``poll`` and ``advance``; the node checks this.
"""

from __future__ import annotations

import dataclasses

from cluster.core.errors import ErrorCode
from cluster.raft._overlay import SnapshotInstall
from cluster.raft.log import ElectionState, LogEntry, SnapshotId
from cluster.raft.messages import RaftMessage
from cluster.raft.state import Role


@dataclasses.dataclass(frozen=True, slots=True)
class Ready:
    """Actions for the shell, to be carried out in field order (see the module docstring)."""

    persist_election_state: ElectionState | None
    install_snapshot: SnapshotInstall | None
    truncate_to: int | None
    append_entries: tuple[LogEntry, ...]
    outbox: tuple[RaftMessage, ...]
    load_snapshot: SnapshotId | None
    committed_entries: tuple[LogEntry, ...]
    create_snapshot: SnapshotId | None
    # Soft state, for the shell's metrics and for whoever routes client requests to the leader.
    role: Role
    epoch: int
    leader_id: int | None
    high_watermark: int
    next_deadline_ms: int

    def needs_persist(self) -> bool:
        return (self.persist_election_state is not None or self.install_snapshot is not None
                or self.truncate_to is not None or bool(self.append_entries))


@dataclasses.dataclass(frozen=True, slots=True)
class Proposed:
    """A payload appended by the leader at ``offset`` in ``epoch``.

    It is committed once the high watermark passes ``offset`` while the entry at ``offset`` still has
    ``epoch``; if a newer leader truncates it, a different entry (different epoch) takes the offset.
    """

    offset: int
    epoch: int


@dataclasses.dataclass(frozen=True, slots=True)
class NotLeader:
    """``propose`` refused: this node cannot append now.  ``leader_id`` is the leader it knows, if any."""

    error_code: ErrorCode
    leader_id: int | None
    epoch: int
