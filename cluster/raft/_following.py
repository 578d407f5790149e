"""The follower's side of KRaft: fetching, truncation on divergence, snapshot download, leader discovery.

Why a separate module: everything a non-leader does with the leader's answers lives here, so the rules that
protect committed data on a follower are in one place:
  * append only what continues our log exactly where we asked (responses echo our fetch position; an echo
    that no longer matches is stale -- delayed, duplicated or reordered -- and is dropped);
  * on a diverging epoch, truncate to ``min(leader's end offset, our end offset for that epoch)``, never
    below our high watermark (that would drop committed data: a fatal invariant, as in Kafka);
  * the follower HW is ``min(leader HW, our LEO)`` and only ever grows; it is updated from valid responses
    only (a diverging response says nothing about our log);
  * a snapshot arrives in chunks by byte position; when complete it replaces the whole log.
Observers (non-voters) use the same code; when they know no leader they send a Fetch to a random voter,
whose error answer names the leader (discovery).  A voter that stops hearing from its leader for
``fetch_timeout_ms`` (plus up to a quarter of it, drawn afresh on every re-arm: see
``quorum.jittered_fetch_timeout_ms``) starts a pre-vote; an observer goes back to discovery.
"""

from __future__ import annotations

import dataclasses

from cluster.core.errors import ErrorCode, invariant
from cluster.raft import quorum
from cluster.raft.log import OffsetAndEpoch, SnapshotId
from cluster.raft.messages import (
    BeginQuorumEpochRequest,
    BeginQuorumEpochResponse,
    EndQuorumEpochRequest,
    EndQuorumEpochResponse,
    FetchRequest,
    FetchResponse,
    FetchSnapshotRequest,
    FetchSnapshotResponse,
)
from cluster.raft.state import Role


@dataclasses.dataclass(slots=True)
class SnapshotDownload:
    snapshot_id: SnapshotId
    data: bytearray = dataclasses.field(default_factory=bytearray)


@dataclasses.dataclass(slots=True)
class FollowerState:
    has_fetched: bool = False        # a Fetch to the leader succeeded in this epoch (pre-vote rule)
    fetch_resend_ms: int = 0         # when to send the next Fetch/FetchSnapshot if none is answered
    download: SnapshotDownload | None = None


