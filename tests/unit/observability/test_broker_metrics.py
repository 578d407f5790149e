"""Unit tests for the broker metrics: batch-header counting, error-code walking, collectors, HTTP endpoints."""

from __future__ import annotations

import asyncio
import time

from prometheus_client.parser import text_string_to_metric_families

from cluster.config import BrokerConfig, ConfigError, parse_metrics_listener
from cluster.core.errors import ErrorCode
from cluster.observability import (
    BrokerMetrics,
    ClusterSnapshot,
    MetricsHttpServer,
    PartitionState,
    count_records,
)
from cluster.observability.metrics import iter_error_codes
from cluster.wire.messages import produce_response as pr
from cluster.wire.records import build_batch


def samples(metrics: BrokerMetrics) -> dict[tuple[str, tuple], float]:
    out = {}
    for family in text_string_to_metric_families(metrics.exposition().decode()):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def _records(n: int, size: int = 10) -> list[tuple]:
    return [(None, b"x" * size, (), 1_700_000_000_000 + i) for i in range(n)]


def test_count_records_reads_records_count_of_every_batch():
    one = build_batch(_records(7))
    two = build_batch(_records(3), compression=1)  # gzip: the header still says 3
    assert count_records(one) == 7
    assert count_records(one + two) == 10
    assert count_records(b"") == 0
    assert count_records(one[:30]) == 0  # truncated header: counted as nothing, no exception


def test_iter_error_codes_finds_nested_partition_errors():
    response = pr.ProduceResponse(responses=[pr.TopicProduceResponse(name="t", partition_responses=[
        pr.PartitionProduceResponse(index=0, error_code=0),
        pr.PartitionProduceResponse(index=1, error_code=ErrorCode.UNKNOWN_TOPIC_OR_PARTITION),
        pr.PartitionProduceResponse(index=2, error_code=ErrorCode.CORRUPT_MESSAGE),
    ])], throttle_time_ms=0)
    assert sorted(iter_error_codes(response)) == sorted([ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
                                                         ErrorCode.CORRUPT_MESSAGE])


def test_event_metrics_per_topic_and_api():
    metrics = BrokerMetrics()
    batch = build_batch(_records(5, size=100))
    metrics.on_produce("orders", batch)
    metrics.on_produce("orders", batch)
    metrics.on_fetch("orders", 1234)
    started = metrics_start(metrics, "Produce")
    error_response = pr.ProduceResponse(responses=[pr.TopicProduceResponse(name="t", partition_responses=[
        pr.PartitionProduceResponse(index=0, error_code=ErrorCode.NOT_LEADER_OR_FOLLOWER)])])
    metrics.on_response("Produce", started, error_response)
    metrics.on_rebalance()
    values = samples(metrics)
    assert values[("kraftpy_topic_bytes_in_total", (("topic", "orders"),))] == 2 * len(batch)
    assert values[("kraftpy_topic_messages_in_total", (("topic", "orders"),))] == 10
    assert values[("kraftpy_topic_bytes_out_total", (("topic", "orders"),))] == 1234
    assert values[("kraftpy_requests_total", (("api", "Produce"),))] == 1
    assert values[("kraftpy_request_latency_seconds_count", (("api", "Produce"),))] == 1
    assert values[("kraftpy_request_errors_total", (("api", "Produce"), ("error", "NOT_LEADER_OR_FOLLOWER")))] == 1
    assert values[("kraftpy_group_rebalances_total", ())] == 1


def metrics_start(metrics: BrokerMetrics, api: str) -> float:
    metrics.on_request(api)
    return time.perf_counter()


def test_cluster_state_collector_computes_health_size_and_lag_at_scrape_time():
    state = {"snapshot": ClusterSnapshot()}
    metrics = BrokerMetrics(lambda: state["snapshot"])
    assert samples(metrics)[("kraftpy_under_replicated_partitions", ())] == 0
    state["snapshot"] = ClusterSnapshot(
        partitions=[
            PartitionState("t", 0, replicas=(1, 2, 3), isr=(1, 2, 3), leader=1, log_size_bytes=500,
                           high_watermark=40),
            PartitionState("t", 1, replicas=(1, 2, 3), isr=(1,), leader=1, log_size_bytes=70, high_watermark=9),
            PartitionState("t", 2, replicas=(2, 3), isr=(), leader=-1, log_size_bytes=0, high_watermark=0),
        ],
        committed_offsets={"g": {("t", 0): 15, ("t", 1): 12, ("gone", 0): 3}},
    )
    values = samples(metrics)
    assert values[("kraftpy_partitions", ())] == 3
    assert values[("kraftpy_under_replicated_partitions", ())] == 1  # the offline one counts as offline only
    assert values[("kraftpy_offline_partitions", ())] == 1
    assert values[("kraftpy_log_size_bytes", (("partition", "0"), ("topic", "t")))] == 500
    assert values[("kraftpy_consumer_group_lag", (("group", "g"), ("partition", "0"), ("topic", "t")))] == 25
    # committed beyond the high watermark (possible after truncation) is lag 0, never negative
    assert values[("kraftpy_consumer_group_lag", (("group", "g"), ("partition", "1"), ("topic", "t")))] == 0
    assert not any(name == "kraftpy_consumer_group_lag" and dict(labels).get("topic") == "gone"
                   for name, labels in values)


def test_registries_are_per_broker():
    first, second = BrokerMetrics(), BrokerMetrics()
    first.on_fetch("t", 10)
    assert ("kraftpy_topic_bytes_out_total", (("topic", "t"),)) not in samples(second)


