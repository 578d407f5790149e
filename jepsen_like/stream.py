"""The stream workload: asynchronous confluent-kafka producers and a consumer group, as applications run them.

Why it exists next to the queue workload: the queue sends one record at a time and retires a producer after
any indeterminate send, so it never has several batches in flight per partition and never exercises the
producer's own retries across a leader change.  That is where idempotent deduplication matters, and where a
production incident wrote records twice (a paused active controller fenced every broker, partitions changed
leaders, idempotent producers with acks=all and linger.ms=5 retried).  Here:

* several producers call `produce()` at `rate_per_s` records/s each with a delivery callback, up to 5 requests
  in flight per connection; some are idempotent (enable.idempotence=true), the others plain acks=all with
  retries.  An indeterminate delivery (timeout, connection lost, not-leader...) is recorded as `info` and the
  producer goes on: its internal retry path is what is under test.  Only a *fatal* producer error (librdkafka
  then refuses every later produce) makes a new incarnation with a new producer name.
* every value is `<producer>:<sequence>`, e.g. `i0-0:1742` (idempotent producer 0, incarnation 0, record 1742),
  so each read proves which send it came from and in which order the producer sent it.
* consumers in one group (subscribe, offsets committed after each batch) read during the whole run.
* after healing, one final reader assigns every partition from offset 0 and reads up to its high_watermark.

History ops: `send` invoke [[partition, value]] and completion ok [[partition, [offset, value]]] / info / fail;
`poll` ok {partition: [[offset, value], ...]} (the final reader's carry "final": true); `assign` for every
rebalance a group member sees; one `final-read` op with each partition's high_watermark and whether it was
reached.  Each send's invoke and completion carry "id" (its value), because many sends of one process overlap.
"""

from __future__ import annotations

import random
import threading
import time

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, Producer, TopicPartition

from jepsen_like.workload import DEFINITE_SEND_ERRORS

TOPIC = "jepsen-stream"
# Longer than any outage a run's faults cause (a role fault of 10-15 s, then a restarted broker waiting out its old
# session before it may rejoin: 20-30 s seen), so librdkafka keeps retrying across the leader change instead of
# timing batches out: the retry is the path under test.  A timeout is worse than a gap: librdkafka then bumps its
# epoch and renumbers every unacknowledged record, also those already written to other partitions, which duplicates
# them (its INTRODUCTION.md, "Message timeout considerations"; seed 104 of the first 120 s table, with 30 s here).
MESSAGE_TIMEOUT_MS = 120_000
DRAIN_SLACK_S = 10.0             # beyond message.timeout.ms, for the last delivery reports to arrive
POLL_TIMEOUT_S = 0.5
FINAL_CONSUME_BATCH = 1000
MAX_BEHIND_S = 1.0               # a producer that fell further behind its rate skips ahead instead of bursting
CLOSE_TIMEOUT_S = 15.0

COMMON_PRODUCER = {"acks": "all", "max.in.flight.requests.per.connection": 5, "linger.ms": 5,
                   "message.timeout.ms": MESSAGE_TIMEOUT_MS, "retry.backoff.ms": 100}
IDEMPOTENT = {**COMMON_PRODUCER, "enable.idempotence": True}
NON_IDEMPOTENT = {**COMMON_PRODUCER, "enable.idempotence": False, "retries": 2_147_483_647}


def encode_value(producer: str, seq: int) -> str:
    return f"{producer}:{seq}"


def decode_value(value: str) -> tuple[str, int] | None:
    """(producer, sequence) of a value, None for anything this workload never writes."""
    producer, sep, seq = str(value).rpartition(":")
    if not sep or not seq.isdigit():
        return None
    return producer, int(seq)


def is_idempotent(producer: str) -> bool:
    return producer.startswith("i")


