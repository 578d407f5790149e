"""Scenario tests of the pure group coordinator: rebalances, timeouts, static members, offsets, ownership."""

from __future__ import annotations

from group_harness import NUM_PARTITIONS, PROTOCOLS, Harness

from cluster.core.errors import ErrorCode
from cluster.groups.coordinator import GroupConfig
from cluster.groups.group import GroupState

E = ErrorCode
TP = ("topic", 0)


# -- joining -------------------------------------------------------------------------------------------

def test_single_member_waits_only_the_initial_delay():
    h = Harness()
    first = h.reply(h.join("g"))
    assert first.error is E.MEMBER_ID_REQUIRED and first.member_id.startswith("client-")
    token = h.join("g", first.member_id)
    assert h.reply(token) is None and h.state("g") is GroupState.PREPARING_REBALANCE
    h.advance(2999)
    assert h.reply(token) is None
    h.advance(1)
    result = h.reply(token)
    assert result.error is E.NONE and result.generation_id == 1 and result.leader_id == first.member_id
    assert result.protocol_name == "range" and result.protocol_type == "consumer"
    assert [m.member_id for m in result.members] == [first.member_id]
    assert h.state("g") is GroupState.COMPLETING_REBALANCE


def test_initial_delay_is_extended_while_members_arrive_but_bounded_by_rebalance_timeout():
    h = Harness(config=GroupConfig(num_partitions=NUM_PARTITIONS, initial_rebalance_delay_ms=3000))
    _, a = h.join_new("g", rebalance_ms=7000)
    h.advance(2000)
    _, b = h.join_new("g", rebalance_ms=7000)
    h.advance(1000)  # t=3000: B arrived during the delay -> another step of min(3000, 4000)
    assert h.reply(a) is None
    h.advance(2999)
    assert h.reply(a) is None
    h.advance(1)  # t=6000
    assert h.reply(a).error is E.NONE and h.reply(b).error is E.NONE
    assert len(h.reply(a).members) + len(h.reply(b).members) == 2  # only the leader gets the member list


def test_zero_initial_delay_forms_at_once():
    h = Harness(config=GroupConfig(num_partitions=NUM_PARTITIONS, initial_rebalance_delay_ms=0))
    _, token = h.join_new("g")
    h.advance(0)
    assert h.reply(token).error is E.NONE


def test_join_v3_has_no_member_id_round_trip():
    h = Harness()
    token = h.join("g", require_known_member_id=False)
    assert h.reply(token) is None
    h.advance(3000)
    assert h.reply(token).error is E.NONE and h.reply(token).member_id


def test_new_member_rebalances_a_stable_group_without_initial_delay():
    h = Harness()
    (a, gen), (b, _) = h.stable_group("g", 2)
    c_id, c = h.join_new("g")
    assert h.state("g") is GroupState.PREPARING_REBALANCE and h.reply(c) is None
    assert h.heartbeat("g", a, gen) is E.REBALANCE_IN_PROGRESS
    ta = h.join("g", a)
    assert h.reply(ta) is None
    tb = h.join("g", b)  # the last one in completes the join phase immediately
    results = [h.reply(t) for t in (ta, tb, c)]
    assert all(r.error is E.NONE and r.generation_id == gen + 1 for r in results)
    assert sum(1 for r in results if r.members) == 1
    assert {r.leader_id for r in results} == {a}


def test_protocol_is_selected_by_vote_among_common_protocols():
    h = Harness(config=GroupConfig(num_partitions=NUM_PARTITIONS, initial_rebalance_delay_ms=0))
    _, t1 = h.join_new("g", protocols=(("range", b"1"), ("roundrobin", b"1")))
    _, t2 = h.join_new("g", protocols=(("roundrobin", b"2"), ("range", b"2")))
    _, t3 = h.join_new("g", protocols=(("roundrobin", b"3"), ("sticky", b"3")))
    h.advance(0)
    assert {h.reply(t).protocol_name for t in (t1, t2, t3)} == {"roundrobin"}
    leader = next(h.reply(t) for t in (t1, t2, t3) if h.reply(t).members)
    assert sorted(m.metadata for m in leader.members) == [b"1", b"2", b"3"]


