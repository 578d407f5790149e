"""Random histories of clients joining, syncing, heartbeating, committing, leaving, crashing and restarting.

Simulated clients follow the classic protocol the way librdkafka and the Java client do (rejoin on
REBALANCE_IN_PROGRESS, reset the member id on UNKNOWN_MEMBER_ID/ILLEGAL_GENERATION, stop when fenced); the
leader assigns the topic's partitions round-robin over the members it was given.  Hypothesis interleaves
their steps with clock advances.  Checked throughout:

* no partition is handed to two members in the same generation (the bug where two consumers each owned
  every partition; a restarted static member counts as its fenced predecessor), and generations never go
  backwards;
* every transition is in the transition table and no request is answered twice (the harness);
* the leader is always a member.

At the end the live clients keep stepping while time passes: the group must settle to Stable with every live
client a member of the final generation and the partitions split among them exactly once; then everybody
leaves and, once all timers have fired, every request ever sent has been answered (nothing hangs).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit" / "groups"))

from group_harness import Harness  # noqa: E402

from cluster.core.errors import ErrorCode  # noqa: E402
from cluster.groups.coordinator import GroupConfig, HeartbeatRequest, LeaveGroupRequest, LeavingMember  # noqa: E402
from cluster.groups.group import GroupState  # noqa: E402

E = ErrorCode
G = "modelled-group"
PARTITIONS = 6
SESSION_MS = 10_000


def encode(partitions: list[int]) -> bytes:
    return ",".join(map(str, partitions)).encode()


def decode(assignment: bytes) -> set[int]:
    return {int(part) for part in assignment.decode().split(",") if part}


@dataclass
class Client:
    name: str
    instance_id: str | None
    rebalance_ms: int = 20_000
    member_id: str = ""
    generation: int = -1
    phase: str = "idle"  # idle | joining | syncing | stable
    token: int | None = None
    alive: bool = True
    fenced: bool = False
    assignment: frozenset[int] = frozenset()


class GroupModel(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.h = Harness(config=GroupConfig(num_partitions=4, initial_rebalance_delay_ms=1000))
        self.clients: list[Client] = []
        self.tokens: list[int] = []
        self.owners: dict[int, dict[int, str]] = {}  # generation -> partition -> member id
        self.max_generation = 0

    # -- client behaviour ----------------------------------------------------------------------------------
    def _send_join(self, client: Client) -> None:
        client.token = self.h.join(G, client.member_id, instance_id=client.instance_id, session_ms=SESSION_MS,
                                   rebalance_ms=client.rebalance_ms, client_id=client.name)
        self.tokens.append(client.token)
        client.phase = "joining"

    def _reset(self, client: Client) -> None:
        client.member_id, client.generation, client.assignment = "", -1, frozenset()

    def _step(self, client: Client) -> None:
        """One move of a live client: handle the answer it waits for, or heartbeat when stable."""
        if not client.alive:
            return
        if client.phase == "idle":
            self._send_join(client)
            return
        if client.phase == "stable":
            token = self.h._call("heartbeat", HeartbeatRequest(G, client.generation, client.member_id,
                                                               client.instance_id))
            self.tokens.append(token)
            self._on_error(client, self.h.reply(token).error)
            return
        result = self.h.reply(client.token)
        if result is None:
            return  # still parked
        client.token = None
        if client.phase == "joining":
            self._on_join(client, result)
        else:
            self._on_sync(client, result)

    def _on_join(self, client: Client, result) -> None:
        if result.error is E.MEMBER_ID_REQUIRED:
            client.member_id = result.member_id
            self._send_join(client)
        elif result.error is E.NONE:
            client.member_id, client.generation = result.member_id, result.generation_id
            assignments = ()
            if result.members:  # we are the leader: split the partitions round-robin
                members = sorted(member.member_id for member in result.members)
                assignments = tuple((member, encode([p for p in range(PARTITIONS) if p % len(members) == i]))
                                    for i, member in enumerate(members))
            client.token = self.h.sync(G, client.member_id, client.generation, assignments,
                                       instance_id=client.instance_id)
            self.tokens.append(client.token)
            client.phase = "syncing"
        else:
            self._on_error(client, result.error)

    def _on_sync(self, client: Client, result) -> None:
        assert isinstance(result.assignment, bytes)
        if result.error is not E.NONE:
            self._on_error(client, result.error)
            return
        client.assignment = frozenset(decode(result.assignment))
        client.phase = "stable"
        # A restarted static member inherits its fenced predecessor's assignment: one owner per instance id.
        owner = client.instance_id or client.member_id
        owners = self.owners.setdefault(client.generation, {})
        for partition in client.assignment:
            previous = owners.setdefault(partition, owner)
            assert previous == owner, (
                f"generation {client.generation}: partition {partition} given to {previous} and {owner}")

    def _on_error(self, client: Client, error: ErrorCode) -> None:
        if error is E.NONE:
            return
        if error is E.FENCED_INSTANCE_ID:
            client.alive, client.fenced, client.phase = False, True, "idle"  # a newer incarnation took over
            return
        if error in (E.UNKNOWN_MEMBER_ID, E.ILLEGAL_GENERATION):
            self._reset(client)
        self._send_join(client)  # REBALANCE_IN_PROGRESS and everything else: rejoin

    # -- rules ------------------------------------------------------------------------------------------------
    @precondition(lambda self: len(self.clients) < 5)
    @rule(static=st.booleans(), rebalance_ms=st.sampled_from([5_000, 20_000]))
    def start_client(self, static, rebalance_ms):
        name = f"c{len(self.clients)}"
        client = Client(name, f"instance-{name}" if static else None, rebalance_ms)
        self.clients.append(client)
        self._send_join(client)

    @precondition(lambda self: self.clients)
    @rule(data=st.data())
    def step_client(self, data):
        self._step(data.draw(st.sampled_from(self.clients)))

    @precondition(lambda self: self.clients)
    @rule(rounds=st.integers(1, 4))
    def step_everyone(self, rounds):
        for _ in range(rounds):
            for client in self.clients:
                self._step(client)

    @precondition(lambda self: any(c.alive and c.member_id for c in self.clients))
    @rule(data=st.data())
    def leave(self, data):
        client = data.draw(st.sampled_from([c for c in self.clients if c.alive and c.member_id]))
        token = self.h._call("leave_group", LeaveGroupRequest(G, (LeavingMember(client.member_id,
                                                                                client.instance_id),)))
        self.tokens.append(token)
        client.alive, client.phase = False, "idle"

    @precondition(lambda self: any(c.alive for c in self.clients))
    @rule(data=st.data())
    def crash(self, data):
        client = data.draw(st.sampled_from([c for c in self.clients if c.alive]))
        client.alive, client.phase = False, "idle"  # no LeaveGroup: only timeouts can notice

    @precondition(lambda self: any(not c.alive and not c.fenced and c.instance_id for c in self.clients))
    @rule(data=st.data())
    def restart_static(self, data):
        client = data.draw(st.sampled_from([c for c in self.clients if not c.alive and not c.fenced
                                            and c.instance_id]))
        client.alive = True
        self._reset(client)  # a new process: same group.instance.id, no member id
        self._send_join(client)

    @precondition(lambda self: any(c.alive and c.phase == "stable" for c in self.clients))
    @rule(data=st.data())
    def commit(self, data):
        client = data.draw(st.sampled_from([c for c in self.clients if c.alive and c.phase == "stable"]))
        offsets = {("topic", p): 10 for p in client.assignment} or {("topic", 0): 0}
        token = self.h.commit(G, offsets, generation_id=client.generation, member_id=client.member_id,
                              instance_id=client.instance_id)
        self.tokens.append(token)
        errors = {error for _, _, error in self.h.reply(token).partitions}
        assert errors <= {E.NONE, E.REBALANCE_IN_PROGRESS, E.ILLEGAL_GENERATION, E.UNKNOWN_MEMBER_ID,
                          E.FENCED_INSTANCE_ID}, errors

    @rule(ms=st.sampled_from([0, 100, 999, 1000, 3000, 9_999, 10_000, 15_000, 20_000]))
    def advance(self, ms):
        self.h.advance(ms)

    # -- invariants ------------------------------------------------------------------------------------------
    @invariant()
    def group_is_consistent(self):
        group = self.h.coordinator.group(G)
        if group is None:
            return
        assert group.generation_id >= self.max_generation
        self.max_generation = group.generation_id
        if group.members:
            assert group.leader_id in group.members
        assert group.pending_sync_members <= set(group.members)
        assert not (group.pending_join_members & set(group.members))
        if group.state is GroupState.EMPTY:
            assert not group.members
        assert set(group.static_members.values()) <= set(group.members)

    def teardown(self):
        h = self.h
        live = [c for c in self.clients if c.alive]
        for _ in range(400):
            for client in live:
                self._step(client)
            group = h.coordinator.group(G)
            settled = (group is not None and group.state is GroupState.STABLE
                       and {c.member_id for c in live} == set(group.members)
                       and all(c.phase == "stable" and c.generation == group.generation_id for c in live))
            if settled or not live:
                break
            h.advance(500)
        if live:
            group = h.coordinator.group(G)
            assert group is not None and group.state is GroupState.STABLE, f"did not settle: {group}"
            final = sorted(p for c in live for p in c.assignment)
            assert final == list(range(PARTITIONS)), f"final assignment {final}"
        for client in live:
            token = h._call("leave_group", LeaveGroupRequest(G, (LeavingMember(client.member_id, client.instance_id),)))
            self.tokens.append(token)
        for _ in range(1000):
            if not h.advance_to_next_timer():
                break
        unanswered = [token for token in self.tokens if h.reply(token) is None]
        assert not unanswered, f"requests never answered: {unanswered}"
        assert h.coordinator.group(G) is None or h.state(G) is GroupState.EMPTY


GroupModel.TestCase.settings = settings(max_examples=150, stateful_step_count=40, deadline=None,
                                        suppress_health_check=[HealthCheck.too_slow])
TestGroupModel = GroupModel.TestCase
