"""``kraftpy perf produce|consume``: load generators in the spirit of kafka-producer-perf-test and
kafka-consumer-perf-test, built on our own ``cluster.client`` so they run against any Kafka-compatible cluster.

``perf produce`` sends ``--num-records`` records of ``--record-size`` random bytes, optionally paced to
``--throughput`` records/s.  Records are grouped into batches of up to ``--batch-bytes`` (like ``batch.size``;
a batch also leaves once it is ``--linger-ms`` old when pacing keeps it from filling), batches go to the
topic's partitions in turn (sticky per batch), and up to ``--max-in-flight`` Produce requests are pipelined
on the connection so the tool measures the broker rather than round trips.  A record's latency is the time
from its creation to the acknowledgement of its batch (with ``--acks 0``: until the request was written).

Output, like Kafka's tools: a progress line every 5 s on stdout and a final summary line,
``N records sent, R records/sec (M MB/sec), A ms avg latency, X ms max latency, P ms 50th, ... 99.9th.``
``perf consume`` reads ``--messages`` records from the beginning of every partition (no group) and prints
progress and a summary of MB and records per second.

Exit codes as the rest of the CLI (0 ok, 1 the cluster refused, 2 usage or connection); ``perf consume``
also exits 1 when ``--timeout-ms`` passes without a record before ``--messages`` were read.
"""

from __future__ import annotations

import argparse
import array
import asyncio
import os
import sys
import time

from cluster.cli.common import (
    ACKS,
    COMPRESSION_IDS,
    EXIT_OK,
    kafka_client,
    non_negative_int,
    positive_int,
    run_command,
)
from cluster.client import EARLIEST_TIMESTAMP
from cluster.client.errors import RETRIABLE_ERRORS, error_from_code
from cluster.core.errors import ErrorCode, KafkaError

MB = 1024 * 1024
DEFAULT_REPORTING_INTERVAL_MS = 5000


def percentile(sorted_values, fraction: float) -> float:
    """Nearest-rank percentile of an ascending sequence (0 for an empty one)."""
    if not sorted_values:
        return 0.0
    index = min(int(fraction * len(sorted_values)), len(sorted_values) - 1)
    return sorted_values[index]


class ProducerStats:
    """Per-record latencies (ms) plus a window for the periodic progress line."""

    def __init__(self, record_size: int, reporting_interval_s: float, out=None) -> None:
        self.record_size = record_size
        self.reporting_interval_s = reporting_interval_s
        self.out = out or sys.stdout
        self.latencies_ms = array.array("f")
        self.started = time.monotonic()
        self.total_records = 0
        self.total_latency_ms = 0.0
        self.max_latency_ms = 0.0
        self._window_start = self.started
        self._window_records = 0
        self._window_latency_ms = 0.0
        self._window_max_ms = 0.0

    def record_batch(self, created: list[float], acked: float) -> None:
        for created_at in created:
            latency_ms = (acked - created_at) * 1000
            self.latencies_ms.append(latency_ms)
            self._window_latency_ms += latency_ms
            self._window_max_ms = max(self._window_max_ms, latency_ms)
        self.total_records += len(created)
        self._window_records += len(created)
        if acked - self._window_start >= self.reporting_interval_s:
            self._print_window(acked)

    def _print_window(self, now: float) -> None:
        elapsed = max(now - self._window_start, 1e-9)
        records = self._window_records
        print(f"{records} records sent, {records / elapsed:.1f} records/sec "
              f"({records * self.record_size / MB / elapsed:.2f} MB/sec), "
              f"{self._window_latency_ms / max(records, 1):.1f} ms avg latency, "
              f"{self._window_max_ms:.1f} ms max latency.", file=self.out, flush=True)
        self.total_latency_ms += self._window_latency_ms
        self.max_latency_ms = max(self.max_latency_ms, self._window_max_ms)
        self._window_start, self._window_records = now, 0
        self._window_latency_ms, self._window_max_ms = 0.0, 0.0

    def summary(self, now: float | None = None) -> str:
        now = time.monotonic() if now is None else now
        elapsed = max(now - self.started, 1e-9)
        total_latency_ms = self.total_latency_ms + self._window_latency_ms
        max_latency_ms = max(self.max_latency_ms, self._window_max_ms)
        ordered = sorted(self.latencies_ms)
        records = self.total_records
        return (f"{records} records sent, {records / elapsed:.1f} records/sec "
                f"({records * self.record_size / MB / elapsed:.2f} MB/sec), "
                f"{total_latency_ms / max(records, 1):.2f} ms avg latency, {max_latency_ms:.2f} ms max latency, "
                f"{percentile(ordered, 0.5):.2f} ms 50th, {percentile(ordered, 0.95):.2f} ms 95th, "
                f"{percentile(ordered, 0.99):.2f} ms 99th, {percentile(ordered, 0.999):.2f} ms 99.9th.")