def test_incompatible_protocols_are_rejected():
    h = Harness()
    h.stable_group("g", 1)
    assert h.reply(h.join("g", protocols=(("other", b""),))).error is E.INCONSISTENT_GROUP_PROTOCOL
    assert h.reply(h.join("g", protocol_type="connect")).error is E.INCONSISTENT_GROUP_PROTOCOL
    assert h.reply(h.join("fresh", protocols=())).error is E.INCONSISTENT_GROUP_PROTOCOL
    assert h.reply(h.join("fresh2", protocol_type="")).error is E.INCONSISTENT_GROUP_PROTOCOL
    assert h.coordinator.group("fresh") is None  # a rejected first join leaves no group behind


def test_join_validation_errors():
    h = Harness()
    assert h.reply(h.join("")).error is E.INVALID_GROUP_ID
    assert h.reply(h.join("g", session_ms=5999)).error is E.INVALID_SESSION_TIMEOUT
    assert h.reply(h.join("g", session_ms=1_800_001)).error is E.INVALID_SESSION_TIMEOUT
    assert h.reply(h.join("g", "nobody")).error is E.UNKNOWN_MEMBER_ID


def test_group_max_size():
    h = Harness(config=GroupConfig(num_partitions=NUM_PARTITIONS, max_group_size=1))
    (a, gen), = h.stable_group("g", 1)
    assert h.reply(h.join("g")).error is E.GROUP_MAX_SIZE_REACHED
    assert h.reply(h.join("g", a)).error is E.NONE  # an existing member still gets in


# -- syncing -------------------------------------------------------------------------------------------

def test_followers_wait_for_the_leader_and_missing_assignments_are_empty_bytes():
    h = Harness(config=GroupConfig(num_partitions=NUM_PARTITIONS, initial_rebalance_delay_ms=0))
    (a, ta), (b, tb), (c, tc) = [h.join_new("g") for _ in range(3)]
    h.advance(0)
    gen = h.reply(ta).generation_id
    leader = h.reply(ta).leader_id
    followers = [m for m in (a, b, c) if m != leader]
    parked = h.sync("g", followers[0], gen)
    assert h.reply(parked) is None
    h.auto_complete = False
    lead = h.sync("g", leader, gen, [(leader, b"L"), (followers[0], b"F0")])
    assert h.reply(lead) is None and h.state("g") is GroupState.COMPLETING_REBALANCE  # not durable yet
    h.complete_appends()
    assert h.reply(lead).assignment == b"L" and h.reply(parked).assignment == b"F0"
    assert h.state("g") is GroupState.STABLE
    late = h.reply(h.sync("g", followers[1], gen))
    assert late.error is E.NONE and late.assignment == b"" and late.protocol_name == "range"


def test_sync_errors():
    h = Harness()
    (a, gen), (b, _) = h.stable_group("g", 2)
    assert h.reply(h.sync("g", a, gen + 1)).error is E.ILLEGAL_GENERATION
    assert h.reply(h.sync("g", "x", gen)).error is E.UNKNOWN_MEMBER_ID
    assert h.reply(h.sync("nope", a, gen)).error is E.UNKNOWN_MEMBER_ID
    assert h.reply(h.sync("g", a, gen, protocol_name="roundrobin")).error is E.INCONSISTENT_GROUP_PROTOCOL
    assert h.reply(h.sync("g", a, gen, protocol_type="connect")).error is E.INCONSISTENT_GROUP_PROTOCOL
    assert h.reply(h.sync("g", a, gen, protocol_type="consumer", protocol_name="range")).error is E.NONE
    h.join("g", a)  # the leader rejoins: rebalance, waiting for b
    assert h.reply(h.sync("g", b, gen)).error is E.REBALANCE_IN_PROGRESS


def test_failed_assignment_write_fails_the_sync_and_rebalances():
    h = Harness(config=GroupConfig(num_partitions=NUM_PARTITIONS, initial_rebalance_delay_ms=0))
    (a, ta), = [h.join_new("g")]
    h.advance(0)
    h.auto_complete = False
    token = h.sync("g", a, h.reply(ta).generation_id, [(a, b"x")])
    h.complete_appends(E.REQUEST_TIMED_OUT)
    assert h.reply(token).error is E.COORDINATOR_NOT_AVAILABLE and h.reply(token).assignment == b""
    assert h.state("g") is GroupState.PREPARING_REBALANCE


