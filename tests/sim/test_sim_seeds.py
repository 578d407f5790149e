"""The CI simulation gate: thousands of seeded fault schedules with every invariant checked after every step.

Budget: about 30 s on a quiet 2-core machine (about 80 seeds/s at 300 steps).  ``make sim`` runs far more
(and longer) schedules; any failing seed prints its replay command.
"""

from __future__ import annotations

import time

from cluster.testing.sim_cluster import SimCluster

SEEDS = 2000
STEPS = 300


def test_two_thousand_seeds_without_a_violation():
    started = time.perf_counter()
    failures, commits, leaders = [], 0, 0
    for seed in range(SEEDS):
        voters = 5 if seed % 8 == 7 else 3          # one schedule in eight runs five voters
        result = SimCluster(seed, voters=voters, observers=seed % 16 == 5).run(STEPS)
        commits += result.committed_entries
        leaders += result.leaders_elected
        if not result.ok:
            failures.append(f"seed {seed} ({voters} voters): {result.violation}\n"
                            f"replay: python -m cluster.testing.raft_sim --seeds 1 --start {seed} "
                            f"--nodes {voters} --steps {STEPS}" + (" --observers 1" if seed % 16 == 5 else ""))
    elapsed_s = time.perf_counter() - started
    assert not failures, "\n".join(failures[:5])
    # The runs must actually exercise the protocol, not idle: elections and commits in every seed on average.
    assert commits > 20 * SEEDS and leaders > SEEDS, (commits, leaders)
    print(f"{SEEDS} seeds in {elapsed_s:.1f} s ({SEEDS / elapsed_s:.0f} seeds/s), {commits} commits, {leaders} leaders")


def test_a_seed_replays_exactly():
    first, second = SimCluster(4242).run(STEPS), SimCluster(4242).run(STEPS)
    assert (first.steps, first.sim_time_ms, first.committed_entries, first.messages_sent) == (
        second.steps, second.sim_time_ms, second.committed_entries, second.messages_sent)
    other = SimCluster(4243).run(STEPS)
    assert (other.sim_time_ms, other.messages_sent) != (first.sim_time_ms, first.messages_sent)


def test_faults_are_actually_injected_across_seeds():
    results = [SimCluster(seed).run(STEPS) for seed in range(40)]
    assert sum(r.crashes for r in results) > 40 and sum(r.partitions for r in results) > 40


def test_liveness_check_reports_a_cluster_that_cannot_commit_in_time():
    result = SimCluster(1, liveness_bound_ms=50).run(100)
    assert result.violation is not None and result.violation.kind == "liveness"


def test_five_voters_and_observers_reach_liveness():
    for seed in range(10):
        result = SimCluster(seed, voters=5, observers=2).run(STEPS)
        assert result.ok, (seed, result.violation)
