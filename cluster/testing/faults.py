"""Per-seed fault profiles ("swarm testing", as TigerBeetle's VOPR does).

Why random profiles: a single fixed mix of faults explores one corner of the space; drawing the knobs
themselves from the seed means some runs are calm, some lose a third of their messages, some crash a node
every second, some cut one-way links.  Bugs that need an unusual mix show up in the seeds that have it.  Some knobs
target moments where durability matters (a crash right after granting a vote), as a Jepsen nemesis targets
the leader: random crashes alone would hit those windows too rarely.
Rates are events per simulated second; durations are simulated milliseconds.
"""

from __future__ import annotations

import dataclasses
import random

from cluster.testing.sim_network import NetworkFaults


@dataclasses.dataclass(frozen=True, slots=True)
class FaultProfile:
    network: NetworkFaults
    crash_rate_per_s: float            # whole-node crashes (power loss)
    crash_in_ready_probability: float  # crash in the middle of carrying out a Ready
    crash_after_vote_probability: float  # crash right after granting a vote (targets vote durability)
    partition_rate_per_s: float
    partition_duration_ms: tuple[int, int]
    restart_delay_ms: tuple[int, int]
    resign_rate_per_s: float           # graceful leader resignations
    proposal_rate_per_s: float         # client writes

    @classmethod
    def calm(cls) -> FaultProfile:
        return cls(NetworkFaults(), 0.0, 0.0, 0.0, 0.0, (500, 3000), (100, 2000), 0.0, 20.0)

    @classmethod
    def random(cls, rng: random.Random) -> FaultProfile:
        network = NetworkFaults(
            drop_probability=rng.choice((0.0, 0.0, 0.01, 0.05, 0.2)),
            duplicate_probability=rng.choice((0.0, 0.01, 0.1)),
            delay_min_ms=1,
            delay_max_ms=rng.choice((5, 20, 100, 400)),
            long_delay_probability=rng.choice((0.0, 0.0, 0.01, 0.05)),
            long_delay_max_ms=rng.choice((1000, 4000)))
        return cls(
            network=network,
            crash_rate_per_s=rng.choice((0.0, 0.1, 0.5, 1.5)),
            crash_in_ready_probability=rng.choice((0.0, 0.0, 0.005, 0.03)),
            crash_after_vote_probability=rng.choice((0.0, 0.0, 0.2, 0.6)),
            partition_rate_per_s=rng.choice((0.0, 0.2, 0.5, 1.0)),
            partition_duration_ms=(200, rng.choice((1000, 3000, 8000))),
            restart_delay_ms=(rng.choice((0, 50, 300)), rng.choice((500, 2000, 5000))),
            resign_rate_per_s=rng.choice((0.0, 0.0, 0.1, 0.4)),
            proposal_rate_per_s=rng.choice((5.0, 20.0, 60.0)))
