"""Elections: pre-vote (KIP-996), real votes, and the vote rules of KRaft (replication.md 1.4, 1.5).

Why a separate module: the vote rules are where Raft's safety lives (one vote per epoch, durable before the
reply; only candidates with an up-to-date log win), so they sit together and nothing else grants votes.

Flow.  A voter whose election or fetch timer expires becomes PROSPECTIVE and asks every other voter for a
*pre-vote* for ``epoch + 1``; nobody changes state for a pre-vote.  With a majority of pre-votes it becomes
CANDIDATE in ``epoch + 1`` (durably voting for itself) and asks for real votes; with a majority of those it
becomes LEADER.  A lost or timed-out pre-vote round returns the node to what it was doing (following the
leader it knew, or waiting); a lost real election backs off and pre-votes again.  So a node cut off from the
quorum keeps failing pre-votes and never bumps the epoch, which is what keeps it from deposing a healthy
leader when it reconnects.

Split votes.  Followers that lose their leader together may all win the pre-vote and run in the same epoch,
each voting for itself.  When the missing votes belong to a dead voter no answer ever makes the round
"lost", so each would wait out a whole election timeout (1-2 s) before retrying.  Two measures keep the
election after a leader crash short: the follower fetch timeout is jittered (_following.py), so usually one
follower campaigns alone; and a candidate that receives a real vote request from another candidate of its
own epoch counts it as a refusal (that candidate voted for itself) and arms the randomized, exponentially
growing backoff of a lost election (floored at ``retry_backoff_ms`` so that answers already on the way can
still arrive).  Whoever retries first finds the other still in the old epoch and gets its vote.  Timing
only: no grant rule changes, so safety does not depend on it.

Grant rules.  Real vote: only an UNATTACHED node, a VOTED node re-granting the same candidate, or a
PROSPECTIVE node that has neither voted nor seen a leader in the candidate's epoch, and only if the
candidate's ``(last epoch, LEO)`` is at least ours.  A request for a higher epoch first moves us (durably) to
UNATTACHED in that epoch, even if the vote is then refused.  Pre-vote: the leader refuses; a follower refuses
while it is successfully fetching from its leader; everyone else grants if the candidate's log is at least
as up-to-date.  A member that is shutting down (``RaftNode.begin_shutdown``) refuses every vote and pre-vote,
and never campaigns.  Units: all times are ``now_ms`` of the caller.
"""

from __future__ import annotations

import dataclasses

from cluster.core.errors import ErrorCode, invariant
from cluster.raft import quorum
from cluster.raft.messages import BeginQuorumEpochRequest, VoteRequest, VoteResponse
from cluster.raft.state import Role


@dataclasses.dataclass(slots=True)
class ElectionTally:
    """Answers collected in one pre-vote or vote round (ids; only voters are ever counted)."""

    pre_vote: bool
    granted: set[int]
    rejected: set[int] = dataclasses.field(default_factory=set)
    backed_off: bool = False     # the retry backoff is armed: the round was lost or the vote split


