"""The roles of a quorum member and the one table of legal transitions between them.

Why one table: an illegal role change is how Raft implementations lose safety (a leader that "follows" in
its own epoch, a candidate that skips an epoch).  Every transition in ``RaftNode`` goes through
``check_transition``, which raises ``IllegalTransition`` for anything not listed here, like the transition
guards of Kafka's ``QuorumState`` (``raft/.../QuorumState.java``, header comment) and h11's ``_state.py``.

Roles (Kafka's ``EpochState`` classes; ``VOTED`` is Kafka's "Unattached with a vote"):
  UNATTACHED   knows no leader for its epoch and has not voted.
  VOTED        granted its (durable) vote in its epoch to ``voted_id``; knows no leader.
  PROSPECTIVE  KIP-996 pre-vote: asks for pre-votes for ``epoch + 1`` without changing its epoch.
  CANDIDATE    runs a real election in its epoch (bumped by one, voted for itself, persisted).
  LEADER       won a majority in its epoch; the only role that appends new entries.
  FOLLOWER     knows the leader of its epoch and fetches from it.
  RESIGNED     was leader of its epoch and gave up (shutdown, resign request, check-quorum failure, or
               restart after having been leader); memory-only, never votes again in that epoch.

Each row is ``(from, to) -> EpochRule``: how the epoch of the target must relate to the current one.
  SAME     same epoch (e.g. VOTED -> PROSPECTIVE on election timeout)
  HIGHER   strictly higher epoch (e.g. LEADER -> FOLLOWER of a newer leader)
  AT_LEAST same or higher (e.g. CANDIDATE -> FOLLOWER when another node won this epoch)
  NEXT     exactly epoch + 1 (PROSPECTIVE -> CANDIDATE)

| from        | to                                                                                   |
|-------------|--------------------------------------------------------------------------------------|
| UNATTACHED  | UNATTACHED (higher), VOTED (same), PROSPECTIVE (same), FOLLOWER (at least)           |
| VOTED       | UNATTACHED (higher), PROSPECTIVE (same), FOLLOWER (at least)                         |
| PROSPECTIVE | UNATTACHED (at least), VOTED (same), CANDIDATE (next), FOLLOWER (at least),          |
|             | RESIGNED (same)                                                                      |
| CANDIDATE   | UNATTACHED (higher), PROSPECTIVE (same), LEADER (same), FOLLOWER (at least)          |
| LEADER      | RESIGNED (same), UNATTACHED (higher), FOLLOWER (higher)                              |
| FOLLOWER    | UNATTACHED (at least; same only for observers), PROSPECTIVE (same), FOLLOWER (higher)|
| RESIGNED    | UNATTACHED (higher), PROSPECTIVE (same), FOLLOWER (higher)                           |

Notes on the rows.  PROSPECTIVE -> UNATTACHED/VOTED/FOLLOWER at the same epoch is "the pre-vote round was
lost or timed out": a prospective returns to following the leader it knew, to waiting (keeping its vote
if it had cast one), or -- if it was itself the leader of this epoch -- to RESIGNED, so that it never
forgets that it led the epoch.  CANDIDATE -> PROSPECTIVE is a lost real election: the next attempt pre-votes again
instead of bumping the epoch blindly.  Observers (non-voters) only ever use UNATTACHED and FOLLOWER.
Leaders are made only from candidates, and only in their own epoch.
"""

from __future__ import annotations

import enum

from cluster.core.errors import InvariantViolation


class Role(enum.Enum):
    UNATTACHED = "Unattached"
    VOTED = "Voted"
    PROSPECTIVE = "Prospective"
    CANDIDATE = "Candidate"
    LEADER = "Leader"
    FOLLOWER = "Follower"
    RESIGNED = "Resigned"


class EpochRule(enum.Enum):
    SAME = "same"
    HIGHER = "higher"
    AT_LEAST = "at least"
    NEXT = "next"

    def allows(self, from_epoch: int, to_epoch: int) -> bool:
        if self is EpochRule.SAME:
            return to_epoch == from_epoch
        if self is EpochRule.HIGHER:
            return to_epoch > from_epoch
        if self is EpochRule.AT_LEAST:
            return to_epoch >= from_epoch
        return to_epoch == from_epoch + 1


_R = Role
_E = EpochRule

TRANSITIONS: dict[tuple[Role, Role], EpochRule] = {
    (_R.UNATTACHED, _R.UNATTACHED): _E.HIGHER,
    (_R.UNATTACHED, _R.VOTED): _E.SAME,
    (_R.UNATTACHED, _R.PROSPECTIVE): _E.SAME,
    (_R.UNATTACHED, _R.FOLLOWER): _E.AT_LEAST,
    (_R.VOTED, _R.UNATTACHED): _E.HIGHER,
    (_R.VOTED, _R.PROSPECTIVE): _E.SAME,
    (_R.VOTED, _R.FOLLOWER): _E.AT_LEAST,
    (_R.PROSPECTIVE, _R.UNATTACHED): _E.AT_LEAST,
    (_R.PROSPECTIVE, _R.VOTED): _E.SAME,
    (_R.PROSPECTIVE, _R.CANDIDATE): _E.NEXT,
    (_R.PROSPECTIVE, _R.FOLLOWER): _E.AT_LEAST,
    (_R.PROSPECTIVE, _R.RESIGNED): _E.SAME,
    (_R.CANDIDATE, _R.UNATTACHED): _E.HIGHER,
    (_R.CANDIDATE, _R.PROSPECTIVE): _E.SAME,
    (_R.CANDIDATE, _R.LEADER): _E.SAME,
    (_R.CANDIDATE, _R.FOLLOWER): _E.AT_LEAST,
    (_R.LEADER, _R.RESIGNED): _E.SAME,
    (_R.LEADER, _R.UNATTACHED): _E.HIGHER,
    (_R.LEADER, _R.FOLLOWER): _E.HIGHER,
    (_R.FOLLOWER, _R.UNATTACHED): _E.AT_LEAST,
    (_R.FOLLOWER, _R.PROSPECTIVE): _E.SAME,
    (_R.FOLLOWER, _R.FOLLOWER): _E.HIGHER,
    (_R.RESIGNED, _R.UNATTACHED): _E.HIGHER,
    (_R.RESIGNED, _R.PROSPECTIVE): _E.SAME,
    (_R.RESIGNED, _R.FOLLOWER): _E.HIGHER,
}

# Roles an observer (a replica outside the voter set) may hold.
OBSERVER_ROLES = frozenset({Role.UNATTACHED, Role.FOLLOWER})


class IllegalTransition(InvariantViolation):
    """A role change that the table forbids: always a bug in the caller, never a peer's fault."""


def check_transition(from_role: Role, to_role: Role, from_epoch: int, to_epoch: int) -> None:
    """Raises ``IllegalTransition`` unless ``from_role@from_epoch -> to_role@to_epoch`` is in the table."""
    rule = TRANSITIONS.get((from_role, to_role))
    if rule is None:
        raise IllegalTransition(f"illegal transition {from_role.value} -> {to_role.value}")
    if not rule.allows(from_epoch, to_epoch):
        raise IllegalTransition(
            f"illegal transition {from_role.value}@{from_epoch} -> {to_role.value}@{to_epoch}: "
            f"epoch must be {rule.value}")
