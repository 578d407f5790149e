"""Pure quorum arithmetic: majorities, the majority-replicated offset, log comparison, backoffs.

Why separate: these few functions decide safety (who may win, what is committed) and are easy to test
against naive versions (tests/property/test_raft_quorum_properties.py does a differential check).  Nothing here keeps
state; randomness comes in as an injected ``random.Random``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:   # the core only receives an injected generator; it never imports global randomness
    import random


def majority_size(voter_count: int) -> int:
    """Votes needed to win among ``voter_count`` voters, the candidate's own included: floor(n/2) + 1."""
    return voter_count // 2 + 1


def majority_end_offset(voter_end_offsets: Sequence[int]) -> int:
    """The largest offset that a majority of voters hold entries below (each value is a durable LEO).

    Sorting descending, the value at index ``n // 2`` is held by ``n // 2 + 1`` voters, which is a majority
    (Kafka's ``LeaderState.maybeUpdateHighWatermark``).  Unknown followers count as offset 0.
    """
    ordered = sorted(voter_end_offsets, reverse=True)
    return ordered[len(ordered) // 2]


def is_log_up_to_date(candidate_last_epoch: int, candidate_end_offset: int,
                      own_last_epoch: int, own_end_offset: int) -> bool:
    """Raft's vote rule: the candidate's log is at least as up-to-date, comparing (last epoch, LEO) in order."""
    return (candidate_last_epoch, candidate_end_offset) >= (own_last_epoch, own_end_offset)


def election_lost(rejections: int, voter_count: int) -> bool:
    """True once so many voters refused that a majority can no longer be reached."""
    return rejections > voter_count - majority_size(voter_count)


def random_election_timeout_ms(rng: random.Random, election_timeout_ms: int) -> int:
    """A timeout drawn uniformly from ``[T, 2T)`` so that voters rarely time out together."""
    return election_timeout_ms + rng.randrange(election_timeout_ms)


def jittered_fetch_timeout_ms(rng: random.Random, fetch_timeout_ms: int) -> int:
    """A follower's fetch timeout drawn uniformly from ``[T, T + T // 4]``, redrawn on every re-arm.

    Followers of one leader fetch in lock-step, so with a fixed timeout they all notice a dead leader in the
    same millisecond, all win their pre-vote, and split the real vote.  The jitter spreads them out so that
    usually one campaigns alone; ``T + T // 4`` stays below the leader's check-quorum window (``1.5 x T``).
    """
    return fetch_timeout_ms + rng.randint(0, fetch_timeout_ms // 4)


def binary_exponential_backoff_ms(rng: random.Random, retries: int, base_ms: int, max_ms: int) -> int:
    """Backoff after the ``retries``-th lost election: ``min(max, base * rand[0, 2 << min(20, retries - 1)))``.

    Follows Kafka's ``binaryExponentialElectionBackoffMs``; ``retries`` counts lost rounds, starting at 1.
    """
    exponent = min(20, max(retries, 1) - 1)
    return min(max_ms, base_ms * rng.randrange(2 << exponent))


def end_epoch_backoff_ms(preferred_successors: Sequence[int], node_id: int, base_ms: int, max_ms: int) -> int | None:
    """How long a follower waits to campaign after EndQuorumEpoch, by its rank in the successor list.

    The first-ranked (most caught-up) voter starts at once, the next after ``base``, then doubling
    (Kafka's ``strictExponentialElectionBackoffMs``).  ``None`` if the node is not listed.
    """
    if node_id not in preferred_successors:
        return None
    position = preferred_successors.index(node_id)
    if position == 0:
        return 0
    return min(max_ms, base_ms << min(20, position - 1))


def count_in(ids: Iterable[int], members: frozenset[int]) -> int:
    """How many of ``ids`` are in ``members`` (votes from non-voters never count)."""
    return sum(1 for node_id in ids if node_id in members)
