"""Every (group state, request) pair of the classic group protocol: the specified reply and next state.

The table below is the specification, written from Kafka's GroupMetadataManager / ClassicGroup (3.9): for a
group in each state and each kind of request a member (or a stranger) can send, the error the request is
answered with (or PARKED when the answer is legitimately deferred: a JoinGroup waiting for the rebalance, a
follower's SyncGroup waiting for the leader) and the state the group is in afterwards.  The test checks the
table is complete, then runs every pair; hypothesis varies what the table says must not matter: the group
size, how much time passed (below every timeout) and the client ids.  The harness also fails on any state
transition outside ``VALID_PREVIOUS_STATES`` and on a request answered twice.

States: ABSENT (never existed), DEAD (existed, deleted: requests see it as gone), EMPTY (members left, offsets
kept), PREPARING (the leader rejoined, followers not yet), COMPLETING (generation formed, nobody synced),
STABLE.  The member "F" is a static follower (group.instance.id) so that fencing is part of the table.
"""

from __future__ import annotations

import itertools
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit" / "groups"))

from group_harness import Harness  # noqa: E402

from cluster.core.errors import ErrorCode  # noqa: E402
from cluster.groups.coordinator import (  # noqa: E402
    DeleteGroupsResult,
    DescribeGroupsResult,
    GroupConfig,
    HeartbeatRequest,
    HeartbeatResult,
    JoinGroupResult,
    LeaveGroupRequest,
    LeaveGroupResult,
    LeavingMember,
    OffsetCommitResult,
    OffsetFetchRequest,
    OffsetFetchResult,
    SyncGroupResult,
)
from cluster.groups.group import GroupState  # noqa: E402

E = ErrorCode
G = "group-under-test"
F_INSTANCE = "f-instance"
TP = ("t", 0)
PARKED = "parked"
SAME = "same"  # state unchanged

ABSENT, DEAD, EMPTY, PREPARING, COMPLETING, STABLE = "ABSENT", "DEAD", "EMPTY", "PREPARING", "COMPLETING", "STABLE"
STATES = [ABSENT, DEAD, EMPTY, PREPARING, COMPLETING, STABLE]
GONE = (ABSENT, DEAD)
ACTIVE = (PREPARING, COMPLETING, STABLE)
TO_ENUM = {EMPTY: GroupState.EMPTY, PREPARING: GroupState.PREPARING_REBALANCE,
           COMPLETING: GroupState.COMPLETING_REBALANCE, STABLE: GroupState.STABLE}


def _by_state(**cases):
    """Expands a spec written per state (keys: state names, GONE/ACTIVE groups, or 'other')."""
    expanded = {}
    for key, outcome in cases.items():
        names = {"GONE": GONE, "ACTIVE": ACTIVE}.get(key, (key,))
        for name in names:
            expanded[name] = outcome
    other = expanded.pop("other", None)
    return {state: expanded.get(state, other) for state in STATES}


def _join_completes_if_last(n_members: int):
    """In PREPARING the leader already rejoined; F's join finishes the phase only if F was the last one."""
    return (E.NONE, COMPLETING) if n_members == 2 else (PARKED, PREPARING)


def _leave_completes_if_last(n_members: int):
    """In PREPARING only the leader rejoined: F leaving completes the phase when the others were just F."""
    return (E.NONE, COMPLETING) if n_members == 2 else (E.NONE, PREPARING)


