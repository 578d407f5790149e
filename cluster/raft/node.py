"""``RaftNode``: one member of the KRaft-style metadata quorum as a deterministic, sans-I/O state machine.

Why sans-I/O: the same code must run under the asyncio/gRPC shell and inside a seeded simulator where
millions of fault schedules are cheap (../shared/DESIGN.md, fixed decision 8).  So the node never reads a
clock, touches a socket or a file, or uses global randomness: inputs are messages, ``propose`` calls and
``now_ms``; the output is a ``Ready`` batch (see ready.py for the order in which the shell must carry it out).

Typical shell loop::

    node = RaftNode(node_id, voters, rng=random.Random(seed), config=RaftConfig(), persisted_state=state,
                    log_view=log, now_ms=now)
    while running:
        for message in received:  node.step(message, now)
        ready = node.poll(now)                      # fires due timers too
        persist(ready); send(ready.outbox); apply(ready); maybe_snapshot(ready)
        node.advance(ready)
        sleep until a message arrives or ready.next_deadline_ms (poll again at once if node.has_ready())

Module map: roles and legal transitions in state.py (one table); elections in _voting.py; the leader's
Fetch serving, high watermark, check-quorum and resignation in _leading.py (with the reason replication is
pull-based); the follower's fetching, truncation and snapshot download in _following.py; the log overlay
that lets the core read its own not-yet-durable writes in _overlay.py.

Durability ("persisted and fsynced before acting"): the in-memory election state ``(epoch, voted_id,
leader_id)`` may change at any step, but every message produced after the change is only *sent* once the
shell has persisted the new state, because ``Ready.persist_election_state`` comes before ``Ready.outbox``.
A restart therefore never finds a vote that was promised but not stored.  A node that was leader restarts
RESIGNED in the same epoch (it must not vote or lead again there), as Kafka's ``QuorumState.initialize``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from cluster.core.errors import ErrorCode, invariant
from cluster.raft import quorum
from cluster.raft._following import FollowerState, FollowingMixin
from cluster.raft._leading import LeaderState, LeadingMixin
from cluster.raft._overlay import RaftLog
from cluster.raft._voting import ElectionTally, VotingMixin
from cluster.raft.config import RaftConfig, UnsafeFlags
from cluster.raft.log import ElectionState, LogEntry, RaftLogView, SnapshotId
from cluster.raft.messages import (
    BeginQuorumEpochRequest,
    BeginQuorumEpochResponse,
    EndQuorumEpochRequest,
    EndQuorumEpochResponse,
    FetchRequest,
    FetchResponse,
    FetchSnapshotRequest,
    FetchSnapshotResponse,
    RaftMessage,
    VoteRequest,
    VoteResponse,
)
from cluster.raft.ready import NotLeader, Proposed, Ready
from cluster.raft.state import OBSERVER_ROLES, Role, check_transition

if TYPE_CHECKING:   # the core only receives an injected generator; it never imports global randomness
    import random

# Upper bound on timer rounds in one poll: each round moves a deadline into the future, so more means a bug.
_MAX_TIMER_ROUNDS = 16
NO_UNSAFE_FLAGS = UnsafeFlags()


class RaftNode(VotingMixin, LeadingMixin, FollowingMixin):
    """A quorum member (voter) or a replica of the metadata log outside the voter set (observer).

    Public attributes are read-only for callers: ``node_id``, ``voters``, ``is_voter``, ``config``, ``role``,
    ``epoch``, ``voted_id``, ``leader_id``, ``high_watermark`` (first offset not committed, as Kafka's HW).
    """

    def __init__(self, node_id: int, voters: Iterable[int], *, rng: random.Random, config: RaftConfig,
                 persisted_state: ElectionState, log_view: RaftLogView, now_ms: int,
                 observers: Iterable[int] = (), unsafe: UnsafeFlags = NO_UNSAFE_FLAGS) -> None:
        self.node_id = node_id
        self.voters = frozenset(voters)
        self.observers = frozenset(observers)
        invariant(bool(self.voters), "the voter set is empty")
        invariant(not self.voters & self.observers, "a node cannot be both voter and observer")
        self.is_voter = node_id in self.voters
        self.config = config
        self.unsafe = unsafe
        self._rng = rng
        self._other_voters = tuple(sorted(self.voters - {node_id}))
        self._log = RaftLog(log_view)
        self._now_ms = now_ms
        self._outbox: list[RaftMessage] = []
        self._in_ready: Ready | None = None
        self._leader: LeaderState | None = None
        self._follower: FollowerState | None = None
        self._tally: ElectionTally | None = None
        self._election_retries = 0
        self._deadline_ms = now_ms
        # A snapshot is committed by construction, so the HW is at least the log start after a restart;
        # anything above is re-learned from the leader (Kafka does not persist the HW either).
        self.high_watermark = self._log.log_start_offset
        self._applied_offset = 0          # entries below this were handed to the state machine
        self._persisted = persisted_state  # what the shell has (or will have after the pending Ready)
        # Set by ``begin_shutdown``: a stopping member never campaigns, votes or leads again (see there).
        self.shutting_down = False
        self._handlers = self._build_handlers()
        self._initialize_role(persisted_state, now_ms)

    def _build_handlers(self) -> dict[type, object]:
        return {
            VoteRequest: self._handle_vote_request,
            VoteResponse: self._handle_vote_response,
            BeginQuorumEpochRequest: self._handle_begin_quorum_epoch_request,
            BeginQuorumEpochResponse: self._handle_begin_quorum_epoch_response,
            EndQuorumEpochRequest: self._handle_end_quorum_epoch_request,
            EndQuorumEpochResponse: self._handle_end_quorum_epoch_response,
            FetchRequest: self._handle_fetch_request,
            FetchResponse: self._handle_fetch_response,
            FetchSnapshotRequest: self._handle_fetch_snapshot_request,
            FetchSnapshotResponse: self._handle_fetch_snapshot_response,
        }

    def _initialize_role(self, state: ElectionState, now_ms: int) -> None:
        """Start from the durable election state, as Kafka's ``QuorumState.initialize``."""
        self.role, self.epoch, self.voted_id, self.leader_id = Role.UNATTACHED, state.epoch, None, None
        log_epoch = self._log.last_epoch
        if state.epoch < log_epoch:
            self.epoch = log_epoch   # the log proves a later epoch exists; our vote there is unknown: none
        elif self.is_voter and state.leader_id == self.node_id:
            self.role, self.voted_id, self.leader_id = Role.RESIGNED, self.node_id, self.node_id
        elif state.leader_id is not None and state.leader_id != self.node_id:
            self.voted_id = state.voted_id
            self._become_follower_at_start(state.leader_id, now_ms)
            return
        elif self.is_voter and state.voted_id is not None:
            self.role, self.voted_id = Role.VOTED, state.voted_id
        self._deadline_ms = now_ms + self._initial_timeout_ms()

    def _become_follower_at_start(self, leader_id: int, now_ms: int) -> None:
        self.role, self.leader_id = Role.FOLLOWER, leader_id
        self._follower = FollowerState()
        self._arm_fetch_timeout(now_ms)
        self._send_fetch(now_ms)

    def _initial_timeout_ms(self) -> int:
        if not self.is_voter:
            return 0   # observers start discovering the leader at once
        if set(self.voters) == {self.node_id}:
            return 0   # the quorum is just us (a single node): nobody to wait for, elect ourselves at once
        return quorum.random_election_timeout_ms(self._rng, self.config.election_timeout_ms)

    # == public API ================================================================================================
    def step(self, message: RaftMessage, now_ms: int) -> None:
        """Handles one inbound message addressed to this node."""
        self._enter(now_ms)
        if message.destination_id != self.node_id:
            invariant(False, f"message for node {message.destination_id} delivered to node {self.node_id}")
        handler = self._handlers.get(type(message))
        invariant(handler is not None, "unknown message type")
        handler(message, now_ms)

    def propose(self, payload: bytes, now_ms: int) -> Proposed | NotLeader:
        """Appends ``payload`` if this node is the leader; see ``Proposed`` for when it counts as committed."""
        self._enter(now_ms)
        if self.role is not Role.LEADER:
            return NotLeader(ErrorCode.NOT_LEADER_OR_FOLLOWER, self._leader_hint(), self.epoch)
        offset = self._log.log_end_offset
        self._log.append(LogEntry(offset, self.epoch, bytes(payload)))
        self._complete_parked_fetches()
        return Proposed(offset, self.epoch)

    def begin_shutdown(self, now_ms: int) -> None:
        """The shell is stopping this member: a leader resigns (EndQuorumEpoch names its successors), a
        pre-vote round in progress is dropped, and from now on the node never starts a round, grants a vote or
        pre-vote, or becomes leader.  It still answers, so the others learn epochs and leaders from it.

        Why: a member that goes away must not be elected (its leadership would die with the process) nor help
        elect (its vote could complete a majority the others then cannot reach).  The remaining voters elect
        among themselves as when it crashes; with fewer than a majority of them left there is no leader,
        which is right while the cluster is being stopped.
        """
        self._enter(now_ms)
        self.shutting_down = True
        if self.role is Role.LEADER:
            self._resign(now_ms)
        elif self.role is Role.PROSPECTIVE:
            self._on_prospective_timeout(now_ms)

    def poll(self, now_ms: int) -> Ready:
        """Fires due timers and hands out everything the shell must do; ``advance`` must follow."""
        self._enter(now_ms)
        self._fire_timers(now_ms)
        persist = self._durable_state()
        persist = None if persist == self._persisted else persist
        if persist is not None:
            self._persisted = persist
        changes = self._log.pending_changes()
        load_snapshot, committed = self._take_committed()
        ready = Ready(
            persist_election_state=persist, install_snapshot=changes.install_snapshot,
            truncate_to=changes.truncate_to, append_entries=changes.append_entries, outbox=tuple(self._outbox),
            load_snapshot=load_snapshot, committed_entries=committed, create_snapshot=self._snapshot_due(),
            role=self.role, epoch=self.epoch, leader_id=self._leader_hint(), high_watermark=self.high_watermark,
            next_deadline_ms=self._next_deadline_ms())
        self._outbox.clear()
        self._in_ready = ready
        return ready

    def advance(self, ready: Ready) -> None:
        """The shell finished ``ready`` (persisted, sent, applied, snapshotted)."""
        invariant(self._in_ready is ready, "advance() must get the Ready returned by the last poll()")
        self._in_ready = None
        changes = self._log.pending_changes()
        invariant(len(changes.append_entries) == len(ready.append_entries), "log changed between poll() and advance()")
        self._log.on_advance(changes, ready.create_snapshot)
        if self.role is Role.LEADER:
            self._maybe_update_high_watermark()   # our own entries now count: they are fsynced

    def has_ready(self) -> bool:
        """True when ``poll`` would return work even though no timer is due (call it after ``advance``)."""
        return (bool(self._outbox) or self._log.has_pending_changes() or self._durable_state() != self._persisted
                or self._applied_offset < self.high_watermark or self._snapshot_due() is not None)

    @property
    def log_start_offset(self) -> int:
        return self._log.log_start_offset

    @property
    def log_end_offset(self) -> int:
        return self._log.log_end_offset

    @property
    def last_epoch(self) -> int:
        return self._log.last_epoch

    @property
    def applied_offset(self) -> int:
        return self._applied_offset

    def read_entries(self, start_offset: int, end_offset: int) -> list[LogEntry]:
        """Entries ``[start, end)`` of the logical log (including not yet durable ones), for inspection."""
        return self._log.entries(start_offset, end_offset)

    def check_invariants(self) -> None:
        """Internal consistency; the simulator calls this after every step."""
        log = self._log
        high_watermark = self.high_watermark
        if not log.log_start_offset <= high_watermark <= log.log_end_offset:
            invariant(False, f"node {self.node_id}: HW {high_watermark} outside "
                             f"[{log.log_start_offset}, {log.log_end_offset}]")
        invariant(self._applied_offset <= high_watermark, "applied past the high watermark")
        invariant(self.is_voter or self.role in OBSERVER_ROLES, "an observer holds a voter-only role")
        self._check_role_data()

    def _check_role_data(self) -> None:
        role = self.role
        invariant((self._leader is not None) == (role is Role.LEADER), "leader state without leader role")
        invariant((self._follower is not None) == (role is Role.FOLLOWER), "follower state without follower role")
        invariant((self._tally is not None) == (role in (Role.PROSPECTIVE, Role.CANDIDATE)), "stray election tally")
        if role in (Role.LEADER, Role.RESIGNED):
            invariant(self.leader_id == self.node_id == self.voted_id, "leader must have voted for itself")
        elif role is Role.FOLLOWER:
            invariant(self.leader_id is not None and self.leader_id != self.node_id, "follower without a leader")
        elif role is Role.CANDIDATE:
            invariant(self.voted_id == self.node_id and self.leader_id is None, "candidate must vote for itself")
        elif role is Role.VOTED:
            invariant(self.voted_id is not None and self.leader_id is None, "voted without a vote")
        elif role is Role.UNATTACHED:
            invariant(self.voted_id is None and self.leader_id is None, "unattached with a vote or leader")

    # == transitions ===============================================================================================
    def _set_role(self, role: Role, epoch: int, voted_id: int | None, leader_id: int | None) -> None:
        """The only place the role changes: checked against the table in state.py."""
        check_transition(self.role, role, self.epoch, epoch)
        invariant(self.is_voter or role in OBSERVER_ROLES, f"observer {self.node_id} cannot become {role.value}")
        self.role, self.epoch, self.voted_id, self.leader_id = role, epoch, voted_id, leader_id
        self._leader = None
        self._follower = None
        self._tally = None

    def _become_unattached(self, epoch: int, now_ms: int) -> None:
        self._set_role(Role.UNATTACHED, epoch, None, None)
        if self.is_voter:
            self._deadline_ms = now_ms + quorum.random_election_timeout_ms(self._rng, self.config.election_timeout_ms)
        else:
            self._deadline_ms = now_ms + self.config.retry_backoff_ms

    def _become_voted(self, candidate_id: int, now_ms: int) -> None:
        self._set_role(Role.VOTED, self.epoch, candidate_id, None)
        # Kafka resets the election timer after granting a vote: give the candidate time to win.
        self._deadline_ms = now_ms + quorum.random_election_timeout_ms(self._rng, self.config.election_timeout_ms)

    def _transition_to_higher_epoch(self, epoch: int, leader_id: int | None, now_ms: int) -> None:
        invariant(epoch > self.epoch, "not a higher epoch")
        invariant(leader_id != self.node_id, f"node {self.node_id} told it leads epoch {epoch} it never won")
        if leader_id is None:
            self._become_unattached(epoch, now_ms)
        else:
            self._become_follower(epoch, leader_id, now_ms)

    def _maybe_handle_common_response(self, epoch: int, leader_id: int | None, now_ms: int) -> bool:
        """Epoch bookkeeping every response shares; True if the response needs no further handling."""
        if epoch < self.epoch:
            return True   # stale
        if epoch > self.epoch:
            self._transition_to_higher_epoch(epoch, leader_id, now_ms)
            return True
        return self._maybe_learn_leader(leader_id, now_ms)

    def _maybe_learn_leader(self, leader_id: int | None, now_ms: int) -> bool:
        """A same-epoch answer names a leader: follow it if we had none.  True if we transitioned."""
        if leader_id is None or leader_id == self.leader_id:
            return False
        invariant(leader_id != self.node_id, f"node {self.node_id} told it leads epoch {self.epoch}")
        invariant(self.leader_id is None, f"two leaders in epoch {self.epoch}: {self.leader_id} and {leader_id}")
        self._become_follower(self.epoch, leader_id, now_ms)
        return True

    def _durable_state(self) -> ElectionState:
        if self.unsafe.skip_vote_persistence and self.role is Role.VOTED and self.voted_id != self.node_id:
            return self._persisted   # deliberate bug (negative test): the vote and its epoch never hit disk
        return ElectionState(self.epoch, self.voted_id, self.leader_id)

    def _leader_hint(self) -> int | None:
        """The leader to name in answers: nobody while we are resigned (we will not serve)."""
        return None if self.role is Role.RESIGNED else self.leader_id

    # == timers ====================================================================================================
    def _fire_timers(self, now_ms: int) -> None:
        for _ in range(_MAX_TIMER_ROUNDS):
            if self._next_deadline_ms() > now_ms:
                return
            self._fire_one_round(now_ms)
        invariant(False, f"node {self.node_id}: timers keep firing at {now_ms}")

    def _fire_one_round(self, now_ms: int) -> None:
        role = self.role
        if role is Role.LEADER:
            self._on_leader_timers(now_ms)
            return
        if role is Role.FOLLOWER and self._follower.fetch_resend_ms <= now_ms < self._deadline_ms:
            self._send_fetch(now_ms)
            return
        if self._deadline_ms > now_ms:
            return
        if role is Role.FOLLOWER:
            self._on_fetch_timeout(now_ms)
        elif role is Role.PROSPECTIVE:
            self._on_prospective_timeout(now_ms)
        elif role is Role.UNATTACHED and not self.is_voter:
            self._send_discovery_fetch(now_ms)
        else:   # UNATTACHED/VOTED voters, CANDIDATE (lost or timed out), RESIGNED: campaign (pre-vote first)
            self._start_prospective(now_ms)

    def _next_deadline_ms(self) -> int:
        if self.role is Role.LEADER:
            return self._leader_deadline_ms()
        if self.role is Role.FOLLOWER:
            return min(self._deadline_ms, self._follower.fetch_resend_ms)
        return self._deadline_ms

    # == committed entries and snapshots ==========================================================================
    def _take_committed(self) -> tuple[SnapshotId | None, tuple[LogEntry, ...]]:
        """What the state machine must apply next: maybe a snapshot, then entries below the HW."""
        load_snapshot = None
        if self._applied_offset < self._log.log_start_offset:
            load_snapshot = self._log.snapshot_id()
            invariant(load_snapshot is not None, "log starts above 0 without a snapshot")
            self._applied_offset = load_snapshot.end_offset
        end = min(self.high_watermark, self._applied_offset + self.config.max_committed_entries_per_ready)
        if end <= self._applied_offset:
            return load_snapshot, ()
        committed = tuple(self._log.entries(self._applied_offset, end))
        self._applied_offset = end
        return load_snapshot, committed

    def _snapshot_due(self) -> SnapshotId | None:
        """Ask for a snapshot once enough applied entries sit past the log start."""
        log = self._log
        applied = self._applied_offset
        # Only entries the shell has already fsynced, so the snapshot never covers a write it might lose.
        if applied - log.log_start_offset < self.config.snapshot_interval_entries or applied > log.durable_end_offset:
            return None
        return SnapshotId(applied, log.epoch_before(applied))

    # == plumbing ==================================================================================================
    def _enter(self, now_ms: int) -> None:
        invariant(self._in_ready is None, "step/propose/poll called between poll() and advance()")
        if now_ms < self._now_ms:
            invariant(False, f"time went backwards: {now_ms} < {self._now_ms}")
        self._now_ms = now_ms

    def _send(self, message: RaftMessage) -> None:
        self._outbox.append(message)

    def _handle_end_quorum_epoch_response(self, response: EndQuorumEpochResponse, now_ms: int) -> None:
        self._maybe_handle_common_response(response.epoch, response.leader_id, now_ms)