def test_a_join_during_completing_rebalance_fails_parked_syncs():
    h = Harness(config=GroupConfig(num_partitions=NUM_PARTITIONS, initial_rebalance_delay_ms=0))
    (a, ta), (b, _) = h.join_new("g"), h.join_new("g")
    h.advance(0)
    gen = h.reply(ta).generation_id
    follower = b if h.reply(ta).leader_id == a else a
    parked = h.sync("g", follower, gen)
    h.join_new("g")
    assert h.reply(parked).error is E.REBALANCE_IN_PROGRESS
    assert h.state("g") is GroupState.PREPARING_REBALANCE


# -- leaving and failing ------------------------------------------------------------------------------

def test_leave_triggers_a_rebalance_at_once():
    h = Harness()
    (a, gen), (b, _) = h.stable_group("g", 2)
    result = h.leave("g", (b, None))
    assert result.error is E.NONE and result.members[0].error is E.NONE
    assert h.state("g") is GroupState.PREPARING_REBALANCE
    assert h.heartbeat("g", a, gen) is E.REBALANCE_IN_PROGRESS
    token = h.join("g", a)
    assert h.reply(token).error is E.NONE and h.reply(token).generation_id == gen + 1  # no waiting


def test_last_member_leaving_empties_the_group_and_stores_it():
    h = Harness()
    (a, gen), = h.stable_group("g", 1)
    h.leave("g", (a, None))
    assert h.state("g") is GroupState.EMPTY and h.coordinator.group("g").generation_id == gen + 1
    assert h.leave("g", (a, None)).members[0].error is E.UNKNOWN_MEMBER_ID
    assert h.leave("missing", (a, None)).error is E.UNKNOWN_MEMBER_ID


def test_session_timeout_removes_a_silent_member():
    h = Harness()
    (a, gen), (b, _) = h.stable_group("g", 2, session_ms=10_000)
    h.advance(6000)
    assert h.heartbeat("g", a, gen) is E.NONE
    h.advance(3999)
    assert h.state("g") is GroupState.STABLE
    h.advance(1)
    assert h.state("g") is GroupState.PREPARING_REBALANCE  # b missed its 10 s deadline
    assert h.heartbeat("g", a, gen) is E.REBALANCE_IN_PROGRESS
    assert h.heartbeat("g", b, gen) is E.UNKNOWN_MEMBER_ID


def test_members_that_do_not_rejoin_are_dropped_at_the_rebalance_timeout():
    h = Harness()
    (a, gen), (b, _) = h.stable_group("g", 2, rebalance_ms=20_000, session_ms=60_000)
    token = h.join("g", a, rebalance_ms=20_000, session_ms=60_000)
    h.advance(19_999)
    assert h.reply(token) is None
    h.advance(1)
    assert h.reply(token).error is E.NONE and [m.member_id for m in h.reply(token).members] == [a]


def test_members_that_do_not_sync_are_dropped_after_the_rebalance_timeout():
    h = Harness(config=GroupConfig(num_partitions=NUM_PARTITIONS, initial_rebalance_delay_ms=0))
    (a, ta), (b, _) = h.join_new("g", rebalance_ms=8000), h.join_new("g", rebalance_ms=8000)
    h.advance(0)
    gen = h.reply(ta).generation_id
    leader = h.reply(ta).leader_id
    h.sync("g", leader, gen, [(a, b"1"), (b, b"2")])
    assert h.state("g") is GroupState.STABLE
    h.advance(8000)
    assert h.state("g") is GroupState.PREPARING_REBALANCE
    follower = b if leader == a else a
    assert h.coordinator.group("g").members.keys() == {leader} and follower not in h.coordinator.group("g").members


def test_pending_member_that_never_rejoins_expires():
    h = Harness()
    first = h.reply(h.join("g", session_ms=6000))
    assert h.coordinator.group("g").pending_join_members == {first.member_id}
    h.advance(6000)
    assert h.coordinator.group("g").pending_join_members == set()