# request -> state -> (error | PARKED, next state | SAME | ABSENT) or a function of the group size.
SPEC = {
    "join_new_v4": _by_state(GONE=(E.MEMBER_ID_REQUIRED, EMPTY), other=(E.MEMBER_ID_REQUIRED, SAME)),
    "join_new_v3": _by_state(other=(PARKED, PREPARING)),
    "join_known_same": _by_state(GONE=(E.UNKNOWN_MEMBER_ID, ABSENT), EMPTY=(E.UNKNOWN_MEMBER_ID, SAME),
                                 PREPARING=_join_completes_if_last, COMPLETING=(E.NONE, SAME),
                                 STABLE=(E.NONE, SAME)),
    "join_known_changed": _by_state(GONE=(E.UNKNOWN_MEMBER_ID, ABSENT), EMPTY=(E.UNKNOWN_MEMBER_ID, SAME),
                                    PREPARING=_join_completes_if_last, COMPLETING=(PARKED, PREPARING),
                                    STABLE=(PARKED, PREPARING)),
    "join_leader": _by_state(GONE=(E.UNKNOWN_MEMBER_ID, ABSENT), EMPTY=(E.UNKNOWN_MEMBER_ID, SAME),
                             PREPARING=(PARKED, SAME), COMPLETING=(E.NONE, SAME), STABLE=(PARKED, PREPARING)),
    "join_unknown_member": _by_state(GONE=(E.UNKNOWN_MEMBER_ID, ABSENT), other=(E.UNKNOWN_MEMBER_ID, SAME)),
    "join_foreign_protocol": _by_state(GONE=(E.MEMBER_ID_REQUIRED, EMPTY), EMPTY=(E.MEMBER_ID_REQUIRED, SAME),
                                       ACTIVE=(E.INCONSISTENT_GROUP_PROTOCOL, SAME)),
    "join_static_restart": _by_state(GONE=(PARKED, PREPARING), EMPTY=(PARKED, PREPARING),
                                     PREPARING=_join_completes_if_last, COMPLETING=(PARKED, PREPARING),
                                     STABLE=(E.NONE, SAME)),
    "join_static_fenced": _by_state(GONE=(E.UNKNOWN_MEMBER_ID, ABSENT), EMPTY=(E.UNKNOWN_MEMBER_ID, SAME),
                                    ACTIVE=(E.FENCED_INSTANCE_ID, SAME)),
    "sync_leader": _by_state(GONE=(E.UNKNOWN_MEMBER_ID, ABSENT), EMPTY=(E.UNKNOWN_MEMBER_ID, SAME),
                             PREPARING=(E.REBALANCE_IN_PROGRESS, SAME), COMPLETING=(E.NONE, STABLE),
                             STABLE=(E.NONE, SAME)),
    "sync_follower": _by_state(GONE=(E.UNKNOWN_MEMBER_ID, ABSENT), EMPTY=(E.UNKNOWN_MEMBER_ID, SAME),
                               PREPARING=(E.REBALANCE_IN_PROGRESS, SAME), COMPLETING=(PARKED, SAME),
                               STABLE=(E.NONE, SAME)),
    "sync_old_generation": _by_state(GONE=(E.UNKNOWN_MEMBER_ID, ABSENT), EMPTY=(E.UNKNOWN_MEMBER_ID, SAME),
                                     ACTIVE=(E.ILLEGAL_GENERATION, SAME)),
    "sync_fenced": _by_state(GONE=(E.UNKNOWN_MEMBER_ID, ABSENT), EMPTY=(E.UNKNOWN_MEMBER_ID, SAME),
                             ACTIVE=(E.FENCED_INSTANCE_ID, SAME)),
    "heartbeat": _by_state(GONE=(E.UNKNOWN_MEMBER_ID, ABSENT), EMPTY=(E.UNKNOWN_MEMBER_ID, SAME),
                           PREPARING=(E.REBALANCE_IN_PROGRESS, SAME), COMPLETING=(E.NONE, SAME),
                           STABLE=(E.NONE, SAME)),
    "heartbeat_old_generation": _by_state(GONE=(E.UNKNOWN_MEMBER_ID, ABSENT), EMPTY=(E.UNKNOWN_MEMBER_ID, SAME),
                                          ACTIVE=(E.ILLEGAL_GENERATION, SAME)),
    "heartbeat_unknown_member": _by_state(GONE=(E.UNKNOWN_MEMBER_ID, ABSENT), other=(E.UNKNOWN_MEMBER_ID, SAME)),
    "heartbeat_fenced": _by_state(GONE=(E.UNKNOWN_MEMBER_ID, ABSENT), EMPTY=(E.UNKNOWN_MEMBER_ID, SAME),
                                  ACTIVE=(E.FENCED_INSTANCE_ID, SAME)),
    "leave": _by_state(GONE=(E.UNKNOWN_MEMBER_ID, ABSENT), EMPTY=(E.UNKNOWN_MEMBER_ID, SAME),
                       PREPARING=_leave_completes_if_last, COMPLETING=(E.NONE, PREPARING),
                       STABLE=(E.NONE, PREPARING)),
    "leave_by_instance_id": _by_state(GONE=(E.UNKNOWN_MEMBER_ID, ABSENT), EMPTY=(E.UNKNOWN_MEMBER_ID, SAME),
                                      PREPARING=_leave_completes_if_last, COMPLETING=(E.NONE, PREPARING),
                                      STABLE=(E.NONE, PREPARING)),
    "commit_member": _by_state(GONE=(E.ILLEGAL_GENERATION, ABSENT), EMPTY=(E.UNKNOWN_MEMBER_ID, SAME),
                               PREPARING=(E.NONE, SAME), COMPLETING=(E.REBALANCE_IN_PROGRESS, SAME),
                               STABLE=(E.NONE, SAME)),
    "commit_member_v9": _by_state(GONE=(E.GROUP_ID_NOT_FOUND, ABSENT), EMPTY=(E.UNKNOWN_MEMBER_ID, SAME),
                                  PREPARING=(E.NONE, SAME), COMPLETING=(E.REBALANCE_IN_PROGRESS, SAME),
                                  STABLE=(E.NONE, SAME)),
    "commit_old_generation": _by_state(GONE=(E.ILLEGAL_GENERATION, ABSENT), EMPTY=(E.UNKNOWN_MEMBER_ID, SAME),
                                       ACTIVE=(E.ILLEGAL_GENERATION, SAME)),
    "commit_simple": _by_state(GONE=(E.NONE, EMPTY), EMPTY=(E.NONE, SAME), ACTIVE=(E.UNKNOWN_MEMBER_ID, SAME)),
    "fetch": _by_state(GONE=(E.NONE, ABSENT), other=(E.NONE, SAME)),
    "describe": _by_state(GONE=(E.NONE, ABSENT), other=(E.NONE, SAME)),
    "delete": _by_state(GONE=(E.GROUP_ID_NOT_FOUND, ABSENT), EMPTY=(E.NONE, ABSENT),
                        ACTIVE=(E.NON_EMPTY_GROUP, SAME)),
}
REQUESTS = sorted(SPEC)
PAIRS = list(itertools.product(STATES, REQUESTS))


