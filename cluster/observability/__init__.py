"""Metrics and health endpoints of a broker (Prometheus exposition over a tiny asyncio HTTP server)."""

from cluster.observability.http import MetricsHttpServer
from cluster.observability.metrics import (
    BrokerMetrics,
    ClusterSnapshot,
    ClusterStateCollector,
    PartitionState,
    RaftSnapshot,
    RaftStateCollector,
    count_records,
    iter_error_codes,
)

__all__ = ["BrokerMetrics", "ClusterSnapshot", "ClusterStateCollector", "MetricsHttpServer", "PartitionState",
           "RaftSnapshot", "RaftStateCollector", "count_records", "iter_error_codes"]