class FollowingMixin:
    """Follower and observer behaviour of ``RaftNode`` (state lives on the node; see node.py)."""

    def _become_follower(self, epoch: int, leader_id: int, now_ms: int) -> None:
        invariant(leader_id != self.node_id, "a node never follows itself")
        voted_id = self.voted_id if epoch == self.epoch else None
        self._set_role(Role.FOLLOWER, epoch, voted_id, leader_id)
        self._election_retries = 0
        self._follower = FollowerState()
        self._arm_fetch_timeout(now_ms)
        self._send_fetch(now_ms)

    def _arm_fetch_timeout(self, now_ms: int) -> None:
        """(Re)start the wait for the leader's next answer, jittered so followers do not campaign together."""
        self._deadline_ms = now_ms + quorum.jittered_fetch_timeout_ms(self._rng, self.config.fetch_timeout_ms)

    def _on_fetch_timeout(self, now_ms: int) -> None:
        """No successful answer from the leader for ``fetch_timeout_ms``."""
        if self.is_voter:
            self._start_prospective(now_ms)
        else:
            self._become_unattached(self.epoch, now_ms)

    # -- sending ---------------------------------------------------------------------------------------------
    def _send_fetch(self, now_ms: int) -> None:
        follower = self._follower
        log = self._log
        if follower.download is not None:
            download = follower.download
            self._send(FetchSnapshotRequest(self.node_id, self.leader_id, self.epoch, download.snapshot_id,
                                            len(download.data)))
        else:
            self._send(FetchRequest(self.node_id, self.leader_id, self.epoch, log.log_end_offset, log.last_epoch,
                                    self.high_watermark))
        follower.fetch_resend_ms = now_ms + self.config.request_timeout_ms

    def _send_discovery_fetch(self, now_ms: int) -> None:
        """An observer without a leader asks a random voter; the (error) answer names the leader."""
        voter_id = self._rng.choice(sorted(self.voters))
        log = self._log
        self._send(FetchRequest(self.node_id, voter_id, self.epoch, log.log_end_offset, log.last_epoch,
                                self.high_watermark))
        self._deadline_ms = now_ms + self.config.election_timeout_ms

    def _on_fetch_answered(self, now_ms: int) -> None:
        follower = self._follower
        follower.has_fetched = True
        self._arm_fetch_timeout(now_ms)
        self._send_fetch(now_ms)

    def _retry_fetch_later(self, now_ms: int) -> None:
        self._follower.fetch_resend_ms = now_ms + self.config.retry_backoff_ms

    # -- Fetch responses --------------------------------------------------------------------------------------
    def _handle_fetch_response(self, response: FetchResponse, now_ms: int) -> None:
        if self._maybe_handle_common_response(response.epoch, response.leader_id, now_ms):
            return
        if not self._is_from_my_leader(response.source_id):
            return
        if response.error_code is not ErrorCode.NONE:
            self._retry_fetch_later(now_ms)
            return
        log = self._log
        if (self._follower.download is not None or response.fetch_offset != log.log_end_offset
                or response.last_fetched_epoch != log.last_epoch):
            return   # an answer to an older request: our log has moved since
        if response.diverging_epoch is not None:
            self._truncate_on_divergence(response.diverging_epoch)
        elif response.snapshot_id is not None:
            self._follower.download = SnapshotDownload(response.snapshot_id)
        else:
            self._append_fetched(response)
        self._on_fetch_answered(now_ms)

    def _is_from_my_leader(self, source_id: int) -> bool:
        return self.role is Role.FOLLOWER and source_id == self.leader_id

    def _truncate_on_divergence(self, diverging: OffsetAndEpoch) -> None:
        local = self._log.end_offset_for_epoch(diverging.epoch)
        invariant(local is not None, "leader's diverging epoch is older than our snapshot")
        end_offset = min(diverging.offset, local[1])
        invariant(end_offset >= self.high_watermark,
                  f"truncation to {end_offset} would drop committed entries below HW {self.high_watermark}")
        self._log.truncate_to(end_offset)

    def _append_fetched(self, response: FetchResponse) -> None:
        log = self._log
        for entry in response.entries:
            invariant(entry.epoch <= response.epoch, "leader sent an entry from a future epoch")
            log.append(entry)
        self._raise_high_watermark(min(response.high_watermark, log.log_end_offset))

    def _raise_high_watermark(self, high_watermark: int) -> None:
        if high_watermark > self.high_watermark:
            self.high_watermark = high_watermark

    # -- FetchSnapshot responses ------------------------------------------------------------------------------
    def _handle_fetch_snapshot_response(self, response: FetchSnapshotResponse, now_ms: int) -> None:
        if self._maybe_handle_common_response(response.epoch, response.leader_id, now_ms):
            return
        if not self._is_from_my_leader(response.source_id):
            return
        download = self._follower.download
        if download is None or download.snapshot_id != response.snapshot_id or response.position != len(download.data):
            return   # stale or duplicated chunk
        if response.error_code is not ErrorCode.NONE or not self._chunk_acceptable(response):
            self._follower.download = None   # start over from a Fetch (the leader may have a newer snapshot)
            self._retry_fetch_later(now_ms)
            return
        download.data.extend(response.chunk)
        if len(download.data) == response.size_bytes:
            self._install_downloaded_snapshot(download, response.high_watermark)
        self._on_fetch_answered(now_ms)

    def _chunk_acceptable(self, response: FetchSnapshotResponse) -> bool:
        end = response.position + len(response.chunk)
        return 0 < len(response.chunk) and end <= response.size_bytes <= self.config.snapshot_bytes_max

    def _install_downloaded_snapshot(self, download: SnapshotDownload, leader_high_watermark: int) -> None:
        snapshot_id = download.snapshot_id
        invariant(self.high_watermark <= snapshot_id.end_offset,
                  "a snapshot below our high watermark would replace committed entries")
        self._log.install_snapshot(snapshot_id, bytes(download.data))
        self._follower.download = None
        # A snapshot is only ever taken at or below the HW, so everything it covers is committed.
        self._raise_high_watermark(min(max(leader_high_watermark, snapshot_id.end_offset), self._log.log_end_offset))

    # -- BeginQuorumEpoch / EndQuorumEpoch requests -----------------------------------------------------------
    def _handle_begin_quorum_epoch_request(self, request: BeginQuorumEpochRequest, now_ms: int) -> None:
        if request.leader_epoch < self.epoch:
            self._send(BeginQuorumEpochResponse(self.node_id, request.source_id, ErrorCode.FENCED_LEADER_EPOCH,
                                                self.epoch, self._leader_hint()))
            return
        self._accept_leader(request.leader_epoch, request.source_id, now_ms)
        self._send(BeginQuorumEpochResponse(self.node_id, request.source_id, ErrorCode.NONE, self.epoch,
                                            self._leader_hint()))

    def _handle_end_quorum_epoch_request(self, request: EndQuorumEpochRequest, now_ms: int) -> None:
        if request.leader_epoch < self.epoch:
            self._send(EndQuorumEpochResponse(self.node_id, request.source_id, ErrorCode.FENCED_LEADER_EPOCH,
                                              self.epoch, self._leader_hint()))
            return
        self._accept_leader(request.leader_epoch, request.source_id, now_ms)
        if self.role is Role.FOLLOWER and self.is_voter:
            # The leader is going away: stop vouching for it (grant pre-votes) and campaign by rank.
            self._follower.has_fetched = False
            backoff_ms = quorum.end_epoch_backoff_ms(request.preferred_successors, self.node_id,
                                                     self.config.retry_backoff_ms, self.config.election_backoff_max_ms)
            if backoff_ms is None:
                backoff_ms = quorum.random_election_timeout_ms(self._rng, self.config.election_timeout_ms)
            self._deadline_ms = min(self._deadline_ms, now_ms + backoff_ms)
        self._send(EndQuorumEpochResponse(self.node_id, request.source_id, ErrorCode.NONE, self.epoch,
                                          self._leader_hint()))

    def _accept_leader(self, epoch: int, leader_id: int, now_ms: int) -> None:
        """``leader_id`` claims leadership of ``epoch >= ours``: follow it unless we already do."""
        if epoch > self.epoch:
            self._become_follower(epoch, leader_id, now_ms)
            return
        if self.role is Role.FOLLOWER and self.leader_id == leader_id:
            return
        invariant(self.role not in (Role.LEADER, Role.RESIGNED),
                  f"node {leader_id} claims epoch {epoch}, which node {self.node_id} leads")
        invariant(self.leader_id in (None, leader_id),
                  f"two leaders in epoch {epoch}: {self.leader_id} and {leader_id}")
        self._become_follower(epoch, leader_id, now_ms)
