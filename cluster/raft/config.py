"""Timing and size knobs of the Raft metadata quorum, with Kafka's defaults.

Why a separate module: the core, the simulator and (later) the broker's config loader all need the same
frozen value, and every field maps onto one ``controller.quorum.*`` property of Kafka 3.9
(``raft/.../QuorumConfig.java``), so the names below say which property each comes from.  All durations
are milliseconds of the caller's clock (``now_ms``); the core never reads a clock itself.
"""

from __future__ import annotations

import dataclasses

from cluster.core.errors import invariant


@dataclasses.dataclass(frozen=True, slots=True)
class RaftConfig:
    """Frozen configuration of one ``RaftNode``; ``__post_init__`` rejects inconsistent values."""

    # controller.quorum.election.timeout.ms: the real timeout is drawn from [T, 2T) on every reset.
    election_timeout_ms: int = 1000
    # controller.quorum.fetch.timeout.ms: a voter that has not had a successful Fetch for this long
    # (plus a random jitter of up to a quarter of it, so followers do not campaign together) campaigns; the leader resends BeginQuorumEpoch every half of it; check-quorum uses 1.5x it.
    fetch_timeout_ms: int = 2000
    # controller.quorum.election.backoff.max.ms: upper bound of the randomized backoff after a lost election.
    election_backoff_max_ms: int = 1000
    # controller.quorum.retry.backoff.ms: base of the exponential election backoff and the pause after a
    # failed Fetch before the next one.
    retry_backoff_ms: int = 20
    # controller.quorum.request.timeout.ms: an outstanding Fetch/FetchSnapshot without an answer is resent.
    request_timeout_ms: int = 2000
    # Raft Fetch long-poll: how long the leader parks a Fetch that finds nothing new (MAX_FETCH_WAIT_MS).
    fetch_max_wait_ms: int = 500
    # Bounds of one FetchResponse (Kafka bounds bytes; entries are bounded too so one response stays small).
    fetch_max_entries: int = 512
    fetch_max_bytes: int = 8 * 1024 * 1024
    # How many applied entries past the last snapshot make the core ask the shell for a new snapshot
    # (Kafka: metadata.log.max.record.bytes.between.snapshots; counted in entries here).
    snapshot_interval_entries: int = 10_000
    # Size of one FetchSnapshot chunk, and the largest snapshot a follower accepts into memory.
    snapshot_chunk_bytes: int = 1024 * 1024
    snapshot_bytes_max: int = 256 * 1024 * 1024
    # Most committed entries handed to the state machine in one Ready (the rest follow in the next one).
    max_committed_entries_per_ready: int = 1024

    def __post_init__(self) -> None:
        invariant(self.election_timeout_ms > 0, "election_timeout_ms must be positive")
        invariant(self.retry_backoff_ms > 0, "retry_backoff_ms must be positive")
        invariant(self.election_backoff_max_ms >= self.retry_backoff_ms,
                  "election_backoff_max_ms must be at least retry_backoff_ms")
        # Kafka's rule: the fetch timeout must leave room for two parked fetches, or a healthy but idle
        # follower would time out while its Fetch sits in the leader's purgatory.
        invariant(self.fetch_timeout_ms > 2 * self.fetch_max_wait_ms,
                  "fetch_timeout_ms must exceed 2 x fetch_max_wait_ms")
        invariant(self.request_timeout_ms > self.fetch_max_wait_ms,
                  "request_timeout_ms must exceed fetch_max_wait_ms")
        invariant(self.fetch_max_entries > 0 and self.fetch_max_bytes > 0, "fetch bounds must be positive")
        invariant(self.snapshot_interval_entries > 0, "snapshot_interval_entries must be positive")
        invariant(0 < self.snapshot_chunk_bytes <= self.snapshot_bytes_max, "bad snapshot chunk bounds")
        invariant(self.max_committed_entries_per_ready > 0, "max_committed_entries_per_ready must be positive")

    @property
    def check_quorum_timeout_ms(self) -> int:
        """A leader resigns if a majority of voters did not fetch within this window (1.5 x fetch timeout)."""
        return self.fetch_timeout_ms * 3 // 2

    @property
    def begin_quorum_epoch_resend_ms(self) -> int:
        """How often the leader repeats BeginQuorumEpoch to voters that have not fetched in its epoch."""
        return self.fetch_timeout_ms // 2


@dataclasses.dataclass(frozen=True, slots=True)
class UnsafeFlags:
    """Deliberate bugs, for tests only: each flag breaks one safety rule of the protocol.

    They exist so that the simulator can prove it *catches* such bugs (a negative test).  Production code
    never sets them; ``RaftNode`` logs nothing about them and the default is all-off.
    """

    # Reply to a vote request without making the resulting state (new epoch, vote) durable, as a shell that
    # sends before it fsyncs would: a crash then lets the node vote twice in one epoch.
    skip_vote_persistence: bool = False
    # Advance the high watermark by counting replicas even before an entry of the leader's own epoch is
    # replicated (Raft paper section 5.4.2, "Figure 8").
    commit_old_epoch_entries: bool = False
    # Grant votes to candidates whose log is behind ours (breaks leader completeness).
    grant_vote_ignoring_log: bool = False

    def any(self) -> bool:
        return self.skip_vote_persistence or self.commit_old_epoch_entries or self.grant_vote_ignoring_log