class _Pacer:
    """Holds the send rate at ``throughput`` records/s (<= 0: unlimited), like Kafka's ThroughputThrottler."""

    def __init__(self, throughput: float) -> None:
        self.throughput = throughput
        self.started = time.monotonic()

    async def wait_for(self, records_so_far: int) -> None:
        if self.throughput <= 0:
            return
        due = self.started + records_so_far / self.throughput
        delay = due - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)


async def _produce_perf(args: argparse.Namespace) -> int:
    acks = ACKS[args.acks]
    compression = COMPRESSION_IDS[args.compression]
    payload = os.urandom(args.record_size)
    records_per_batch = max(1, args.batch_bytes // max(args.record_size, 1))
    stats = ProducerStats(args.record_size, args.reporting_interval_ms / 1000)
    in_flight = asyncio.Semaphore(args.max_in_flight)
    pending: set[asyncio.Task] = set()
    failure: list[BaseException] = []
    async with kafka_client(args) as client:
        topic = await client.topic(args.topic, auto_create=True)
        partitions = sorted(topic.partitions)
        pacer = _Pacer(args.throughput)
        stats.started = pacer.started = time.monotonic()

        async def send(partition: int, created: list[float]) -> None:
            try:
                timestamp_ms = int(time.time() * 1000)
                records = [(None, payload, (), timestamp_ms)] * len(created)
                await client.produce_many({(args.topic, partition): records}, acks=acks, compression=compression)
                stats.record_batch(created, time.monotonic())
            except BaseException as exc:  # noqa: BLE001 - re-raised by the sender loop below
                failure.append(exc)
            finally:
                in_flight.release()

        sent, batch_number = 0, 0
        while sent < args.num_records and not failure:
            count = min(records_per_batch, args.num_records - sent)
            created: list[float] = []
            batch_started = time.monotonic()
            for _ in range(count):
                await pacer.wait_for(sent + len(created))
                created.append(time.monotonic())
                if args.throughput > 0 and (time.monotonic() - batch_started) * 1000 >= args.linger_ms:
                    break  # pacing kept the batch from filling within linger.ms: send what we have
            await in_flight.acquire()
            task = asyncio.create_task(send(partitions[batch_number % len(partitions)], created))
            pending.add(task)
            task.add_done_callback(pending.discard)
            sent += len(created)
            batch_number += 1
        if pending:
            await asyncio.gather(*pending)
    print(stats.summary(), flush=True)
    if failure:
        raise failure[0]
    return EXIT_OK


class ConsumerStats:
    def __init__(self, reporting_interval_s: float, out=None) -> None:
        self.reporting_interval_s = reporting_interval_s
        self.out = out or sys.stdout
        self.started = time.monotonic()
        self.records = 0
        self.bytes = 0
        self._window_start = self.started
        self._window_records = 0
        self._window_bytes = 0

    def add(self, records: int, size_bytes: int, now: float) -> None:
        self.records += records
        self.bytes += size_bytes
        self._window_records += records
        self._window_bytes += size_bytes
        if now - self._window_start >= self.reporting_interval_s:
            elapsed = max(now - self._window_start, 1e-9)
            print(f"{self.records} records consumed, {self._window_records / elapsed:.1f} records/sec "
                  f"({self._window_bytes / MB / elapsed:.2f} MB/sec).", file=self.out, flush=True)
            self._window_start, self._window_records, self._window_bytes = now, 0, 0

    def summary(self, now: float | None = None) -> str:
        now = time.monotonic() if now is None else now
        elapsed = max(now - self.started, 1e-9)
        return (f"{self.records} records consumed, {self.bytes / MB:.4f} MB, {self.records / elapsed:.1f} "
                f"records/sec ({self.bytes / MB / elapsed:.2f} MB/sec), {elapsed * 1000:.0f} ms elapsed.")


async def _consume_perf(args: argparse.Namespace) -> int:
    stats = ConsumerStats(args.reporting_interval_ms / 1000)
    async with kafka_client(args) as client:
        topic = await client.topic(args.topic)
        partitions = sorted(topic.partitions)
        start = await client.list_offsets(args.topic, partitions, EARLIEST_TIMESTAMP)
        positions = {(args.topic, p): start[p].offset for p in partitions}
        stats.started = last_record_at = time.monotonic()
        while stats.records < args.messages:
            results = await client.fetch(positions, max_wait_ms=500, max_bytes=args.fetch_max_bytes)
            now = time.monotonic()
            records, size_bytes = 0, 0
            for tp, fetched in results.items():
                if fetched.error_code:
                    if fetched.error_code not in RETRIABLE_ERRORS:
                        raise error_from_code(fetched.error_code, None, api="Fetch",
                                              resource=f"{tp[0]}-{tp[1]}")
                    continue
                for record in fetched.records:
                    records += 1
                    size_bytes += len(record.value or b"") + len(record.key or b"")
                positions[tp] = fetched.next_offset
            if records:
                last_record_at = now
                stats.add(records, size_bytes, now)
            elif (now - last_record_at) * 1000 >= args.timeout_ms:
                print(stats.summary(now), flush=True)
                raise KafkaError(ErrorCode.REQUEST_TIMED_OUT,
                                 f"no records for {args.timeout_ms} ms after consuming {stats.records} of "
                                 f"{args.messages}")
    print(stats.summary(), flush=True)
    return EXIT_OK


def add_commands(commands, common) -> None:
    perf = commands.add_parser("perf", help="measure produce and consume throughput and latency")
    actions = perf.add_subparsers(dest="perf_action", required=True)

    produce = actions.add_parser(
        "produce", parents=[common], help="send records as fast as allowed and report throughput and latency",
        description="Like kafka-producer-perf-test: produces --num-records records of --record-size bytes, "
                    "prints a progress line every 5 s and a summary with latency percentiles.")
    produce.add_argument("--topic", required=True)
    produce.add_argument("--num-records", type=positive_int, required=True)
    produce.add_argument("--record-size", type=positive_int, required=True, metavar="BYTES")
    produce.add_argument("--throughput", type=float, default=-1,
                         help="records/s to aim for; -1 (default) for no limit")
    produce.add_argument("--acks", choices=sorted(ACKS), default="all")
    produce.add_argument("--compression", choices=list(COMPRESSION_IDS), default="none")
    produce.add_argument("--linger-ms", type=non_negative_int, default=5,
                         help="with --throughput: send a batch once it is this old even if not full")
    produce.add_argument("--batch-bytes", type=positive_int, default=16384,
                         help="payload bytes per batch (Kafka's batch.size; default 16384)")
    produce.add_argument("--max-in-flight", type=positive_int, default=5,
                         help="Produce requests pipelined at once (default 5)")
    produce.add_argument("--reporting-interval-ms", type=positive_int, default=DEFAULT_REPORTING_INTERVAL_MS,
                         help=argparse.SUPPRESS)
    produce.set_defaults(func=lambda a: run_command(_produce_perf, a))

    consume = actions.add_parser(
        "consume", parents=[common], help="read records from the beginning and report throughput",
        description="Like kafka-consumer-perf-test: reads --messages records from the start of every "
                    "partition of --topic (no consumer group) and prints progress and a summary.")
    consume.add_argument("--topic", required=True)
    consume.add_argument("--messages", type=positive_int, required=True)
    consume.add_argument("--timeout-ms", type=positive_int, default=10_000,
                         help="give up (exit 1) after this long without a record (default 10000)")
    consume.add_argument("--fetch-max-bytes", type=positive_int, default=50 * MB, help=argparse.SUPPRESS)
    consume.add_argument("--reporting-interval-ms", type=positive_int, default=DEFAULT_REPORTING_INTERVAL_MS,
                         help=argparse.SUPPRESS)
    consume.set_defaults(func=lambda a: run_command(_consume_perf, a))


__all__ = ["ConsumerStats", "ProducerStats", "add_commands", "percentile"]
