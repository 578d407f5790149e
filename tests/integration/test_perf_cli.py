"""`kraftpy perf produce|consume` as a user runs them, against the module's broker process.

Checks the summary lines (counts, rates and latency percentiles present and plausible), that the records
really landed (confluent-kafka's watermarks), the periodic progress line, throttling, and exit codes.
"""

from __future__ import annotations

import re
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from confluent_kafka import Consumer, TopicPartition

pytestmark = [pytest.mark.timeout(120)]

REPO_ROOT = Path(__file__).resolve().parents[2]
PRODUCE_SUMMARY = re.compile(
    r"^(?P<records>\d+) records sent, (?P<rate>[\d.]+) records/sec \((?P<mb>[\d.]+) MB/sec\), "
    r"(?P<avg>[\d.]+) ms avg latency, (?P<max>[\d.]+) ms max latency, (?P<p50>[\d.]+) ms 50th, "
    r"(?P<p95>[\d.]+) ms 95th, (?P<p99>[\d.]+) ms 99th, (?P<p999>[\d.]+) ms 99.9th\.$", re.M)
PROGRESS = re.compile(r"^(\d+) records sent, [\d.]+ records/sec \([\d.]+ MB/sec\), [\d.]+ ms avg latency, "
                      r"[\d.]+ ms max latency\.$", re.M)
CONSUME_SUMMARY = re.compile(r"^(?P<records>\d+) records consumed, (?P<mb>[\d.]+) MB, (?P<rate>[\d.]+) "
                             r"records/sec \([\d.]+ MB/sec\), \d+ ms elapsed\.$", re.M)


def kraftpy(broker, *args: str, bootstrap: str | None = None) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "cluster", *args, "--bootstrap-server", bootstrap or broker.bootstrap]
    return subprocess.run(command, capture_output=True, text=True, timeout=100, cwd=REPO_ROOT)


def ok(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 0, f"exit {result.returncode}\nstdout: {result.stdout}\nstderr: {result.stderr}"
    return result.stdout


def high_watermarks(broker, topic: str, partitions: int) -> int:
    consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "perf-check"})
    try:
        return sum(consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
                   for p in range(partitions))
    finally:
        consumer.close()


def test_perf_produce_then_consume(broker):
    topic = f"perf-{uuid.uuid4().hex[:8]}"
    ok(kraftpy(broker, "topics", "create", topic, "--partitions", "2"))
    out = ok(kraftpy(broker, "perf", "produce", "--topic", topic, "--num-records", "5000", "--record-size", "100"))
    summary = PRODUCE_SUMMARY.search(out)
    assert summary is not None, out
    assert int(summary["records"]) == 5000
    assert float(summary["rate"]) > 0 and float(summary["mb"]) > 0
    p50, p95, p99, p999, top = (float(summary[k]) for k in ("p50", "p95", "p99", "p999", "max"))
    assert 0 < p50 <= p95 <= p99 <= p999 <= top
    assert high_watermarks(broker, topic, 2) == 5000

    consumed = ok(kraftpy(broker, "perf", "consume", "--topic", topic, "--messages", "5000"))
    summary = CONSUME_SUMMARY.search(consumed)
    assert summary is not None, consumed
    assert int(summary["records"]) == 5000
    assert float(summary["mb"]) == pytest.approx(5000 * 100 / 1024 / 1024, rel=1e-3)


def test_perf_produce_throttled_with_compression_and_acks_1(broker):
    topic = f"perf-thr-{uuid.uuid4().hex[:8]}"
    out = ok(kraftpy(broker, "perf", "produce", "--topic", topic, "--num-records", "400", "--record-size", "50",
                     "--throughput", "1000", "--acks", "1", "--compression", "lz4", "--linger-ms", "2",
                     "--batch-bytes", "1000", "--reporting-interval-ms", "100"))
    summary = PRODUCE_SUMMARY.search(out)
    assert summary is not None, out
    assert int(summary["records"]) == 400
    progress = PROGRESS.findall(out)
    assert len(progress) >= 2, out  # ~0.4 s of sending, a line every 0.1 s
    assert sum(int(n) for n in progress) <= 400
    assert float(summary["rate"]) <= 1100  # paced: 400 records at 1000/s take at least ~0.4 s
    assert high_watermarks(broker, topic, 1) == 400


def test_perf_exit_codes(broker):
    from broker_process import free_port

    unreachable = kraftpy(broker, "perf", "produce", "--topic", "t", "--num-records", "1", "--record-size", "1",
                          bootstrap=f"127.0.0.1:{free_port()}")
    assert unreachable.returncode == 2 and "cannot reach broker" in unreachable.stderr
    missing = kraftpy(broker, "perf", "consume", "--topic", f"perf-none-{uuid.uuid4().hex[:8]}", "--messages", "1")
    assert missing.returncode == 1 and "UNKNOWN_TOPIC_OR_PARTITION" in missing.stderr
    usage = kraftpy(broker, "perf", "produce", "--topic", "t", "--num-records", "0", "--record-size", "1")
    assert usage.returncode == 2
    topic = f"perf-short-{uuid.uuid4().hex[:8]}"
    ok(kraftpy(broker, "perf", "produce", "--topic", topic, "--num-records", "10", "--record-size", "10"))
    short = kraftpy(broker, "perf", "consume", "--topic", topic, "--messages", "20", "--timeout-ms", "1000")
    assert short.returncode == 1 and "after consuming 10 of 20" in short.stderr