# -- static membership -----------------------------------------------------------------------------------

def test_static_member_restart_keeps_generation_and_assignment():
    h = Harness(config=GroupConfig(num_partitions=NUM_PARTITIONS, initial_rebalance_delay_ms=0))
    ta, tb = h.join("g", instance_id="i-a"), h.join("g", instance_id="i-b")
    h.advance(0)
    ra, rb = h.reply(ta), h.reply(tb)
    gen = ra.generation_id
    h.sync("g", ra.leader_id, gen, [(ra.member_id, b"A"), (rb.member_id, b"B")])
    h.sync("g", rb.member_id, gen, instance_id="i-b") if rb.member_id != ra.leader_id else None
    assert h.state("g") is GroupState.STABLE
    transitions_before = len(h.transitions)
    rejoin = h.reply(h.join("g", instance_id="i-b"))  # restarted process: no member id
    assert rejoin.error is E.NONE and rejoin.generation_id == gen and rejoin.member_id != rb.member_id
    assert rejoin.leader_id == ra.leader_id and rejoin.members == ()
    assert len(h.transitions) == transitions_before and h.state("g") is GroupState.STABLE
    synced = h.reply(h.sync("g", rejoin.member_id, gen, instance_id="i-b"))
    assert synced.error is E.NONE and synced.assignment == b"B"
    assert h.heartbeat("g", rb.member_id, gen, "i-b") is E.FENCED_INSTANCE_ID
    assert h.heartbeat("g", rejoin.member_id, gen, "i-b") is E.NONE


def test_static_leader_restart_is_told_the_old_leader_id():
    h = Harness(config=GroupConfig(num_partitions=NUM_PARTITIONS, initial_rebalance_delay_ms=0))
    token = h.join("g", instance_id="solo")
    h.advance(0)
    first = h.reply(token)
    h.sync("g", first.member_id, first.generation_id, [(first.member_id, b"all")])
    again = h.reply(h.join("g", instance_id="solo"))
    assert again.leader_id == first.member_id != again.member_id  # so it will not re-assign
    assert h.reply(h.sync("g", again.member_id, again.generation_id, instance_id="solo")).assignment == b"all"


def test_static_member_with_new_protocol_triggers_rebalance():
    h = Harness(config=GroupConfig(num_partitions=NUM_PARTITIONS, initial_rebalance_delay_ms=0))
    token = h.join("g", instance_id="s", protocols=(("range", b""), ("sticky", b"")))
    h.advance(0)
    first = h.reply(token)
    h.sync("g", first.member_id, first.generation_id, [(first.member_id, b"x")])
    rejoin = h.join("g", instance_id="s", protocols=(("sticky", b""),))
    assert h.reply(rejoin).error is E.NONE and h.reply(rejoin).protocol_name == "sticky"
    assert h.reply(rejoin).generation_id == first.generation_id + 1


def test_static_member_fenced_and_admin_removal_by_instance_id():
    h = Harness(config=GroupConfig(num_partitions=NUM_PARTITIONS, initial_rebalance_delay_ms=0))
    token = h.join("g", instance_id="s")
    h.advance(0)
    first = h.reply(token)
    h.sync("g", first.member_id, first.generation_id, [(first.member_id, b"x")])
    assert h.reply(h.join("g", "stale-id", instance_id="s")).error is E.FENCED_INSTANCE_ID
    assert h.leave("g", ("stale-id", "s")).members[0].error is E.FENCED_INSTANCE_ID
    assert h.leave("g", ("", "unknown")).members[0].error is E.UNKNOWN_MEMBER_ID
    assert h.leave("g", ("", "s")).members[0].error is E.NONE
    assert h.state("g") is GroupState.EMPTY


