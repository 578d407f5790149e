"""Per-request accounting the router and the produce/fetch handlers report to (the Prometheus metrics and the
broker's own byte counters).

Why it exists: handlers need only these four calls, not the broker that owns the metrics registry.
"""

from __future__ import annotations

import time

from cluster.observability import BrokerMetrics


class BrokerRequestMetrics:
    def __init__(self, metrics: BrokerMetrics) -> None:
        self._metrics = metrics
        self.bytes_in = 0
        self.bytes_out = 0
        self.requests_by_api: dict[str, int] = {}

    def on_request(self, api_name: str) -> float:
        """Counts the request; returns its start time for ``on_response``."""
        self.requests_by_api[api_name] = self.requests_by_api.get(api_name, 0) + 1
        self._metrics.on_request(api_name)
        return time.perf_counter()

    def on_response(self, api_name: str, started: float, response) -> None:
        self._metrics.on_response(api_name, started, response)

    def on_produce(self, topic: str, batches) -> None:
        self.bytes_in += len(batches)
        self._metrics.on_produce(topic, batches)

    def on_fetch(self, topic: str, size_bytes: int) -> None:
        self.bytes_out += size_bytes
        self._metrics.on_fetch(topic, size_bytes)