class StreamProducer(threading.Thread):
    """One producer at a steady rate; records each send's invoke and its delivery report."""

    def __init__(self, index: int, *, idempotent: bool, partitions: int, bootstrap: str, recorder,
                 rate_per_s: float, seed: int, stop_event: threading.Event, client_log=None,
                 topic: str = TOPIC) -> None:
        super().__init__(name=f"producer-{index}", daemon=True)
        self.index, self.idempotent, self.partitions = index, idempotent, partitions
        self.bootstrap, self.recorder, self.topic = bootstrap, recorder, topic
        self.gap_s = 1.0 / rate_per_s
        self.rng = random.Random(f"{seed}/producer/{index}")
        self.stop_event, self.client_log = stop_event, client_log
        self.process = index
        self.incarnation = -1
        self.seq = 0
        self.producer: Producer | None = None
        self.fatal = False
        self.error: BaseException | None = None

    @property
    def name_prefix(self) -> str:
        return f"{'i' if self.idempotent else 'n'}{self.index}"

    def new_producer(self) -> None:
        """A fresh librdkafka producer under a fresh producer name (the first, or after a fatal error)."""
        if self.producer is not None:
            self.producer.purge()
            self.producer.flush(0)
        self.incarnation += 1
        self.fatal = False
        config = {"bootstrap.servers": self.bootstrap, "client.id": f"jl-{self.name_prefix}-{self.incarnation}",
                  **(IDEMPOTENT if self.idempotent else NON_IDEMPOTENT)}
        if self.client_log is not None:
            config["logger"] = self.client_log
        self.producer = Producer(config)

    def delivered(self, err, msg) -> None:
        """librdkafka's delivery report, run inside this thread's poll()/flush()."""
        value, partition = msg.value().decode(), msg.partition()
        if err is None:
            self.recorder.record(self.process, "ok", "send", [(partition, (msg.offset(), value))], id=value)
            return
        if err.fatal():
            self.fatal = True
        kind = "fail" if err.code() in DEFINITE_SEND_ERRORS else "info"
        self.recorder.record(self.process, kind, "send", [(partition, value)], id=value,
                             error=f"{err.name()}: {err.str()}")

    def send_one(self) -> None:
        value = encode_value(f"{self.name_prefix}-{self.incarnation}", self.seq)
        self.seq += 1
        partition = self.rng.randrange(self.partitions)
        self.recorder.record(self.process, "invoke", "send", [(partition, value)], id=value)
        try:
            self.producer.produce(self.topic, value=value.encode(), partition=partition,
                                  on_delivery=self.delivered)
        except BufferError as exc:        # never left the client: definitely not appended
            self.recorder.record(self.process, "fail", "send", [(partition, value)], id=value,
                                 error=f"local queue full: {exc}")
        except KafkaException as exc:
            error = exc.args[0]
            self.fatal = self.fatal or error.fatal()
            self.recorder.record(self.process, "fail", "send", [(partition, value)], id=value,
                                 error=f"produce: {error.name()}: {error.str()}")

    def run(self) -> None:
        try:
            self.new_producer()
            next_at = time.monotonic()
            while not self.stop_event.is_set():
                if self.fatal:
                    self.recorder.record(self.process, "info", "new-producer",
                                         {"producer": f"{self.name_prefix}-{self.incarnation}"})
                    self.new_producer()
                now = time.monotonic()
                if now < next_at:
                    self.producer.poll(min(next_at - now, 0.05))
                    continue
                self.send_one()
                next_at = max(next_at + self.gap_s, now - MAX_BEHIND_S)
        except BaseException as exc:
            self.error = exc

    def drain(self) -> int:
        """After the workload (and healing): wait for every outstanding delivery report.  librdkafka reports
        each message within message.timeout.ms, so this ends; returns how many were still outstanding."""
        if self.producer is None:
            return 0
        return self.producer.flush(MESSAGE_TIMEOUT_MS / 1000 + DRAIN_SLACK_S)


