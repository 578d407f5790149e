"""kill -9 the broker under an idempotent acks=all producer: no acknowledged write is lost or duplicated.

A confluent-kafka producer streams numbered records.  Twice, after a few hundred more acknowledgements,
the broker is killed with SIGKILL mid-stream and restarted on the same data directory and port while
the producer keeps going.  Afterwards, reading the partition from the beginning must show: offsets
contiguous from 0, every acknowledged record present exactly once at the offset its delivery report
named, and a new producer continuing at the log end offset.
"""

from __future__ import annotations

import random
import time

import pytest
from client_adapters import confluent_consumer_config, create_topic

pytestmark = [pytest.mark.timeout(180)]

KILLS = 2
ACKS_BEFORE_KILL = 300
ACKS_AFTER_RESTART = 100


class Stream:
    """Produces `seq-N` records as fast as acknowledgements allow, recording every delivery report."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        from confluent_kafka import Producer

        self.topic = topic
        self.acked: dict[int, int] = {}      # sequence number -> offset from the delivery report
        self.failed: dict[int, str] = {}
        self.client_errors: list[str] = []
        self.next_seq = 0
        self.producer = Producer({
            "bootstrap.servers": bootstrap,
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 2,
            "message.timeout.ms": 90_000,
            "reconnect.backoff.ms": 50,
            "reconnect.backoff.max.ms": 300,
            "retry.backoff.ms": 50,
            "retry.backoff.max.ms": 300,
            "error_cb": self._on_error,
        })

    def _on_error(self, err) -> None:
        self.client_errors.append(f"{'FATAL ' if err.fatal() else ''}{err}")

    def _on_delivery(self, err, msg) -> None:
        seq = int(msg.value().split(b"-")[1])
        if err is None:
            assert seq not in self.acked, f"seq {seq} acknowledged twice"
            self.acked[seq] = msg.offset()
        else:
            self.failed[seq] = str(err)

    def pump(self, seconds: float = 0.0, until_acked: int | None = None, timeout_s: float = 60.0) -> None:
        """Keep ~200 records in flight; stop after `seconds`, or once `until_acked` are acknowledged."""
        started = time.monotonic()
        while True:
            elapsed = time.monotonic() - started
            if until_acked is None and elapsed >= seconds:
                return
            if until_acked is not None and len(self.acked) >= until_acked:
                return
            if elapsed > timeout_s:
                raise AssertionError(f"only {len(self.acked)} acknowledged after {timeout_s}s "
                                     f"(wanted {until_acked}); client errors: {self.client_errors[-5:]}")
            if self.next_seq - len(self.acked) - len(self.failed) < 200:
                self.burst(20)
            self.producer.poll(0.005)

    def burst(self, count: int) -> None:
        for _ in range(count):
            self.producer.produce(self.topic, value=f"seq-{self.next_seq}".encode(), partition=0,
                                  on_delivery=self._on_delivery)
            self.next_seq += 1
        self.producer.poll(0)

    def fatal_errors(self) -> list[str]:
        return [e for e in self.client_errors if e.startswith("FATAL")]


def _read_partition(bootstrap: str, topic: str) -> tuple[list[tuple[int, bytes]], int]:
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    consumer = Consumer(confluent_consumer_config(bootstrap))
    try:
        low, high = consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=10, cached=False)
        assert low == 0, f"log start offset {low} after restarts (nothing was deleted)"
        consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
        records: list[tuple[int, bytes]] = []
        deadline = time.monotonic() + 60
        while len(records) < high and time.monotonic() < deadline:
            batch = consumer.consume(1000, 0) or [m for m in [consumer.poll(0.2)] if m is not None]
            records.extend((m.offset(), m.value()) for m in batch if m.error() is None)
        return records, high
    finally:
        consumer.close()


def test_acknowledged_writes_survive_kill_9_restarts(broker_factory):
    from confluent_kafka import Producer

    broker = broker_factory("crash")
    topic = "crash-test"
    create_topic(broker.bootstrap, topic, 1)
    stream = Stream(broker.bootstrap, topic)

    unacknowledged_at_kill = []
    rng = random.Random(7)
    for _ in range(KILLS):
        stream.pump(until_acked=len(stream.acked) + ACKS_BEFORE_KILL)
        stream.burst(100)  # records the producer is sending while the broker dies
        time.sleep(rng.uniform(0.001, 0.006))  # linger.ms=2: kill before, during or after the request
        broker.kill9()
        unacknowledged_at_kill.append(stream.next_seq - len(stream.acked) - len(stream.failed))
        stream.pump(seconds=0.5)  # the producer keeps queueing while the broker is down
        broker.start()
        stream.pump(until_acked=len(stream.acked) + ACKS_AFTER_RESTART)
    assert all(n > 0 for n in unacknowledged_at_kill), f"no record in flight at a kill: {unacknowledged_at_kill}"
    remaining = stream.producer.flush(60)
    assert remaining == 0, f"{remaining} records still unacknowledged 60 s after the last restart"
    assert not stream.fatal_errors(), f"idempotent producer hit fatal errors: {stream.fatal_errors()}"

    records, high_watermark = _read_partition(broker.bootstrap, topic)
    offsets = [offset for offset, _ in records]
    assert offsets == list(range(high_watermark)), (
        f"offsets not contiguous from 0: read {len(offsets)} records, high watermark {high_watermark}")
    seen: dict[int, list[int]] = {}
    for offset, value in records:
        seen.setdefault(int(value.split(b"-")[1]), []).append(offset)
    lost = sorted(seq for seq in stream.acked if seq not in seen)
    assert not lost, f"{len(lost)} acknowledged records lost, e.g. seq {lost[:10]}"
    duplicated = sorted(seq for seq in stream.acked if len(seen[seq]) > 1)
    assert not duplicated, f"acknowledged records stored twice: {[(s, seen[s]) for s in duplicated[:10]]}"
    moved = [(seq, off, seen[seq][0]) for seq, off in stream.acked.items() if seen[seq][0] != off]
    assert not moved, f"records not at the offset their delivery report named (seq, reported, actual): {moved[:10]}"
    assert len(stream.acked) >= KILLS * (ACKS_BEFORE_KILL + ACKS_AFTER_RESTART)

    producer = Producer({"bootstrap.servers": broker.bootstrap, "acks": "all", "linger.ms": 0})
    offsets_after: list[int] = []
    for i in range(5):
        producer.produce(topic, value=f"after-{i}".encode(), partition=0,
                         on_delivery=lambda err, msg: offsets_after.append(-1 if err else msg.offset()))
    assert producer.flush(30) == 0
    assert offsets_after == list(range(high_watermark, high_watermark + 5))