class VotingMixin:
    """Vote handling for ``RaftNode`` (state lives on the node; see node.py for the attributes)."""

    # -- starting rounds -------------------------------------------------------------------------------------
    def _start_prospective(self, now_ms: int) -> None:
        """Election or fetch timeout: ask for pre-votes for ``epoch + 1`` without changing the epoch."""
        invariant(self.is_voter, "an observer never campaigns")
        if self.shutting_down:   # never stand for election while stopping; look again after a timeout
            self._deadline_ms = now_ms + quorum.random_election_timeout_ms(self._rng, self.config.election_timeout_ms)
            return
        self._set_role(Role.PROSPECTIVE, self.epoch, self.voted_id, self.leader_id)
        self._tally = ElectionTally(pre_vote=True, granted={self.node_id})
        self._deadline_ms = now_ms + quorum.random_election_timeout_ms(self._rng, self.config.election_timeout_ms)
        self._send_vote_requests(self.epoch + 1, pre_vote=True)
        self._maybe_finish_election(now_ms)

    def _become_candidate(self, now_ms: int) -> None:
        """Majority of pre-votes: bump the epoch, vote for ourselves (durably) and ask for real votes."""
        self._set_role(Role.CANDIDATE, self.epoch + 1, self.node_id, None)
        self._tally = ElectionTally(pre_vote=False, granted={self.node_id})
        self._deadline_ms = now_ms + quorum.random_election_timeout_ms(self._rng, self.config.election_timeout_ms)
        self._send_vote_requests(self.epoch, pre_vote=False)
        self._maybe_finish_election(now_ms)

    def _send_vote_requests(self, candidate_epoch: int, pre_vote: bool) -> None:
        last_epoch, end_offset = self._log.last_epoch, self._log.log_end_offset
        for voter_id in self._other_voters:
            self._send(VoteRequest(self.node_id, voter_id, candidate_epoch, last_epoch, end_offset, pre_vote))

    def _maybe_finish_election(self, now_ms: int) -> None:
        tally = self._tally
        invariant(tally is not None, "no election in progress")
        if self.shutting_down:
            return   # a round begun before the shutdown never completes (see RaftNode.begin_shutdown)
        voter_count = len(self.voters)
        if quorum.count_in(tally.granted, self.voters) >= quorum.majority_size(voter_count):
            if tally.pre_vote:
                self._become_candidate(now_ms)
            else:
                self._become_leader(now_ms)
            return
        if not tally.backed_off and quorum.election_lost(quorum.count_in(tally.rejected, self.voters), voter_count):
            # A majority is out of reach: wait a randomized backoff instead of the whole timeout.
            self._deadline_ms = now_ms + self._next_election_backoff_ms(tally)

    def _next_election_backoff_ms(self, tally: ElectionTally) -> int:
        tally.backed_off = True
        self._election_retries += 1
        return quorum.binary_exponential_backoff_ms(
            self._rng, self._election_retries, self.config.retry_backoff_ms, self.config.election_backoff_max_ms)

    def _on_competing_candidate(self, candidate_id: int, now_ms: int) -> None:
        """Another candidate asked for our vote in our epoch: a split vote (see the module docstring)."""
        tally = self._tally
        tally.rejected.add(candidate_id)   # it voted for itself, so it will never grant us
        self._maybe_finish_election(now_ms)
        if self.role is Role.CANDIDATE and not tally.backed_off:
            backoff_ms = self.config.retry_backoff_ms + self._next_election_backoff_ms(tally)
            self._deadline_ms = min(self._deadline_ms, now_ms + backoff_ms)

    def _on_prospective_timeout(self, now_ms: int) -> None:
        """Pre-vote round lost or timed out: go back to the leader we knew, or wait (keeping our vote)."""
        if self.leader_id == self.node_id:
            self._become_resigned(now_ms)   # we led this epoch: stay the one that must never vote in it
        elif self.leader_id is not None:
            self._become_follower(self.epoch, self.leader_id, now_ms)
        elif self.voted_id is not None:
            self._become_voted(self.voted_id, now_ms)
        else:
            self._become_unattached(self.epoch, now_ms)

    # -- requests -------------------------------------------------------------------------------------------
    def _handle_vote_request(self, request: VoteRequest, now_ms: int) -> None:
        error = self._vote_request_error(request)
        if error is not ErrorCode.NONE or self.shutting_down:
            self._reply_vote(request, False, error)   # a stopping member helps elect nobody
            return
        if request.pre_vote:
            self._reply_vote(request, self._can_grant_pre_vote(request), ErrorCode.NONE)
            return
        if request.candidate_epoch < self.epoch:
            self._reply_vote(request, False, ErrorCode.FENCED_LEADER_EPOCH)
            return
        if request.candidate_epoch > self.epoch:
            self._become_unattached(request.candidate_epoch, now_ms)
        granted = self._can_grant_vote(request)
        if granted and self.role is not Role.VOTED:
            self._become_voted(request.source_id, now_ms)
        self._reply_vote(request, granted, ErrorCode.NONE)
        if self.role is Role.CANDIDATE and request.source_id != self.node_id:
            self._on_competing_candidate(request.source_id, now_ms)

    def _vote_request_error(self, request: VoteRequest) -> ErrorCode:
        if not self.is_voter or request.source_id not in self.voters:
            return ErrorCode.INCONSISTENT_VOTER_SET
        if (request.last_offset < 0 or request.last_offset_epoch < 0
                or request.last_offset_epoch >= request.candidate_epoch):
            return ErrorCode.INVALID_REQUEST
        return ErrorCode.NONE

    def _can_grant_vote(self, request: VoteRequest) -> bool:
        """Real vote in our (possibly just raised) epoch; see the module docstring for the rule."""
        role = self.role
        if role is Role.UNATTACHED:
            eligible = True
        elif role is Role.VOTED:
            eligible = self.voted_id == request.source_id
        elif role is Role.PROSPECTIVE:
            eligible = self.leader_id is None and self.voted_id in (None, request.source_id)
        else:
            return False
        return eligible and self._candidate_log_ok(request)

    def _can_grant_pre_vote(self, request: VoteRequest) -> bool:
        if request.candidate_epoch <= self.epoch:
            return False   # the requester is behind; our reply's epoch tells it so
        if self.role is Role.LEADER:
            return False
        if self.role is Role.FOLLOWER and self._follower is not None and self._follower.has_fetched:
            return False   # our leader is alive: do not help anyone depose it
        return self._candidate_log_ok(request)

    def _candidate_log_ok(self, request: VoteRequest) -> bool:
        if self.unsafe.grant_vote_ignoring_log:
            return True
        return quorum.is_log_up_to_date(request.last_offset_epoch, request.last_offset,
                                        self._log.last_epoch, self._log.log_end_offset)

    def _reply_vote(self, request: VoteRequest, granted: bool, error: ErrorCode) -> None:
        self._send(VoteResponse(self.node_id, request.source_id, error, self.epoch, self._leader_hint(),
                                granted, request.candidate_epoch, request.pre_vote))

    # -- responses ------------------------------------------------------------------------------------------
    def _handle_vote_response(self, response: VoteResponse, now_ms: int) -> None:
        # Lower-epoch answers still count: a voter that has not caught up on epochs can grant a pre-vote,
        # and a real grant always carries the candidate's epoch (the voter moved to it first).
        if response.epoch > self.epoch:
            self._transition_to_higher_epoch(response.epoch, response.leader_id, now_ms)
            return
        if response.epoch == self.epoch and self._maybe_learn_leader(response.leader_id, now_ms):
            return
        if not self._is_current_round(response) or response.source_id not in self.voters:
            return
        tally = self._tally
        if response.vote_granted:
            tally.granted.add(response.source_id)
        else:
            tally.rejected.add(response.source_id)
        self._maybe_finish_election(now_ms)

    def _is_current_round(self, response: VoteResponse) -> bool:
        if self.role is Role.PROSPECTIVE:
            return response.pre_vote and response.candidate_epoch == self.epoch + 1
        if self.role is Role.CANDIDATE:
            return not response.pre_vote and response.candidate_epoch == self.epoch
        return False

    def _send_begin_quorum_epoch(self, voter_id: int) -> None:
        self._send(BeginQuorumEpochRequest(self.node_id, voter_id, self.epoch))
