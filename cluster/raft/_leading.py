"""The leader's side of KRaft: serving Fetch/FetchSnapshot, the high watermark, check-quorum, resignation.

Why pull (followers Fetch) rather than push (leader AppendEntries), as KRaft does (KIP-595):
  * one RPC carries both directions of information: the follower's durable log end offset (the ack the
    leader counts toward the high watermark) and the leader's entries, HW and divergence answer;
  * the leader keeps no per-follower send window or retry state; a follower that restarts, lags, or needs a
    snapshot simply asks from where it is, which makes loss, duplication and reordering harmless;
  * observers (brokers outside the voter set) replicate with exactly the same RPC, and liveness of the
    leader is visible as "who fetched recently" (check-quorum) without a separate heartbeat;
  * it is the same shape as partition replication (replica fetchers), so one mental model serves both.
The cost is latency of one fetch round-trip for commit, which long-polling (parked fetches completed on
append or HW change) keeps small.

High watermark rule (Raft section 5.4.2, Kafka ``LeaderState.maybeUpdateHighWatermark``): the leader sorts the
voters' durable end offsets (its own counts only once the shell has fsynced, i.e. after ``advance``), takes
the majority value, and adopts it only if it lies past ``epoch_start_offset`` -- that is, once the
LeaderChange entry of its own epoch is on a majority -- and only if it is higher than the current HW.  So an
entry of an older epoch is committed only indirectly, and the HW never decreases.

Check-quorum: a leader that has not received a valid Fetch/FetchSnapshot from a majority of voters (itself
counted) within ``1.5 x fetch_timeout_ms`` resigns, so a leader cut off from the quorum stops accepting
writes.  Graceful resignation sends EndQuorumEpoch with the other voters sorted by how far they replicated.
"""

from __future__ import annotations

import dataclasses

from cluster.core.errors import ErrorCode, invariant
from cluster.raft import quorum
from cluster.raft.log import LogEntry, OffsetAndEpoch, SnapshotId
from cluster.raft.messages import (
    BeginQuorumEpochResponse,
    EndQuorumEpochRequest,
    FetchRequest,
    FetchResponse,
    FetchSnapshotRequest,
    FetchSnapshotResponse,
)
from cluster.raft.state import Role


@dataclasses.dataclass(slots=True)
class ReplicaProgress:
    """What the leader knows of one replica in its epoch."""

    replica_id: int
    end_offset: int = 0          # durable LEO from its last valid Fetch (0 until it fetched)
    last_fetch_ms: int = -1
    acknowledged: bool = False   # fetched or answered BeginQuorumEpoch in this epoch (heartbeats stop)


@dataclasses.dataclass(slots=True)
class LeaderState:
    epoch_start_offset: int
    voters: dict[int, ReplicaProgress]           # the other voters
    observers: dict[int, ReplicaProgress]
    check_quorum_deadline_ms: int
    begin_quorum_resend_ms: int
    fetched_since_check: set[int] = dataclasses.field(default_factory=set)
    parked: dict[int, tuple[FetchRequest, int]] = dataclasses.field(default_factory=dict)  # id -> (req, expiry)


@dataclasses.dataclass(frozen=True, slots=True)
class ReplicaInfo:
    replica_id: int
    log_end_offset: int
    last_fetch_ms: int


@dataclasses.dataclass(frozen=True, slots=True)
class QuorumInfo:
    """A leader's view for ``describe-quorum``: each voter's and observer's replicated end offset."""

    leader_id: int
    leader_epoch: int
    high_watermark: int
    voters: tuple[ReplicaInfo, ...]
    observers: tuple[ReplicaInfo, ...]


CONTROL_LEADER_CHANGE = b"LeaderChange"


