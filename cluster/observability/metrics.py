"""The broker's Prometheus metrics, with the meaning of Kafka's JMX metrics and Prometheus names.

Each broker owns one ``BrokerMetrics`` with its own ``CollectorRegistry`` (never the process-global default), so
tests and the simulator can run several brokers in one process.  Two kinds of metrics live here:

* event metrics the request path updates as it goes (bytes and messages in per topic, bytes out, requests,
  latency histograms and error codes per API, group rebalances, fsync rounds): cheap label lookups only;
* state metrics computed lazily at scrape time by ``ClusterStateCollector`` from a snapshot the broker
  provides (under-replicated and offline partitions, log size per partition, consumer lag per group and
  partition), and by ``RaftStateCollector`` from the metadata quorum (leader, epoch, high watermark, applied
  offset, commit lag), so the hot path pays nothing for them.

Kafka equivalents: ``kraftpy_topic_bytes_in_total`` = BrokerTopicMetrics BytesInPerSec, ``..._messages_in_total``
= MessagesInPerSec, ``kraftpy_request_latency_seconds`` = RequestMetrics TotalTimeMs, ``kraftpy_request_errors_total``
= RequestMetrics ErrorsPerSec, ``kraftpy_under_replicated_partitions`` = ReplicaManager UnderReplicatedPartitions,
``kraftpy_offline_partitions`` = KafkaController OfflinePartitionsCount, ``kraftpy_log_flush_latency_seconds`` =
LogFlushStats LogFlushRateAndTimeMs, ``kraftpy_consumer_group_lag`` = kafka-consumer-groups' LAG column,
``kraftpy_isr_shrinks_total``/``..._expands_total`` = ReplicaManager IsrShrinksPerSec/IsrExpandsPerSec,
``kraftpy_raft_*`` = KRaft's raft-metrics (current-leader, current-epoch, high-watermark) and
broker-metadata-metrics (last-applied-record-offset).
"""

from __future__ import annotations

import struct
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from cluster.core.errors import ErrorCode

# Request latencies on a loopback broker span ~50 µs (ApiVersions) to max.wait.ms (long-poll Fetch, 500 ms+).
REQUEST_LATENCY_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                           1.0, 2.5, 5.0, 10.0, 30.0)
# fsync costs ~130 µs to ~1 ms on SSDs, tens of ms on consumer disks.
FLUSH_LATENCY_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0)

_BATCH_LENGTH = struct.Struct(">i")
_RECORDS_COUNT = struct.Struct(">i")
_BATCH_LENGTH_OFFSET = 8
_RECORDS_COUNT_OFFSET = 57  # RecordBatch v2: records_count is the last header field
_BATCH_OVERHEAD = 12  # base_offset (8) + batch_length (4) precede the length-counted part
_RECORD_BATCH_HEADER_BYTES = 61


def count_records(batches) -> int:
    """Sum of ``records_count`` over the RecordBatch v2 headers in ``batches``; never decodes records.

    Stops quietly at a truncated tail: this is for metrics, the append path validates.
    """
    view = memoryview(batches)
    position, total = 0, 0
    while position + _RECORD_BATCH_HEADER_BYTES <= len(view):
        (batch_length,) = _BATCH_LENGTH.unpack_from(view, position + _BATCH_LENGTH_OFFSET)
        (records_count,) = _RECORDS_COUNT.unpack_from(view, position + _RECORDS_COUNT_OFFSET)
        total += max(records_count, 0)
        if batch_length <= 0:
            break
        position += batch_length + _BATCH_OVERHEAD
    return total


def iter_error_codes(message, _depth: int = 0) -> Iterator[int]:
    """Every non-zero ``error_code`` in a generated response struct (top level, topics, partitions...)."""
    if _depth > 6 or message is None:
        return
    slots = getattr(type(message), "__slots__", ())
    for name in slots:
        value = getattr(message, name, None)
        if name == "error_code":
            if value:
                yield value
        elif isinstance(value, list):
            for item in value:
                if hasattr(type(item), "__slots__"):
                    yield from iter_error_codes(item, _depth + 1)
        elif hasattr(type(value), "__slots__") and not isinstance(value, (bytes, str, int)):
            yield from iter_error_codes(value, _depth + 1)