def test_static_member_is_not_removed_at_rebalance_timeout():
    h = Harness(config=GroupConfig(num_partitions=NUM_PARTITIONS, initial_rebalance_delay_ms=0))
    ta = h.join("g", instance_id="a", rebalance_ms=10_000, session_ms=60_000)
    tb = h.join("g", instance_id="b", rebalance_ms=10_000, session_ms=60_000)
    h.advance(0)
    ra, rb = h.reply(ta), h.reply(tb)
    h.sync("g", ra.leader_id, ra.generation_id, [(ra.member_id, b"A"), (rb.member_id, b"B")])
    h.sync("g", rb.member_id if ra.leader_id == ra.member_id else ra.member_id, ra.generation_id)
    leader = ra.leader_id
    rejoin = h.join("g", leader, instance_id="a" if leader == ra.member_id else "b",
                    rebalance_ms=10_000, session_ms=60_000)
    h.advance(10_000)
    result = h.reply(rejoin)
    assert result.error is E.NONE and len(result.members) == 2  # the silent static member is kept


# -- heartbeats --------------------------------------------------------------------------------------------

def test_heartbeat_errors_by_state():
    h = Harness()
    (a, gen), = h.stable_group("g", 1)
    assert h.heartbeat("g", a, gen) is E.NONE
    assert h.heartbeat("g", a, gen - 1) is E.ILLEGAL_GENERATION
    assert h.heartbeat("g", "who", gen) is E.UNKNOWN_MEMBER_ID
    assert h.heartbeat("nope", a, gen) is E.UNKNOWN_MEMBER_ID
    assert h.heartbeat("", a, gen) is E.INVALID_GROUP_ID


# -- offsets -----------------------------------------------------------------------------------------------

def test_commit_is_answered_and_visible_only_once_durable():
    h = Harness()
    (a, gen), = h.stable_group("g", 1)
    h.auto_complete = False
    token = h.commit("g", {TP: 10}, generation_id=gen, member_id=a)
    assert h.reply(token) is None
    assert h.fetch("g", [TP]).partitions[0].offset == -1
    assert h.fetch("g", [TP], require_stable=True).partitions[0].error is E.UNSTABLE_OFFSET_COMMIT
    h.complete_appends()
    assert h.reply(token).partitions == (("topic", 0, E.NONE),)
    fetched = h.fetch("g", [TP, ("topic", 1)])
    assert [(p.offset, p.error) for p in fetched.partitions] == [(10, E.NONE), (-1, E.NONE)]
    assert [(p.topic, p.partition, p.offset) for p in h.fetch("g").partitions] == [("topic", 0, 10)]


def test_failed_commit_is_not_visible():
    h = Harness()
    h.auto_complete = False
    token = h.commit("simple", {TP: 5})
    h.complete_appends(E.NOT_LEADER_OR_FOLLOWER)
    assert h.reply(token).partitions[0][2] is E.NOT_COORDINATOR
    assert h.fetch("simple", [TP]).partitions[0].offset == -1
    assert h.coordinator.group("simple") is None


def test_commit_validation():
    h = Harness()
    (a, gen), = h.stable_group("g", 1)
    assert h.reply(h.commit("g", {TP: 1}, generation_id=gen + 1, member_id=a)).partitions[0][2] is E.ILLEGAL_GENERATION
    assert h.reply(h.commit("g", {TP: 1}, generation_id=gen, member_id="x")).partitions[0][2] is E.UNKNOWN_MEMBER_ID
    assert h.reply(h.commit("g", {TP: 1})).partitions[0][2] is E.UNKNOWN_MEMBER_ID  # simple commit, busy group
    assert h.reply(h.commit("nope", {TP: 1}, generation_id=3, member_id="m", api_version=8)).partitions[0][2] \
        is E.ILLEGAL_GENERATION
    assert h.reply(h.commit("nope", {TP: 1}, generation_id=3, member_id="m", api_version=9)).partitions[0][2] \
        is E.GROUP_ID_NOT_FOUND
    too_long = h.reply(h.commit("g", {TP: 1}, generation_id=gen, member_id=a, metadata="x" * 4097))
    assert too_long.partitions[0][2] is E.OFFSET_METADATA_TOO_LARGE
    h.join("g", a)  # leader rejoin -> (single member) completes at once -> CompletingRebalance
    assert h.state("g") is GroupState.COMPLETING_REBALANCE
    assert h.reply(h.commit("g", {TP: 1}, generation_id=gen + 1, member_id=a)).partitions[0][2] \
        is E.REBALANCE_IN_PROGRESS