class LeadingMixin:
    """Leader behaviour of ``RaftNode`` (state lives on the node; see node.py for the attributes)."""

    # -- becoming and leaving --------------------------------------------------------------------------------
    def _become_leader(self, now_ms: int) -> None:
        self._set_role(Role.LEADER, self.epoch, self.node_id, self.node_id)
        self._election_retries = 0
        self._leader = LeaderState(
            epoch_start_offset=self._log.log_end_offset,
            voters={v: ReplicaProgress(v) for v in self._other_voters},
            observers={},
            check_quorum_deadline_ms=now_ms + self.config.check_quorum_timeout_ms,
            begin_quorum_resend_ms=now_ms + self.config.begin_quorum_epoch_resend_ms)
        # The LeaderChange control entry gives the epoch an entry of its own to commit (section 5.4.2).
        payload = CONTROL_LEADER_CHANGE + b":%d" % self.node_id
        self._log.append(LogEntry(self._log.log_end_offset, self.epoch, payload, is_control=True))
        for voter_id in self._other_voters:
            self._send_begin_quorum_epoch(voter_id)

    def resign(self, now_ms: int) -> bool:
        """Graceful resignation (shutdown or operator request).  Returns False if this node is not leader."""
        self._enter(now_ms)
        if self.role is not Role.LEADER:
            return False
        self._resign(now_ms)
        return True

    def _resign(self, now_ms: int) -> None:
        leader = self._leader
        successors = tuple(sorted(leader.voters, key=lambda v: (-leader.voters[v].end_offset, v)))
        for request, _expiry in leader.parked.values():
            self._reply_fetch_error(request, ErrorCode.NOT_LEADER_OR_FOLLOWER)
        self._become_resigned(now_ms)
        for voter_id in successors:
            self._send(EndQuorumEpochRequest(self.node_id, voter_id, self.epoch, successors))

    def _become_resigned(self, now_ms: int) -> None:
        self._set_role(Role.RESIGNED, self.epoch, self.node_id, self.node_id)
        self._deadline_ms = now_ms + quorum.random_election_timeout_ms(self._rng, self.config.election_timeout_ms)

    # -- timers ----------------------------------------------------------------------------------------------
    def _leader_deadline_ms(self) -> int:
        leader = self._leader
        deadline = min(leader.begin_quorum_resend_ms, leader.check_quorum_deadline_ms)
        for _request, expiry_ms in leader.parked.values():
            deadline = min(deadline, expiry_ms)
        return deadline

    def _on_leader_timers(self, now_ms: int) -> None:
        leader = self._leader
        expired = [rid for rid, (_req, expiry) in leader.parked.items() if expiry <= now_ms]
        for replica_id in expired:
            request, _expiry = leader.parked.pop(replica_id)
            self._reply_fetch_entries(request)
        if leader.begin_quorum_resend_ms <= now_ms:
            # A heartbeat to every voter that has gone quiet, not only to those that never answered: a
            # voter that moved to a higher epoch (it ran a lost election) stops fetching from us, and its
            # FENCED_LEADER_EPOCH answer is how we learn that epoch and step down; otherwise pre-vote would
            # leave it stranded and ignored forever.
            quiet_before_ms = now_ms - self.config.begin_quorum_epoch_resend_ms
            for progress in leader.voters.values():
                if not progress.acknowledged or progress.last_fetch_ms < quiet_before_ms:
                    self._send_begin_quorum_epoch(progress.replica_id)
            leader.begin_quorum_resend_ms = now_ms + self.config.begin_quorum_epoch_resend_ms
        if leader.check_quorum_deadline_ms <= now_ms:
            if len(self.voters) == 1:
                leader.check_quorum_deadline_ms = now_ms + self.config.check_quorum_timeout_ms
            else:
                self._resign(now_ms)   # no majority contact: stop acting as leader

    # -- Fetch -----------------------------------------------------------------------------------------------
    def _leader_request_error(self, request_epoch: int) -> ErrorCode:
        """Kafka's epoch validation for leader-only requests (Fetch, FetchSnapshot)."""
        if request_epoch < self.epoch:
            return ErrorCode.FENCED_LEADER_EPOCH
        if request_epoch > self.epoch:
            return ErrorCode.UNKNOWN_LEADER_EPOCH
        if self.role is not Role.LEADER:
            return ErrorCode.NOT_LEADER_OR_FOLLOWER
        return ErrorCode.NONE

    def _handle_fetch_request(self, request: FetchRequest, now_ms: int) -> None:
        error = self._leader_request_error(request.current_leader_epoch)
        if error is ErrorCode.NONE and (request.last_fetched_epoch > request.current_leader_epoch
                                        or request.fetch_offset < 0):
            error = ErrorCode.INVALID_REQUEST
        if error is not ErrorCode.NONE:
            self._reply_fetch_error(request, error)
            return
        position = self._validate_fetch_position(request.fetch_offset, request.last_fetched_epoch)
        if isinstance(position, SnapshotId):
            self._reply_fetch(request, snapshot_id=position)
            return
        if isinstance(position, OffsetAndEpoch):
            self._reply_fetch(request, diverging_epoch=position)
            return
        # Only a valid position is replication progress (a diverging follower's offset means nothing).
        self._on_replica_fetch(request.source_id, request.fetch_offset, now_ms)
        leader = self._leader
        if self._fetch_has_news(request):
            leader.parked.pop(request.source_id, None)
            self._reply_fetch_entries(request)
        else:
            leader.parked[request.source_id] = (request, now_ms + self.config.fetch_max_wait_ms)

    def _validate_fetch_position(self, fetch_offset: int, last_fetched_epoch: int) -> SnapshotId | OffsetAndEpoch | None:
        """None if ``(fetch_offset, last_fetched_epoch)`` matches our log; else where the follower must go.

        A SnapshotId when the position is below our log start (or its epoch predates it); an
        OffsetAndEpoch (largest epoch <= theirs, its end offset) when the logs diverge.
        """
        log = self._log
        snapshot = log.snapshot_id()
        if snapshot is not None and (fetch_offset < log.log_start_offset or (
                fetch_offset == log.log_start_offset and last_fetched_epoch != snapshot.epoch)):
            return snapshot
        found = log.end_offset_for_epoch(last_fetched_epoch)
        if found is None:
            invariant(snapshot is not None, "epoch lookup failed without a snapshot")
            return snapshot
        end_epoch, end_offset = found
        if end_epoch != last_fetched_epoch or end_offset < fetch_offset:
            return OffsetAndEpoch(end_offset, end_epoch)
        return None

    def _on_replica_fetch(self, replica_id: int, end_offset: int, now_ms: int) -> None:
        leader = self._leader
        progress = leader.voters.get(replica_id)
        if progress is None:
            progress = leader.observers.setdefault(replica_id, ReplicaProgress(replica_id))
            progress.end_offset, progress.last_fetch_ms = end_offset, now_ms
            return
        progress.end_offset, progress.last_fetch_ms, progress.acknowledged = end_offset, now_ms, True
        self._note_voter_contact(replica_id, now_ms)
        self._maybe_update_high_watermark()

    def _note_voter_contact(self, voter_id: int, now_ms: int) -> None:
        leader = self._leader
        leader.fetched_since_check.add(voter_id)
        if len(leader.fetched_since_check) + 1 >= quorum.majority_size(len(self.voters)):
            leader.check_quorum_deadline_ms = now_ms + self.config.check_quorum_timeout_ms
            leader.fetched_since_check.clear()

    def _fetch_has_news(self, request: FetchRequest) -> bool:
        if request.fetch_offset < self._log.log_end_offset:
            return True
        return min(self.high_watermark, request.fetch_offset) > request.high_watermark

    def _complete_parked_fetches(self) -> None:
        """New entries or a higher HW: answer every parked fetch that now has something to say."""
        leader = self._leader
        if leader is None or not leader.parked:
            return
        ready = [rid for rid, (req, _expiry) in leader.parked.items() if self._fetch_has_news(req)]
        for replica_id in ready:
            request, _expiry = leader.parked.pop(replica_id)
            self._reply_fetch_entries(request)

    def _reply_fetch_entries(self, request: FetchRequest) -> None:
        start = request.fetch_offset
        end = min(self._log.log_end_offset, start + self.config.fetch_max_entries)
        entries = self._log.entries(start, end) if start < end else []
        self._reply_fetch(request, entries=tuple(_bounded_by_bytes(entries, self.config.fetch_max_bytes)))

    def _reply_fetch(self, request: FetchRequest, *, entries: tuple[LogEntry, ...] = (),
                     diverging_epoch: OffsetAndEpoch | None = None, snapshot_id: SnapshotId | None = None) -> None:
        self._send(FetchResponse(
            self.node_id, request.source_id, ErrorCode.NONE, self.epoch, self.node_id, request.fetch_offset,
            request.last_fetched_epoch, self.high_watermark, self._log.log_start_offset, entries,
            diverging_epoch, snapshot_id))

    def _reply_fetch_error(self, request: FetchRequest, error: ErrorCode) -> None:
        self._send(FetchResponse(self.node_id, request.source_id, error, self.epoch, self._leader_hint(),
                                 request.fetch_offset, request.last_fetched_epoch))

    # -- FetchSnapshot ----------------------------------------------------------------------------------------
    def _handle_fetch_snapshot_request(self, request: FetchSnapshotRequest, now_ms: int) -> None:
        error = self._leader_request_error(request.current_leader_epoch)
        size = self._log.snapshot_size_bytes(request.snapshot_id) if error is ErrorCode.NONE else None
        if error is ErrorCode.NONE and size is None:
            error = ErrorCode.SNAPSHOT_NOT_FOUND
        if error is ErrorCode.NONE and not 0 <= request.position < size:
            error = ErrorCode.POSITION_OUT_OF_RANGE
        if error is not ErrorCode.NONE:
            self._send(FetchSnapshotResponse(self.node_id, request.source_id, error, self.epoch,
                                             self._leader_hint(), request.snapshot_id, request.position))
            return
        if request.source_id in self._leader.voters:
            self._leader.voters[request.source_id].last_fetch_ms = now_ms
            self._note_voter_contact(request.source_id, now_ms)
        chunk = self._log.read_snapshot_chunk(request.snapshot_id, request.position, self.config.snapshot_chunk_bytes)
        invariant(chunk is not None and len(chunk) > 0, "snapshot chunk vanished while being served")
        self._send(FetchSnapshotResponse(self.node_id, request.source_id, ErrorCode.NONE, self.epoch,
                                         self.node_id, request.snapshot_id, request.position, size, chunk,
                                         self.high_watermark))

    # -- high watermark ---------------------------------------------------------------------------------------
    def _maybe_update_high_watermark(self) -> bool:
        leader = self._leader
        if leader is None:
            return False
        end_offsets = [self._log.durable_end_offset] + [p.end_offset for p in leader.voters.values()]
        candidate = quorum.majority_end_offset(end_offsets)
        if candidate <= self.high_watermark:
            return False   # never move backwards (possible only transiently after truncating followers)
        if candidate <= leader.epoch_start_offset and not self.unsafe.commit_old_epoch_entries:
            return False   # nothing of our own epoch is on a majority yet (Raft 5.4.2, "Figure 8")
        self.high_watermark = candidate
        self._complete_parked_fetches()
        return True

    def _handle_begin_quorum_epoch_response(self, response: BeginQuorumEpochResponse, now_ms: int) -> None:
        if self._maybe_handle_common_response(response.epoch, response.leader_id, now_ms):
            return
        if self.role is Role.LEADER and response.error_code is ErrorCode.NONE:
            progress = self._leader.voters.get(response.source_id)
            if progress is not None:
                progress.acknowledged = True

    def quorum_info(self) -> QuorumInfo | None:
        """Replication state of every known replica, or None when this node is not the leader."""
        leader = self._leader
        if leader is None:
            return None
        own = ReplicaInfo(self.node_id, self._log.durable_end_offset, self._now_ms)
        voters = (own,) + tuple(ReplicaInfo(p.replica_id, p.end_offset, p.last_fetch_ms)
                                for p in leader.voters.values())
        observers = tuple(ReplicaInfo(p.replica_id, p.end_offset, p.last_fetch_ms) for p in leader.observers.values())
        return QuorumInfo(self.node_id, self.epoch, self.high_watermark, voters, observers)


def _bounded_by_bytes(entries: list[LogEntry], max_bytes: int) -> list[LogEntry]:
    """The longest prefix within ``max_bytes`` of payload, but at least one entry (so progress is made)."""
    total = 0
    for index, entry in enumerate(entries):
        total += len(entry.payload)
        if total > max_bytes and index > 0:
            return entries[:index]
    return entries
