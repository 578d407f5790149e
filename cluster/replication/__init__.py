"""Pure per-partition replication state machines: the replica's role and the leader's answers to follower fetches
(``PartitionReplicaState``), idempotent producer state, the leader's view (follower progress, ISR changes, high
watermark, acks=all) and the follower's fetch/truncation state.  The broker's Partition and the replication
simulator both drive them."""

from cluster.replication.follower import (
    FetchAction,
    FetchOutcome,
    FetchPosition,
    FollowerFetchState,
    FollowerStatus,
    ReplicaLogView,
    TruncationBelowHighWatermarkError,
    truncation_offset,
)
from cluster.replication.leader import (
    AcksCheck,
    AlterPartitionOutcome,
    EpochEndOffset,
    FollowerFetchResult,
    IsrChangeKind,
    PartitionLeaderState,
    PendingIsrChange,
    ReplicaFetchState,
    check_current_leader_epoch,
    find_diverging_epoch,
)
from cluster.replication.replica import (
    BrokenReplica,
    FollowerFetchAnswer,
    PartitionReplicaState,
    RoleChange,
)

__all__ = [
    "AcksCheck",
    "AlterPartitionOutcome",
    "BrokenReplica",
    "EpochEndOffset",
    "FetchAction",
    "FetchOutcome",
    "FetchPosition",
    "FollowerFetchAnswer",
    "FollowerFetchResult",
    "FollowerFetchState",
    "FollowerStatus",
    "IsrChangeKind",
    "PartitionLeaderState",
    "PartitionReplicaState",
    "PendingIsrChange",
    "ReplicaFetchState",
    "ReplicaLogView",
    "RoleChange",
    "TruncationBelowHighWatermarkError",
    "check_current_leader_epoch",
    "find_diverging_epoch",
    "truncation_offset",
]
