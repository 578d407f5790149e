"""The seeded partition-replication simulator: good seeds pass, each deliberate bug is caught quickly.

The seeds are fixed, so every bound below is exact and the tests are deterministic.  A simulator that never
fails proves nothing; the broken variants show that the checks find the failures Kafka shipped (KIP-101
truncation by high watermark, a high watermark ahead of durability, unclean election) and the transition failures of
issue 16 (a new controller fencing brokers still finding it, a new leader appending a retried batch twice).
"""

from __future__ import annotations

import pytest

from cluster.testing import replication_sim
from cluster.testing.replication_sim import Batch, BrokenVariant, ReplicationSim, SimViolation

GOOD_SEEDS = 250
GOOD_STEPS = 2000
BROKEN_STEPS = 3000


def first_failure(broken: str, max_seeds: int) -> tuple[int, str] | None:
    for seed in range(max_seeds):
        result = ReplicationSim(seed, broken=broken).run(BROKEN_STEPS)
        if not result.ok:
            return seed, result.violation.kind
    return None


def test_a_few_hundred_seeds_pass_and_actually_exercise_faults():
    crashes = elections = acked = 0
    for seed in range(GOOD_SEEDS):
        result = ReplicationSim(seed).run(GOOD_STEPS)
        assert result.ok, f"seed {seed}: {result.violation}\n{result.traceback_text}"
        crashes, elections, acked = crashes + result.crashes, elections + result.leaders_elected, \
            acked + result.acked_batches
    # The run would prove little if nothing crashed, no leader moved or nothing was acknowledged.
    assert crashes > GOOD_SEEDS
    assert elections > 2 * GOOD_SEEDS
    assert acked > 20 * GOOD_SEEDS


@pytest.mark.parametrize("replicas", [1, 5])
def test_other_replication_factors_pass(replicas):
    for seed in range(10):
        result = ReplicationSim(seed, replicas=replicas).run(GOOD_STEPS)
        assert result.ok, f"seed {seed}: {result.violation}\n{result.traceback_text}"


def test_a_seed_replays_exactly():
    first, second = ReplicationSim(42).run(GOOD_STEPS), ReplicationSim(42).run(GOOD_STEPS)
    assert (first.steps, first.sim_time_ms, first.acked_batches, first.crashes, first.leaders_elected) == \
        (second.steps, second.sim_time_ms, second.acked_batches, second.crashes, second.leaders_elected)


def test_truncation_to_the_local_high_watermark_is_caught_within_60_seeds():
    found = first_failure(BrokenVariant.TRUNCATE_TO_HW, 60)
    assert found is not None, "the simulator missed KIP-101 truncation by high watermark"
    assert found[1] in {"acked-lost", "no-convergence", "offset-reused"}, found


def test_a_high_watermark_counting_the_leaders_unfsynced_end_is_caught_within_60_seeds():
    found = first_failure(BrokenVariant.HW_COUNTS_UNFLUSHED, 60)
    assert found is not None, "the simulator missed a high watermark ahead of the leader's fsync"
    assert found[1] == "acked-lost", found


def test_election_outside_the_isr_is_caught_within_30_seeds():
    found = first_failure(BrokenVariant.ELECT_OUTSIDE_ISR, 30)
    assert found is not None, "the simulator missed an unclean election"
    assert found[1] == "acked-lost", found


def test_the_checker_flags_a_high_watermark_going_backwards():
    sim = ReplicationSim(3)
    sim._start()
    while not any(r.leader is not None and r.leader.high_watermark > 0 for r in sim.replicas.values()):
        sim._step()
    leader = next(r for r in sim.replicas.values() if r.leader is not None and r.leader.high_watermark > 0)
    leader.leader.high_watermark -= 1
    with pytest.raises(SimViolation) as caught:
        sim._check_leader_hw(leader)
    assert caught.value.kind == "hw-monotonic"


def test_the_checker_flags_truncation_below_the_high_watermark_and_lost_acks():
    sim = ReplicationSim(3)
    replica = sim.replicas[1]
    replica.append([Batch(0, 2, 0, 1), Batch(2, 1, 0, 2)])
    replica.high_watermark = 3
    with pytest.raises(SimViolation) as caught:
        sim._truncate(replica, 2)
    assert caught.value.kind == "truncate-below-hw"
    sim.acked[2] = Batch(2, 1, 0, 99)  # acknowledged with another payload than this log holds
    with pytest.raises(SimViolation) as caught:
        sim._check_acked_present(replica, "test")
    assert caught.value.kind == "acked-lost"
    with pytest.raises(SimViolation) as caught:
        sim._record_ack(replica, Batch(2, 1, 1, 100))
    assert caught.value.kind == "offset-reused"