def test_commit_during_preparing_rebalance_is_accepted():
    h = Harness()
    (a, gen), (b, _) = h.stable_group("g", 2)
    h.join("g", a)
    assert h.state("g") is GroupState.PREPARING_REBALANCE
    assert h.reply(h.commit("g", {TP: 7}, generation_id=gen, member_id=b)).partitions[0][2] is E.NONE


def test_offsets_and_groups_survive_a_restart():
    h = Harness()
    (a, gen), (b, _) = h.stable_group("g", 2)
    h.commit("g", {TP: 42, ("topic", 1): 43}, generation_id=gen, member_id=a, metadata="m")
    h.commit("simple", {("other", 3): 9})
    h.restart()
    assert [(p.offset, p.metadata) for p in h.fetch("g", [TP]).partitions] == [(42, "m")]
    assert h.fetch("simple", [("other", 3)]).partitions[0].offset == 9
    group = h.coordinator.group("g")
    assert group.state is GroupState.STABLE and group.generation_id == gen and set(group.members) == {a, b}
    assert group.members[a].assignment == f"assigned-{a}".encode()
    assert h.coordinator.group("simple").state is GroupState.EMPTY
    h.advance(9000)
    assert h.heartbeat("g", a, gen) is E.NONE
    h.advance(1000)  # nobody heartbeats b after the restart: its session ends
    assert h.state("g") is GroupState.PREPARING_REBALANCE


def test_restart_after_delete_and_after_leave():
    h = Harness()
    (a, gen), = h.stable_group("g", 1)
    h.commit("g", {TP: 1}, generation_id=gen, member_id=a)
    h.leave("g", (a, None))
    h.restart()
    assert h.state("g") is GroupState.EMPTY and h.fetch("g", [TP]).partitions[0].offset == 1
    assert h.delete("g") == {"g": E.NONE}
    h.restart()
    assert h.coordinator.group("g") is None and h.fetch("g", [TP]).partitions[0].offset == -1


def test_offset_retention_for_empty_groups_only():
    day = 24 * 3600 * 1000
    h = Harness(config=GroupConfig(num_partitions=NUM_PARTITIONS, offsets_retention_ms=day))
    (a, gen), = h.stable_group("busy", 1, session_ms=60_000)
    h.commit("busy", {TP: 5}, generation_id=gen, member_id=a)
    (b, gen_b), = h.stable_group("idle", 1)
    h.commit("idle", {TP: 6}, generation_id=gen_b, member_id=b)
    h.leave("idle", (b, None))
    h.commit("simple", {TP: 7})
    h.now_ms += day - 1
    h.apply(h.coordinator.expire_offsets(h.now_ms))
    assert h.fetch("idle", [TP]).partitions[0].offset == 6
    h.now_ms += 1
    h.apply(h.coordinator.expire_offsets(h.now_ms))
    assert h.fetch("idle", [TP]).partitions[0].offset == -1 and h.coordinator.group("idle") is None
    assert h.fetch("simple", [TP]).partitions[0].offset == -1 and h.coordinator.group("simple") is None
    assert h.fetch("busy", [TP]).partitions[0].offset == 5  # members are consuming (heartbeats not needed here)
    h.restart()
    assert h.coordinator.group("idle") is None and h.fetch("idle", [TP]).partitions[0].offset == -1


def test_commit_with_explicit_retention_expires_at_its_own_time():
    h = Harness()
    h.commit("simple", {TP: 3}, retention_ms=1000, api_version=2)
    h.now_ms += 999
    h.apply(h.coordinator.expire_offsets(h.now_ms))
    assert h.fetch("simple", [TP]).partitions[0].offset == 3
    h.now_ms += 1
    h.apply(h.coordinator.expire_offsets(h.now_ms))
    assert h.fetch("simple", [TP]).partitions[0].offset == -1


# -- admin ---------------------------------------------------------------------------------------------

