"""The transition table: every listed edge with its epoch rule, and refusal of everything else."""

from __future__ import annotations

import itertools

import pytest

from cluster.raft.state import (
    OBSERVER_ROLES,
    TRANSITIONS,
    EpochRule,
    IllegalTransition,
    Role,
    check_transition,
)

EXPECTED_EDGES = {
    (Role.UNATTACHED, Role.UNATTACHED), (Role.UNATTACHED, Role.VOTED), (Role.UNATTACHED, Role.PROSPECTIVE),
    (Role.UNATTACHED, Role.FOLLOWER), (Role.VOTED, Role.UNATTACHED), (Role.VOTED, Role.PROSPECTIVE),
    (Role.VOTED, Role.FOLLOWER), (Role.PROSPECTIVE, Role.UNATTACHED), (Role.PROSPECTIVE, Role.VOTED),
    (Role.PROSPECTIVE, Role.CANDIDATE), (Role.PROSPECTIVE, Role.FOLLOWER), (Role.PROSPECTIVE, Role.RESIGNED),
    (Role.CANDIDATE, Role.UNATTACHED), (Role.CANDIDATE, Role.PROSPECTIVE), (Role.CANDIDATE, Role.LEADER),
    (Role.CANDIDATE, Role.FOLLOWER), (Role.LEADER, Role.RESIGNED), (Role.LEADER, Role.UNATTACHED),
    (Role.LEADER, Role.FOLLOWER), (Role.FOLLOWER, Role.UNATTACHED), (Role.FOLLOWER, Role.PROSPECTIVE),
    (Role.FOLLOWER, Role.FOLLOWER), (Role.RESIGNED, Role.UNATTACHED), (Role.RESIGNED, Role.PROSPECTIVE),
    (Role.RESIGNED, Role.FOLLOWER),
}


def test_table_has_exactly_the_documented_edges():
    assert set(TRANSITIONS) == EXPECTED_EDGES


@pytest.mark.parametrize("from_role, to_role", sorted(itertools.product(Role, Role), key=str))
def test_edges_outside_the_table_always_raise(from_role, to_role):
    if (from_role, to_role) in TRANSITIONS:
        return
    for to_epoch in (4, 5, 6):
        with pytest.raises(IllegalTransition):
            check_transition(from_role, to_role, 5, to_epoch)


@pytest.mark.parametrize("rule, allowed", [
    (EpochRule.SAME, {5}), (EpochRule.HIGHER, {6, 7}), (EpochRule.AT_LEAST, {5, 6, 7}), (EpochRule.NEXT, {6})])
def test_epoch_rules(rule, allowed):
    assert {e for e in range(3, 8) if rule.allows(5, e)} == allowed


def test_key_guards_from_kafka():
    check_transition(Role.PROSPECTIVE, Role.CANDIDATE, 3, 4)             # candidate epoch = current + 1
    with pytest.raises(IllegalTransition):
        check_transition(Role.PROSPECTIVE, Role.CANDIDATE, 3, 5)
    with pytest.raises(IllegalTransition):
        check_transition(Role.LEADER, Role.FOLLOWER, 3, 3)               # never follow in our own epoch
    with pytest.raises(IllegalTransition):
        check_transition(Role.FOLLOWER, Role.LEADER, 3, 3)               # leaders only from candidates
    with pytest.raises(IllegalTransition):
        check_transition(Role.VOTED, Role.CANDIDATE, 3, 4)               # a real election needs pre-votes
    with pytest.raises(IllegalTransition):
        check_transition(Role.UNATTACHED, Role.UNATTACHED, 3, 3)


def test_observers_only_use_unattached_and_follower():
    assert OBSERVER_ROLES == {Role.UNATTACHED, Role.FOLLOWER}
