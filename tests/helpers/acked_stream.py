"""An idempotent acks=all producer stream that records every delivery report, and the check that a partition
holds every acknowledged record exactly once, at the offset its delivery report named.

Shared by the crash and replication process tests: they differ in the faults they inject, not in what "no
acknowledged write lost" means.
"""

from __future__ import annotations

import time

from client_adapters import confluent_consumer_config


class AckedStream:
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


def read_partition(bootstrap: str, topic: str) -> tuple[list[tuple[int, bytes]], int]:
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


def check_acknowledged_exactly_once(stream: AckedStream, records: list[tuple[int, bytes]], high_watermark: int) -> None:
    """Offsets contiguous from 0; every acknowledged record present once, at its reported offset."""
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
