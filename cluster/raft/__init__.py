"""KRaft-style metadata quorum as a pure, deterministic state machine (no I/O, no clock, injected randomness).

Start with node.py (``RaftNode`` and the shell loop), ready.py (the order in which a shell must carry out a
``Ready``), state.py (roles and the one transition table) and _leading.py (why replication is pull-based).
"""

from cluster.raft._leading import QuorumInfo, ReplicaInfo
from cluster.raft._overlay import SnapshotInstall
from cluster.raft.config import RaftConfig, UnsafeFlags
from cluster.raft.log import ElectionState, LogEntry, MemoryRaftLog, OffsetAndEpoch, RaftLogView, SnapshotId
from cluster.raft.messages import (
    BeginQuorumEpochRequest,
    BeginQuorumEpochResponse,
    EndQuorumEpochRequest,
    EndQuorumEpochResponse,
    FetchRequest,
    FetchResponse,
    FetchSnapshotRequest,
    FetchSnapshotResponse,
    RaftMessage,
    VoteRequest,
    VoteResponse,
)
from cluster.raft.node import RaftNode
from cluster.raft.ready import NotLeader, Proposed, Ready
from cluster.raft.state import TRANSITIONS, EpochRule, IllegalTransition, Role, check_transition

__all__ = [
    "BeginQuorumEpochRequest", "BeginQuorumEpochResponse", "ElectionState", "EndQuorumEpochRequest",
    "EndQuorumEpochResponse", "EpochRule", "FetchRequest", "FetchResponse", "FetchSnapshotRequest",
    "FetchSnapshotResponse", "IllegalTransition", "LogEntry", "MemoryRaftLog", "NotLeader", "OffsetAndEpoch",
    "Proposed", "QuorumInfo", "RaftConfig", "RaftLogView", "RaftMessage", "RaftNode", "Ready", "ReplicaInfo",
    "Role", "SnapshotId", "SnapshotInstall", "TRANSITIONS", "UnsafeFlags", "VoteRequest", "VoteResponse",
    "check_transition",
]