def test_describe_list_and_delete():
    h = Harness()
    (a, gen), = h.stable_group("g", 1)
    h.commit("empty", {TP: 1})
    described = {d.group_id: d for d in h.describe("g", "empty", "missing")}
    assert described["g"].state == "Stable" and described["g"].protocol_data == "range"
    assert described["g"].members[0].assignment == f"assigned-{a}".encode()
    assert described["g"].members[0].metadata == PROTOCOLS[0][1]
    assert described["empty"].state == "Empty" and described["empty"].protocol_type == ""
    assert described["missing"].state == "Dead" and described["missing"].error is E.NONE
    listed = h.list_groups()
    assert sorted((g.group_id, g.state) for g in listed.groups) == [("empty", "Empty"), ("g", "Stable")]
    assert [g.group_id for g in h.list_groups("stable").groups] == ["g"]
    assert h.delete("g", "empty", "missing", "") == {
        "g": E.NON_EMPTY_GROUP, "empty": E.NONE, "missing": E.GROUP_ID_NOT_FOUND, "": E.INVALID_GROUP_ID}
    assert h.coordinator.group("empty") is None


# -- ownership -----------------------------------------------------------------------------------------

def test_requests_for_unowned_or_loading_partitions():
    h = Harness()
    partition = h.coordinator.partition_of("g")
    h.apply(h.coordinator.unload_partition(partition, h.now_ms))
    assert h.reply(h.join("g")).error is E.NOT_COORDINATOR
    assert h.fetch("g").error is E.NOT_COORDINATOR
    h.coordinator.begin_loading(partition)
    assert h.heartbeat("g", "m", 1) is E.COORDINATOR_LOAD_IN_PROGRESS
    assert h.list_groups().error is E.COORDINATOR_LOAD_IN_PROGRESS
    h.apply(h.coordinator.finish_loading(partition, 1, h.now_ms))
    assert h.reply(h.join("g")).error is E.MEMBER_ID_REQUIRED


def test_unload_answers_parked_requests_and_late_writes_are_not_applied():
    h = Harness()
    (a, gen), = h.stable_group("g", 1)
    _, parked = h.join_new("g")
    h.auto_complete = False
    commit = h.commit("g", {TP: 9}, generation_id=gen, member_id=a)
    partition = h.coordinator.partition_of("g")
    h.apply(h.coordinator.unload_partition(partition, h.now_ms))
    assert h.reply(parked).error is E.NOT_COORDINATOR
    h.coordinator.begin_loading(partition)
    h.apply(h.coordinator.finish_loading(partition, 5, h.now_ms))  # re-loaded in a newer epoch
    h.complete_appends()
    assert h.reply(commit).partitions[0][2] is E.NOT_COORDINATOR
    assert h.fetch("g", [TP]).partitions[0].offset == -1


def test_coordinator_without_partition_count():
    from cluster.groups.coordinator import GroupCoordinator, JoinGroupRequest

    coordinator = GroupCoordinator(GroupConfig(num_partitions=None), lambda prefix: prefix + "-1")
    effects = coordinator.join_group(1, JoinGroupRequest("g", "", None, 10_000, 10_000, "consumer", PROTOCOLS), 0)
    assert effects[0].result.error is E.COORDINATOR_NOT_AVAILABLE


def test_replay_ignores_unknown_record_types_and_rejects_corrupt_values():
    import pytest

    from cluster.core.errors import CorruptRecordError
    from cluster.groups import records

    h = Harness()
    partition = h.coordinator.partition_of("g")
    h.apply(h.coordinator.unload_partition(partition, h.now_ms))
    h.coordinator.begin_loading(partition)
    h.coordinator.replay(partition, b"\x00\x05\x00\x01g", b"anything", h.now_ms)  # a newer record type
    with pytest.raises(CorruptRecordError):
        h.coordinator.replay(partition, records.encode_offset_commit_key("g", "t", 0), b"\x00\x07", h.now_ms)
    h.coordinator.replay(partition, records.encode_offset_commit_key("g", "t", 0),
                         records.encode_offset_commit_value(records.OffsetCommitValue(5, -1, "", h.now_ms)), h.now_ms)
    h.apply(h.coordinator.finish_loading(partition, 0, h.now_ms))
    assert h.fetch("g", [("t", 0)]).partitions[0].offset == 5
    assert h.coordinator.group("g").state is GroupState.EMPTY  # offsets without metadata: a simple group