def test_the_table_covers_every_state_request_pair():
    assert all(SPEC[request][state] is not None for state, request in PAIRS)
    assert len(PAIRS) == len(STATES) * len(REQUESTS) == 6 * 26


class Scene:
    """A group brought into one state; L is the leader (dynamic), F a static follower, others dynamic."""

    def __init__(self, state: str, n_members: int, client: str) -> None:
        self.h = Harness(config=GroupConfig(num_partitions=4, initial_rebalance_delay_ms=3000))
        self.n = n_members
        self.client = client
        self.leader = self.follower = ""
        self.generation = 1
        self.parked: dict[str, int] = {}
        if state == ABSENT:
            return
        self._form_completing()
        if state == COMPLETING:
            return
        self._sync_all()
        if state == STABLE:
            return
        if state == PREPARING:
            self.h.join(G, self.leader, client_id=client)  # a Stable leader's rejoin starts a rebalance
            assert self.h.state(G) is GroupState.PREPARING_REBALANCE
            return
        for member_id, instance in self.members:
            self.h.leave(G, (member_id, instance))
        assert self.h.state(G) is GroupState.EMPTY
        if state == DEAD:
            assert self.h.delete(G) == {G: E.NONE}

    def _form_completing(self) -> None:
        h = self.h
        self.leader, leader_token = h.join_new(G, client_id=self.client)
        follower_token = h.join(G, instance_id=F_INSTANCE, client_id=self.client)
        others = [h.join_new(G, client_id=self.client) for _ in range(self.n - 2)]
        while h.state(G) is GroupState.PREPARING_REBALANCE:  # the initial delay, extended once per arrival
            h.advance_to_next_timer()
        result = h.reply(follower_token)
        assert result.error is E.NONE and h.reply(leader_token).leader_id == self.leader
        self.follower = result.member_id
        self.generation = result.generation_id
        self.members = [(self.leader, None), (self.follower, F_INSTANCE)] + [(m, None) for m, _ in others]
        assert h.state(G) is GroupState.COMPLETING_REBALANCE

    def _sync_all(self) -> None:
        h = self.h
        assignment = [(member_id, member_id.encode()) for member_id, _ in self.members]
        h.sync(G, self.leader, self.generation, assignment)
        for member_id, instance in self.members[1:]:
            h.sync(G, member_id, self.generation, instance_id=instance)
        assert h.state(G) is GroupState.STABLE

    def send(self, request: str) -> int:
        h, f, gen, client = self.h, self.follower or "f-gone", self.generation, self.client
        if request == "join_new_v4":
            return h.join(G, client_id=client)
        if request == "join_new_v3":
            return h.join(G, client_id=client, require_known_member_id=False)
        if request == "join_known_same":
            return h.join(G, f, instance_id=F_INSTANCE, client_id=client)
        if request == "join_known_changed":
            return h.join(G, f, instance_id=F_INSTANCE, client_id=client, protocols=(("range", b"new-topics"),))
        if request == "join_leader":
            return h.join(G, self.leader or "l-gone", client_id=client)
        if request == "join_unknown_member":
            return h.join(G, "ghost", client_id=client)
        if request == "join_foreign_protocol":
            return h.join(G, client_id=client, protocols=(("foreign", b""),))
        if request == "join_static_restart":
            return h.join(G, instance_id=F_INSTANCE, client_id=client)
        if request == "join_static_fenced":
            return h.join(G, "stale-incarnation", instance_id=F_INSTANCE, client_id=client)
        if request == "sync_leader":
            return h.sync(G, self.leader or "l-gone", gen, [(self.leader, b"L"), (f, b"F")])
        if request == "sync_follower":
            return h.sync(G, f, gen, instance_id=F_INSTANCE)
        if request == "sync_old_generation":
            return h.sync(G, f, gen - 1, instance_id=F_INSTANCE)
        if request == "sync_fenced":
            return h.sync(G, "stale-incarnation", gen, instance_id=F_INSTANCE)
        if request.startswith("heartbeat"):
            member, generation, instance = {
                "heartbeat": (f, gen, F_INSTANCE),
                "heartbeat_old_generation": (f, gen - 1, F_INSTANCE),
                "heartbeat_unknown_member": ("ghost", gen, None),
                "heartbeat_fenced": ("stale-incarnation", gen, F_INSTANCE),
            }[request]
            return h._call("heartbeat", _heartbeat_request(member, generation, instance))
        if request == "leave":
            return h._call("leave_group", _leave_request(f, F_INSTANCE))
        if request == "leave_by_instance_id":
            return h._call("leave_group", _leave_request("", F_INSTANCE))
        if request in ("commit_member", "commit_member_v9", "commit_old_generation"):
            version = 9 if request == "commit_member_v9" else 8
            generation = gen - 1 if request == "commit_old_generation" else gen
            return h.commit(G, {TP: 5}, generation_id=generation, member_id=f, instance_id=F_INSTANCE,
                            api_version=version)
        if request == "commit_simple":
            return h.commit(G, {TP: 5})
        if request == "fetch":
            return h._call("fetch_offsets", _fetch_request())
        if request == "describe":
            return h._call("describe_groups", (G,))
        if request == "delete":
            return h._call("delete_groups", (G,))
        raise AssertionError(request)


