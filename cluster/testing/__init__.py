"""Deterministic simulation kit for the pure cores: fake clock, faulty network, crashable disks, checkers.

Start with sim_cluster.py (``SimCluster``: the event loop and fault schedule), invariants.py (what is checked
after every step) and raft_sim.py (the command line: ``python -m cluster.testing.raft_sim --seeds N``).
Everything is driven by one ``random.Random(seed)``, so a seed replays exactly.
"""

from cluster.testing.faults import FaultProfile
from cluster.testing.invariants import RaftInvariantChecker, SimViolation
from cluster.testing.sim_cluster import SimCluster, SimResult
from cluster.testing.sim_disk import SimDisk
from cluster.testing.sim_network import SimNetwork

__all__ = ["FaultProfile", "RaftInvariantChecker", "SimCluster", "SimDisk", "SimNetwork", "SimResult",
           "SimViolation"]