class GroupConsumer(threading.Thread):
    """A member of the test's consumer group: subscribes, polls for the whole run, commits after each batch."""

    def __init__(self, process: int, *, group_id: str, bootstrap: str, recorder, stop_event: threading.Event,
                 client_log=None, topic: str = TOPIC) -> None:
        super().__init__(name=f"consumer-{process}", daemon=True)
        self.process, self.recorder, self.stop_event, self.topic = process, recorder, stop_event, topic
        config = {"bootstrap.servers": bootstrap, "client.id": f"jl-c{process}", "group.id": group_id,
                  "enable.auto.commit": False, "auto.offset.reset": "earliest",
                  "isolation.level": "read_committed", "fetch.wait.max.ms": 100, "session.timeout.ms": 10_000,
                  "enable.partition.eof": False}
        if client_log is not None:
            config["logger"] = client_log
        self.consumer = Consumer(config)
        self.error: BaseException | None = None

    def rebalanced(self, kind: str):
        def callback(_consumer, partitions):
            self.recorder.record(self.process, "ok", "assign", sorted(tp.partition for tp in partitions),
                                 rebalance=kind)
        return callback

    def poll_once(self) -> None:
        messages = self.consumer.consume(num_messages=500, timeout=POLL_TIMEOUT_S)
        reads: dict[int, list[tuple[int, str]]] = {}
        errors = sorted({m.error().name() for m in messages if m.error() is not None})
        for msg in messages:
            if msg.error() is None:
                reads.setdefault(msg.partition(), []).append((msg.offset(), msg.value().decode()))
        if reads or errors:
            self.recorder.record(self.process, "ok", "poll", reads, error=", ".join(errors) or None)
        if reads:
            try:
                self.consumer.commit(asynchronous=True)
            except KafkaException:
                pass    # a failed commit only means re-reading after a rebalance, which the checker allows

    def run(self) -> None:
        try:
            self.consumer.subscribe([self.topic], on_assign=self.rebalanced("assign"),
                                    on_revoke=self.rebalanced("revoke"))
            while not self.stop_event.is_set():
                self.poll_once()
        except BaseException as exc:
            self.error = exc

    def close(self) -> None:
        if not close_bounded(self.consumer):
            self.recorder.record(self.process, "info", "close", None, error="consumer close timed out")


def close_bounded(consumer: Consumer, timeout_s: float = CLOSE_TIMEOUT_S) -> bool:
    """Consumer.close() leaves the group and waits for librdkafka's answer with no timeout of its own (seen hanging
    for minutes right after faults), and it holds the main thread in C where not even SIGTERM gets through.  So it
    runs on a daemon thread and is abandoned after `timeout_s`; True if it finished."""
    def close() -> None:
        try:
            consumer.close()
        except (KafkaException, RuntimeError):
            pass

    thread = threading.Thread(target=close, name="consumer-close", daemon=True)
    thread.start()
    thread.join(timeout_s)
    return not thread.is_alive()


def high_watermarks(consumer: Consumer, topic: str, partitions: int, deadline: float) -> dict[int, int]:
    """partition -> high_watermark, asking until each partition answers or the deadline passes."""
    found: dict[int, int] = {}
    while len(found) < partitions and time.monotonic() < deadline:
        for p in range(partitions):
            if p in found:
                continue
            try:
                _low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=2.0)
                found[p] = high
            except KafkaException:
                time.sleep(0.2)
    return found


def final_read(bootstrap: str, recorder, process: int, partitions: int, deadline: float, client_log=None,
               topic: str = TOPIC) -> dict:
    """Every partition from its first offset up to the high_watermark it has now (after healing): the record of
    what the log holds, against which the checker compares acknowledgements and the group's reads."""
    config = {"bootstrap.servers": bootstrap, "group.id": f"jl-final-{process}", "enable.auto.commit": False,
              "isolation.level": "read_committed", "auto.offset.reset": "earliest", "enable.partition.eof": False}
    if client_log is not None:
        config["logger"] = client_log
    consumer = Consumer(config)
    try:
        watermarks = high_watermarks(consumer, topic, partitions, deadline)
        positions = {p: 0 for p in watermarks}
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in watermarks])
        while time.monotonic() < deadline and any(positions[p] < hw for p, hw in watermarks.items()):
            messages = consumer.consume(num_messages=FINAL_CONSUME_BATCH, timeout=POLL_TIMEOUT_S)
            reads: dict[int, list[tuple[int, str]]] = {}
            for msg in messages:
                if msg.error() is None:
                    reads.setdefault(msg.partition(), []).append((msg.offset(), msg.value().decode()))
                    positions[msg.partition()] = msg.offset() + 1
            if reads:
                recorder.record(process, "ok", "poll", reads, final=True)
        reached = {p: positions[p] >= hw for p, hw in watermarks.items()}
        result = {"high_watermark": watermarks, "reached": reached,
                  "complete": len(watermarks) == partitions and all(reached.values())}
        recorder.record(process, "ok", "final-read", result)
        return result
    finally:
        close_bounded(consumer)