@dataclass(frozen=True)
class PartitionState:
    """What the scrape-time collector needs of one partition this broker hosts."""

    topic: str
    partition: int
    replicas: tuple[int, ...]
    isr: tuple[int, ...]
    leader: int  # -1: no leader (offline)
    log_size_bytes: int
    high_watermark: int


@dataclass(frozen=True)
class ClusterSnapshot:
    partitions: list[PartitionState] = field(default_factory=list)
    # group id -> {(topic, partition): committed offset}
    committed_offsets: dict[str, dict[tuple[str, int], int]] = field(default_factory=dict)


class ClusterStateCollector(Collector):
    """Computes partition health, log sizes and consumer lag from ``snapshot()`` at each scrape."""

    def __init__(self, snapshot: Callable[[], ClusterSnapshot]) -> None:
        self._snapshot = snapshot

    def describe(self) -> Iterable:
        return []  # metrics depend on live state; describing them would call snapshot() at registration

    def collect(self) -> Iterator[GaugeMetricFamily]:
        snapshot = self._snapshot()
        under_replicated = sum(1 for p in snapshot.partitions if p.leader >= 0 and len(p.isr) < len(p.replicas))
        offline = sum(1 for p in snapshot.partitions if p.leader < 0)
        yield GaugeMetricFamily("kraftpy_partitions", "Partitions hosted by this broker",
                                value=len(snapshot.partitions))
        yield GaugeMetricFamily("kraftpy_under_replicated_partitions",
                                "Partitions whose ISR is smaller than their replica set", value=under_replicated)
        yield GaugeMetricFamily("kraftpy_offline_partitions", "Partitions without a leader", value=offline)
        size = GaugeMetricFamily("kraftpy_log_size_bytes", "Bytes of all segments of a partition's log",
                                 labels=["topic", "partition"])
        high_watermarks: dict[tuple[str, int], int] = {}
        for p in snapshot.partitions:
            size.add_metric([p.topic, str(p.partition)], p.log_size_bytes)
            high_watermarks[(p.topic, p.partition)] = p.high_watermark
        yield size
        lag = GaugeMetricFamily("kraftpy_consumer_group_lag",
                                "High watermark minus the group's committed offset (never negative)",
                                labels=["group", "topic", "partition"])
        for group, offsets in sorted(snapshot.committed_offsets.items()):
            for (topic, partition), committed in sorted(offsets.items()):
                high_watermark = high_watermarks.get((topic, partition))
                if high_watermark is None or committed < 0:
                    continue
                lag.add_metric([group, topic, str(partition)], max(high_watermark - committed, 0))
        yield lag


@dataclass(frozen=True)
class RaftSnapshot:
    """What the metadata quorum looks like from this node at scrape time."""

    leader_id: int | None  # None: no known leader
    epoch: int
    high_watermark: int  # the quorum's commit point as this node knows it (the leader's, told to followers)
    applied_offset: int  # every metadata record below this offset has been replayed into this node's image
    is_leader: bool


def raft_snapshot_of(cluster) -> RaftSnapshot | None:
    """The quorum state of a broker's ``ClusterRuntime`` (its ``driver`` and ``applied_hw``); None without one."""
    driver = getattr(cluster, "driver", None)
    if driver is None:
        return None
    return RaftSnapshot(leader_id=driver.leader_id, epoch=driver.epoch, high_watermark=driver.high_watermark,
                        applied_offset=cluster.applied_hw, is_leader=driver.leader_id == driver.node_id)


class RaftStateCollector(Collector):
    """Exports the metadata quorum's state from ``snapshot()`` (None: this node runs no quorum -> nothing)."""

    def __init__(self, snapshot: Callable[[], RaftSnapshot | None]) -> None:
        self._snapshot = snapshot

    def describe(self) -> Iterable:
        return []

    def collect(self) -> Iterator[GaugeMetricFamily]:
        raft = self._snapshot()
        if raft is None:
            return
        yield GaugeMetricFamily("kraftpy_raft_leader_id", "Node id of the metadata quorum leader (the active "
                                "controller); -1 when unknown", value=-1 if raft.leader_id is None else raft.leader_id)
        yield GaugeMetricFamily("kraftpy_raft_is_leader", "1 on the metadata quorum leader, 0 elsewhere",
                                value=1 if raft.is_leader else 0)
        yield GaugeMetricFamily("kraftpy_raft_epoch", "Current epoch (term) of the metadata quorum", value=raft.epoch)
        yield GaugeMetricFamily("kraftpy_raft_high_watermark", "Metadata log offset below which entries are "
                                "committed", value=raft.high_watermark)
        yield GaugeMetricFamily("kraftpy_raft_applied_offset", "Metadata log offset below which this node has "
                                "applied every committed entry", value=raft.applied_offset)
        yield GaugeMetricFamily("kraftpy_raft_commit_lag", "Committed metadata entries not yet applied here "
                                "(high watermark minus applied offset, never negative)",
                                value=max(raft.high_watermark - raft.applied_offset, 0))