def test_flusher_reports_each_fsync_round():
    from cluster.broker.flusher import GroupCommitFlusher

    class FakeLog:
        def __init__(self):
            self.completed = 0

        def prepare_flush(self):
            return FakeTicket()

        def complete_flush(self, ticket):
            self.completed += 1

    class FakeTicket:
        def run(self):
            pass

    class FakePartition:
        deleted = False

        def __init__(self):
            self.log = FakeLog()
            self.flushed = 0

        def on_flushed(self):
            self.flushed += 1

    async def scenario():
        flusher = GroupCommitFlusher()
        durations = []
        flusher.on_round = durations.append
        task = asyncio.create_task(flusher.run())
        partition = FakePartition()
        flusher.mark_dirty(partition)
        await asyncio.sleep(0.05)
        await flusher.stop()
        await asyncio.wait_for(task, 5)
        flusher.shutdown_executor()
        return durations, partition

    durations, partition = asyncio.run(scenario())
    assert len(durations) == 1 and durations[0] >= 0
    assert (partition.log.completed, partition.flushed) == (1, 1)


def test_metrics_listener_config():
    assert parse_metrics_listener("0.0.0.0:9404") == ("0.0.0.0", 9404)
    assert parse_metrics_listener("") is None
    assert BrokerConfig.from_sources(overrides={"metrics.listener": ""}).get("metrics.listener") == ""
    for bad in ("9404", "host:99999", "a:b"):
        try:
            BrokerConfig.from_sources(overrides={"metrics.listener": bad})
        except ConfigError as exc:
            assert "metrics.listener" in str(exc)
        else:
            raise AssertionError(f"{bad!r} accepted")


async def _http(port: int, raw: bytes) -> tuple[int, bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(raw)
    await writer.drain()
    data = await reader.read()
    writer.close()
    status = int(data.split(b" ", 2)[1])
    return status, data.split(b"\r\n\r\n", 1)[1]


def test_http_server_endpoints():
    async def scenario():
        ready = {"value": False}
        metrics = BrokerMetrics()
        metrics.on_fetch("t", 7)
        server = MetricsHttpServer(metrics.exposition, lambda: ready["value"])
        await server.start("127.0.0.1", 0)
        try:
            assert server.url == f"http://127.0.0.1:{server.port}/metrics"
            get = lambda path: f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode()  # noqa: E731
            assert (await _http(server.port, get("/healthz")))[0] == 200
            assert (await _http(server.port, get("/readyz")))[0] == 503
            ready["value"] = True
            assert (await _http(server.port, get("/readyz")))[0] == 200
            status, body = await _http(server.port, get("/metrics"))
            assert status == 200 and b'kraftpy_topic_bytes_out_total{topic="t"} 7.0' in body
            assert (await _http(server.port, get("/nope")))[0] == 404
            assert (await _http(server.port, b"POST /metrics HTTP/1.1\r\n\r\n"))[0] == 405
            assert (await _http(server.port, b"garbage\r\n\r\n"))[0] == 400
            huge = b"GET /metrics HTTP/1.1\r\nX: " + b"a" * 20_000 + b"\r\n\r\n"
            assert (await _http(server.port, huge))[0] == 431
        finally:
            await server.stop()

    asyncio.run(scenario())


# -- ISR shrink/expand counters and the metadata quorum (Raft) collector --------------------------------------------
def test_isr_shrink_and_expand_counters():
    metrics = BrokerMetrics()
    assert samples(metrics)[("kraftpy_isr_shrinks_total", ())] == 0
    metrics.on_isr_shrink()
    metrics.on_isr_shrink(2)
    metrics.on_isr_expand()
    values = samples(metrics)
    assert values[("kraftpy_isr_shrinks_total", ())] == 3
    assert values[("kraftpy_isr_expands_total", ())] == 1


def test_raft_collector_reads_the_snapshot_at_scrape_time():
    from cluster.observability import RaftSnapshot
    state = {"raft": RaftSnapshot(leader_id=2, epoch=5, high_watermark=40, applied_offset=37, is_leader=False)}
    metrics = BrokerMetrics(raft_snapshot=lambda: state["raft"])
    values = samples(metrics)
    assert values[("kraftpy_raft_leader_id", ())] == 2
    assert values[("kraftpy_raft_epoch", ())] == 5
    assert values[("kraftpy_raft_high_watermark", ())] == 40
    assert values[("kraftpy_raft_applied_offset", ())] == 37
    assert values[("kraftpy_raft_commit_lag", ())] == 3
    assert values[("kraftpy_raft_is_leader", ())] == 0
    state["raft"] = RaftSnapshot(leader_id=None, epoch=6, high_watermark=41, applied_offset=41, is_leader=False)
    values = samples(metrics)
    assert values[("kraftpy_raft_leader_id", ())] == -1
    assert values[("kraftpy_raft_commit_lag", ())] == 0
    state["raft"] = None   # no quorum on this node: the family is absent, not zero
    assert not any(name.startswith("kraftpy_raft_") for name, _ in samples(metrics))


def test_raft_snapshot_of_a_cluster_runtime():
    from types import SimpleNamespace

    from cluster.observability.metrics import raft_snapshot_of
    assert raft_snapshot_of(None) is None
    driver = SimpleNamespace(node_id=1, leader_id=1, epoch=3, high_watermark=12)
    snapshot = raft_snapshot_of(SimpleNamespace(driver=driver, applied_hw=10))
    assert (snapshot.leader_id, snapshot.epoch, snapshot.high_watermark, snapshot.applied_offset,
            snapshot.is_leader) == (1, 3, 12, 10, True)
