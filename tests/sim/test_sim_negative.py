"""Negative tests: deliberately broken variants of the core must be caught by the simulator, quickly.

A simulator that never fails proves nothing; these show that it finds real protocol bugs within a bounded
number of seeds (the seeds are fixed, so the bound is exact and the test is deterministic).
"""

from __future__ import annotations

import pytest

from cluster.raft import UnsafeFlags
from cluster.testing import raft_sim
from cluster.testing.sim_cluster import SimCluster

STEPS = 300


def first_failing_seed(unsafe: UnsafeFlags, max_seeds: int) -> tuple[int, str] | None:
    for seed in range(max_seeds):
        result = SimCluster(seed, unsafe=unsafe).run(STEPS)
        if not result.ok:
            return seed, result.violation.kind
    return None


def test_vote_not_persisted_before_replying_is_caught_within_200_seeds():
    found = first_failing_seed(UnsafeFlags(skip_vote_persistence=True), 200)
    assert found is not None, "the simulator missed a vote that is not persisted before the reply"
    # A vote forgotten in a crash lets a second candidate win the same epoch.
    assert found[1] == "single-leader", found


def test_vote_for_a_candidate_with_a_shorter_log_is_caught_within_50_seeds():
    found = first_failing_seed(UnsafeFlags(grant_vote_ignoring_log=True), 50)
    assert found is not None
    assert found[1] in {"leader-completeness", "committed-changed", "node-invariant"}, found


def test_the_same_seeds_pass_without_the_bug():
    for seed in range(50):
        assert SimCluster(seed).run(STEPS).ok, seed


def test_cli_prints_the_replay_command_and_exits_1(capsys):
    code = raft_sim.main(["--seeds", "100", "--steps", str(STEPS), "--unsafe", "grant_vote_ignoring_log"])
    out = capsys.readouterr().out
    assert code == 1
    assert "FAILED seed" in out
    replay = [line for line in out.splitlines() if line.startswith("replay: ")][0]
    assert "--unsafe grant_vote_ignoring_log" in replay and "--seeds 1 --start" in replay
    assert raft_sim.main(replay.removeprefix("replay: python -m cluster.testing.raft_sim ").split()) == 1


@pytest.mark.parametrize("nodes", ["3", "5"])
def test_cli_passes_on_good_seeds(capsys, nodes):
    assert raft_sim.main(["--seeds", "5", "--steps", "200", "--nodes", nodes]) == 0
    assert "0 failed" in capsys.readouterr().out