class BrokerMetrics:
    """One broker's metrics; ``exposition()`` renders them in Prometheus' text format."""

    def __init__(self, snapshot: Callable[[], ClusterSnapshot] | None = None,
                 raft_snapshot: Callable[[], RaftSnapshot | None] | None = None) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        r = self.registry
        self.bytes_in = Counter("kraftpy_topic_bytes_in", "Bytes of record batches produced to a topic",
                                ["topic"], registry=r)
        self.messages_in = Counter("kraftpy_topic_messages_in", "Records produced to a topic (batch headers' "
                                   "records_count)", ["topic"], registry=r)
        self.bytes_out = Counter("kraftpy_topic_bytes_out", "Bytes of record batches fetched from a topic",
                                 ["topic"], registry=r)
        self.requests = Counter("kraftpy_requests", "Requests received, per API", ["api"], registry=r)
        self.request_latency = Histogram("kraftpy_request_latency_seconds",
                                         "Time from decoding a request to its response being ready, per API",
                                         ["api"], buckets=REQUEST_LATENCY_BUCKETS, registry=r)
        self.request_errors = Counter("kraftpy_request_errors", "Error codes in responses, per API and error",
                                      ["api", "error"], registry=r)
        self.group_rebalances = Counter("kraftpy_group_rebalances", "Completed consumer group rebalances "
                                        "(new generations)", registry=r)
        self.log_flush_latency = Histogram("kraftpy_log_flush_latency_seconds",
                                           "Duration of one group-commit fsync round (its _count is the number "
                                           "of rounds)", buckets=FLUSH_LATENCY_BUCKETS, registry=r)
        self.ready = Gauge("kraftpy_broker_ready", "1 once the broker serves clients, 0 before and while "
                           "shutting down", registry=r)
        self.isr_shrinks = Counter("kraftpy_isr_shrinks", "Times a partition led here removed replicas from "
                                   "its ISR", registry=r)
        self.isr_expands = Counter("kraftpy_isr_expands", "Times a partition led here added a caught-up replica "
                                   "back to its ISR", registry=r)
        if snapshot is not None:
            r.register(ClusterStateCollector(snapshot))
        if raft_snapshot is not None:
            r.register(RaftStateCollector(raft_snapshot))

    # -- event hooks (hot path: label lookups only) ---------------------------------------------------
    def on_produce(self, topic: str, batches) -> None:
        self.bytes_in.labels(topic).inc(len(batches))
        self.messages_in.labels(topic).inc(count_records(batches))

    def on_fetch(self, topic: str, size_bytes: int) -> None:
        self.bytes_out.labels(topic).inc(size_bytes)

    def on_request(self, api: str) -> None:
        self.requests.labels(api).inc()

    def on_response(self, api: str, started: float, response) -> None:
        """``started`` is a ``time.perf_counter()`` value taken when the request was decoded."""
        self.request_latency.labels(api).observe(time.perf_counter() - started)
        if response is not None:
            for code in iter_error_codes(response):
                self.request_errors.labels(api, _error_name(code)).inc()

    def on_rebalance(self) -> None:
        self.group_rebalances.inc()

    def on_isr_shrink(self, count: int = 1) -> None:
        """A partition this broker leads shrank its ISR (``count`` changes at once, usually 1)."""
        self.isr_shrinks.inc(count)

    def on_isr_expand(self, count: int = 1) -> None:
        """A partition this broker leads took a caught-up follower back into its ISR."""
        self.isr_expands.inc(count)

    def on_flush(self, duration_s: float) -> None:
        self.log_flush_latency.observe(duration_s)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


def _error_name(code: int) -> str:
    try:
        return ErrorCode(code).name
    except ValueError:
        return str(code)


