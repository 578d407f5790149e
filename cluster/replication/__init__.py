"""Pure per-partition replication state machines: idempotent producer state, the leader's view (follower
progress, ISR changes, high watermark, acks=all) and the follower's fetch/truncation state."""

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

__all__ = [
    "AcksCheck",
    "AlterPartitionOutcome",
    "EpochEndOffset",
    "FetchAction",
    "FetchOutcome",
    "FetchPosition",
    "FollowerFetchResult",
    "FollowerFetchState",
    "FollowerStatus",
    "IsrChangeKind",
    "PartitionLeaderState",
    "PendingIsrChange",
    "ReplicaFetchState",
    "ReplicaLogView",
    "TruncationBelowHighWatermarkError",
    "check_current_leader_epoch",
    "find_diverging_epoch",
    "truncation_offset",
]