def test_cli_prints_a_replay_command_that_reproduces_the_failure(capsys):
    code = replication_sim.main(["--seeds", "60", "--steps", str(BROKEN_STEPS), "--broken", "elect_outside_isr"])
    out = capsys.readouterr().out
    assert code == 1
    assert "FAILED seed" in out and "steps/s" in out and "seeds run" in out
    replay = [line for line in out.splitlines() if line.startswith("replay: ")][0]
    assert "--broken elect_outside_isr" in replay and "--seeds 1 --start" in replay
    assert replication_sim.main(replay.removeprefix("replay: python -m cluster.testing.replication_sim ").split()) == 1
    assert "1 seeds run" in capsys.readouterr().out


def test_cli_passes_on_good_seeds(capsys):
    assert replication_sim.main(["--seeds", "5", "--steps", "1000"]) == 0
    out = capsys.readouterr().out
    assert "5 seeds run" in out and "0 failed" in out


def test_crediting_a_fetch_ahead_with_unflushed_data_is_caught_within_60_seeds():
    found = first_failure(BrokenVariant.FETCH_AHEAD_COUNTS_UNFLUSHED, 60)
    assert found is not None, "the simulator missed a leader counting a follower's unfsynced fetch-ahead"
    assert found[1] in {"acked-lost", "offset-reused", "truncate-below-hw"}, found


def test_controller_pauses_and_changes_happen_and_fence_no_broker_heard_within_a_session():
    changes = 0
    for seed in range(GOOD_SEEDS // 5):
        sim = ReplicationSim(seed)
        result = sim.run(GOOD_STEPS)
        assert result.ok, f"seed {seed}: {result.violation}\n{result.traceback_text}"
        changes += sim.controller_epoch
    assert changes > GOOD_SEEDS // 10, f"only {changes} controller changes in {GOOD_SEEDS // 5} seeds"


def test_a_new_controller_giving_half_a_session_is_caught_within_10_seeds():
    found = first_failure(BrokenVariant.SHORT_SESSION_ON_NEW_CONTROLLER, 10)
    assert found is not None, "the simulator missed a new controller fencing brokers that were finding it"
    assert found[1] == "fenced-live-broker", found


def test_the_checker_flags_a_fence_before_a_new_controller_was_active_for_a_session():
    sim = ReplicationSim(3)
    sim._start()
    sim.now_ms = sim.controller_elected_ms = 10_000
    sim._heard_from_ms = {b: 0 for b in sim.broker_ids}   # silent for ages, but the controller is brand new
    with pytest.raises(SimViolation) as caught:
        sim._check_fenced_only_silent_brokers((1,))
    assert caught.value.kind == "fenced-live-broker"


def test_a_new_leader_that_forgets_its_producers_is_caught_within_10_seeds():
    found = first_failure(BrokenVariant.DROP_PRODUCER_STATE_ON_BECOME_LEADER, 10)
    assert found is not None, "the simulator missed a retried batch appended twice by a new leader"
    assert found[1] == "idempotent-duplicate", found


def test_the_checker_flags_one_client_batch_committed_twice():
    sim = ReplicationSim(3)
    replica = sim.replicas[1]
    replica.append([Batch(0, 2, 0, 7, 1000, 0), Batch(2, 2, 0, 7, 1001, 0)])
    replica.high_watermark = 4
    with pytest.raises(SimViolation) as caught:
        sim._check_no_payload_twice(replica)
    assert caught.value.kind == "idempotent-duplicate"
    sim._record_ack(replica, Batch(0, 2, 0, 7, 1000, 0))
    with pytest.raises(SimViolation) as caught:
        sim._record_ack(replica, Batch(2, 2, 0, 7, 1001, 0))
    assert caught.value.kind == "idempotent-duplicate"


def test_a_leader_skipping_the_log_start_offset_check_is_caught_within_10_seeds():
    found = first_failure(BrokenVariant.SKIP_FETCH_OFFSET_CHECK, 10)
    assert found is not None, "the simulator missed a leader serving a fetch below its log start offset"
    assert found[1] == "log-gap", found


def test_the_checker_flags_a_gap_between_a_followers_log_end_and_what_it_is_sent():
    sim = ReplicationSim(3)
    replica = sim.replicas[1]
    replica.append([Batch(0, 2, 0, 1)])
    with pytest.raises(SimViolation) as caught:
        sim._check_no_gap(replica, (Batch(5, 1, 0, 2),))
    assert caught.value.kind == "log-gap"


def test_retention_moves_log_starts_and_followers_restart_their_logs_at_the_leaders():
    """The good runs exercise the offset check: retention deletes committed prefixes, and a follower left behind
    is answered OFFSET_OUT_OF_RANGE and restarts its log at the leader's log start."""
    moved = 0
    for seed in range(20):
        sim = ReplicationSim(seed)
        result = sim.run(GOOD_STEPS)
        assert result.ok, f"seed {seed}: {result.violation}\n{result.traceback_text}"
        moved += sum(r.log_start_offset > 0 for r in sim.replicas.values())
    assert moved > 10