def _heartbeat_request(member_id, generation, instance):
    return HeartbeatRequest(G, generation, member_id, instance)


def _leave_request(member_id, instance):
    return LeaveGroupRequest(G, (LeavingMember(member_id, instance),))


def _fetch_request():
    return OffsetFetchRequest(G, (TP,))


def error_of(result) -> ErrorCode:
    if isinstance(result, (JoinGroupResult, SyncGroupResult, HeartbeatResult, OffsetFetchResult)):
        return result.error
    if isinstance(result, LeaveGroupResult):
        return result.error if result.error is not E.NONE else result.members[0].error
    if isinstance(result, OffsetCommitResult):
        return result.partitions[0][2]
    if isinstance(result, DescribeGroupsResult):
        return result.groups[0].error
    if isinstance(result, DeleteGroupsResult):
        return result.results[0][1]
    raise AssertionError(f"unexpected result {result!r}")


@pytest.mark.parametrize("state,request_kind", PAIRS, ids=[f"{s}-{r}" for s, r in PAIRS])
@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(n_members=st.integers(2, 4), elapsed_ms=st.integers(0, 5000),
       client=st.text("abcxyz-", min_size=1, max_size=6))
def test_state_request_pair(state, request_kind, n_members, elapsed_ms, client):
    scene = Scene(state, n_members, client)
    h = scene.h
    h.advance(elapsed_ms)  # below every session and rebalance timeout: no timer may change the outcome
    assert h.state(G) is (TO_ENUM[state] if state in TO_ENUM else None)
    generation_before = h.coordinator.group(G).generation_id if state in TO_ENUM else None
    transitions_before = len(h.transitions)

    token = scene.send(request_kind)

    expected = SPEC[request_kind][state]
    if callable(expected):
        expected = expected(n_members)
    expected_error, expected_state = expected
    result = h.reply(token)
    if expected_error == PARKED:
        assert result is None, f"expected the request to wait, got {result}"
    else:
        assert result is not None, "expected an answer, the request was parked"
        assert error_of(result) is expected_error, result
        _check_result_details(scene, request_kind, state, result)
    after = h.state(G)
    if expected_state == SAME:
        assert after is (TO_ENUM[state] if state in TO_ENUM else None)
        if state in TO_ENUM:
            assert h.coordinator.group(G).generation_id == generation_before
    elif expected_state == ABSENT:
        assert after is None
    else:
        assert after is TO_ENUM[expected_state], f"{state} + {request_kind} -> {after}"
    # (every transition made on the way was checked against VALID_PREVIOUS_STATES by the harness)
    assert all(group == G for group, _, _ in h.transitions[transitions_before:])


def _check_result_details(scene: Scene, request_kind: str, state: str, result) -> None:
    """What else the specification says about successful answers."""
    if isinstance(result, SyncGroupResult):
        assert isinstance(result.assignment, bytes)  # never missing
        if result.error is E.NONE:
            assert result.protocol_name == "range" and result.protocol_type == "consumer"
    if request_kind == "join_static_restart" and state == STABLE:
        # No rebalance: same generation, a new member id, the old leader named so nobody re-assigns.
        assert result.generation_id == scene.generation and result.member_id != scene.follower
        assert result.leader_id == scene.leader and result.members == ()
    if request_kind == "join_known_same" and state in (COMPLETING, STABLE):
        assert result.generation_id == scene.generation and result.members == ()
    if request_kind == "join_leader" and state == COMPLETING:
        assert len(result.members) == scene.n  # the leader gets everyone's metadata again
    if request_kind == "describe":
        described = result.groups[0]
        assert described.state == ("Dead" if state in GONE else TO_ENUM[state].value)
        assert (described.protocol_data == "range") == (state == STABLE)
    if request_kind == "sync_leader" and state == COMPLETING:
        assert result.assignment == b"L"
