"""Jepsen's queue workload on confluent-kafka: each worker is a producer plus an assign-based consumer.

Integer keys map one-to-one to partitions of the test topic; every value sent to a key is unique, so a
read proves which send it came from.  Outcomes follow Jepsen: `ok` happened, `fail` definitely did not
(the broker rejected it before writing), `info` unknown (timeout, lost connection): after an `info` the
worker's process id is retired and its clients rebuilt, so later ops never inherit a half-finished one.
The consumer keeps its own position per key across `assign` calls (librdkafka's assign() forgets
positions), so a retained partition continues where it stopped, as Kafka's Java consumer does.
"""

from __future__ import annotations

import itertools
import random
import threading
from dataclasses import dataclass

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Producer, TopicPartition

TOPIC = "jepsen-queue"
SEND_TIMEOUT_S = 15.0          # > message.timeout.ms, so a delivery report nearly always arrives
POLL_TIMEOUT_S = 0.5

# Delivery errors that prove the broker did not append the record; everything else is indeterminate.
DEFINITE_SEND_ERRORS = {
    getattr(KafkaError, name) for name in (
        "MSG_SIZE_TOO_LARGE", "_UNKNOWN_PARTITION", "_UNKNOWN_TOPIC", "_INVALID_ARG",
        "TOPIC_AUTHORIZATION_FAILED", "INVALID_REQUIRED_ACKS", "RECORD_LIST_TOO_LARGE")
    if hasattr(KafkaError, name)
}


@dataclass(frozen=True)
class Profile:
    name: str
    producer: dict
    consumer: dict


SAFE = Profile("safe",
               {"acks": "all", "enable.idempotence": True, "retries": 1000, "message.timeout.ms": 10000,
                "linger.ms": 0},
               {"isolation.level": "read_committed", "enable.auto.commit": False,
                "auto.offset.reset": "earliest"})
UNSAFE = Profile("unsafe",
                 {"acks": "1", "enable.idempotence": False, "message.timeout.ms": 10000, "linger.ms": 0},
                 {"isolation.level": "read_committed", "enable.auto.commit": False,
                  "auto.offset.reset": "earliest"})
PROFILES = {"safe": SAFE, "unsafe": UNSAFE}


class ValueSource:
    """Unique values per key, shared by all workers."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._next = itertools.count()

    def next(self) -> int:
        with self._lock:
            return next(self._next)


class QueueClient:
    """One worker's producer and consumer, bound to one process id for its lifetime."""

    def __init__(self, bootstrap: str, profile: Profile, process: int, run_tag: str, logger=None) -> None:
        self.process = process
        common = {"bootstrap.servers": bootstrap, "client.id": f"jl-{process}"}
        if logger is not None:
            common["logger"] = logger
        self.producer = Producer({**common, **profile.producer})
        self.consumer = Consumer({**common, **profile.consumer, "group.id": f"jl-{run_tag}-{process}",
                                  "fetch.wait.max.ms": 100, "enable.partition.eof": False})
        self.positions: dict[int, int] = {}   # key -> next offset to read

    def send(self, key: int, value: int) -> tuple[str, object, str | None]:
        outcome: dict = {}

        def delivered(err, msg):
            outcome["err"], outcome["offset"] = err, (msg.offset() if err is None else None)

        try:
            self.producer.produce(TOPIC, value=str(value).encode(), partition=key, on_delivery=delivered)
            self.producer.flush(SEND_TIMEOUT_S)
        except (KafkaException, BufferError) as exc:
            return "info", [(key, value)], f"produce: {exc}"
        if "err" not in outcome:
            return "info", [(key, value)], "timeout: no delivery report"
        err = outcome["err"]
        if err is None:
            return "ok", [(key, (outcome["offset"], value))], None
        kind = "fail" if err.code() in DEFINITE_SEND_ERRORS else "info"
        return kind, [(key, value)], f"{err.name()}: {err.str()}"

    def assign(self, keys: list[int], seek_to_beginning: bool = False) -> None:
        if seek_to_beginning:
            self.positions = {}
        self.positions = {k: self.positions.get(k, OFFSET_BEGINNING) for k in keys}
        self.consumer.assign([TopicPartition(TOPIC, k, offset) for k, offset in self.positions.items()])

    def poll(self) -> tuple[dict[int, list[tuple[int, int]]], str | None]:
        messages = self.consumer.consume(num_messages=500, timeout=POLL_TIMEOUT_S)
        reads: dict[int, list[tuple[int, int]]] = {}
        errors = []
        for msg in messages:
            if msg.error() is not None:
                errors.append(msg.error().name())
                continue
            key = msg.partition()
            reads.setdefault(key, []).append((msg.offset(), int(msg.value())))
            self.positions[key] = msg.offset() + 1
        return reads, (", ".join(sorted(set(errors))) or None)

    def close(self) -> None:
        try:
            self.producer.purge()
            self.producer.flush(0)
        except KafkaException:
            pass
        try:
            self.consumer.close()
        except (KafkaException, RuntimeError):
            pass


class Worker(threading.Thread):
    """Runs ops from its own seeded RNG at about `rate_per_worker` ops/s until told to stop."""

    def __init__(self, index: int, *, concurrency: int, keys: int, bootstrap: str, profile: Profile,
                 recorder, values: ValueSource, seed: int, rate_per_worker: float,
                 stop_event: threading.Event, run_tag: str, client_log=None) -> None:
        super().__init__(name=f"worker-{index}", daemon=True)
        self.index, self.concurrency, self.keys = index, concurrency, keys
        self.bootstrap, self.profile, self.recorder, self.values = bootstrap, profile, recorder, values
        self.rng = random.Random(f"{seed}/worker/{index}")
        self.mean_gap_s = 1.0 / rate_per_worker
        self.stop_event, self.run_tag, self.client_log = stop_event, run_tag, client_log
        self.process = index
        self.client: QueueClient | None = None
        self.error: BaseException | None = None

    # -- client lifecycle -------------------------------------------------------------------------

    def ensure_client(self) -> QueueClient:
        if self.client is None:
            self.client = QueueClient(self.bootstrap, self.profile, self.process, self.run_tag,
                                      self.client_log)
        return self.client

    def retire(self) -> None:
        """After an indeterminate op: fresh process id and fresh clients (Jepsen's rule)."""
        if self.client is not None:
            self.client.close()
            self.client = None
        self.process += self.concurrency

    # -- ops ---------------------------------------------------------------------------------------

    def do_send(self) -> None:
        key, value = self.rng.randrange(self.keys), self.values.next()
        self.recorder.record(self.process, "invoke", "send", [(key, value)])
        kind, result, error = self.ensure_client().send(key, value)
        self.recorder.record(self.process, kind, "send", result, error=error)
        if kind == "info":
            self.retire()

    def do_poll(self) -> None:
        client = self.ensure_client()
        self.recorder.record(self.process, "invoke", "poll", None)
        try:
            reads, error = client.poll()
        except (KafkaException, RuntimeError) as exc:
            self.recorder.record(self.process, "info", "poll", None, error=f"poll: {exc}")
            self.retire()
            return
        self.recorder.record(self.process, "ok", "poll", reads, error=error)

    def do_assign(self, keys: list[int], seek_to_beginning: bool = False) -> None:
        client = self.ensure_client()
        extra = {"seek_to_beginning": True} if seek_to_beginning else {}
        self.recorder.record(self.process, "invoke", "assign", keys, **extra)
        try:
            client.assign(keys, seek_to_beginning)
        except (KafkaException, RuntimeError) as exc:
            self.recorder.record(self.process, "info", "assign", keys, error=f"assign: {exc}", **extra)
            self.retire()
            return
        self.recorder.record(self.process, "ok", "assign", keys, **extra)

    def random_keys(self) -> list[int]:
        return sorted(self.rng.sample(range(self.keys), self.rng.randint(1, self.keys)))

    def run(self) -> None:
        try:
            while not self.stop_event.is_set():
                if self.client is None or self.rng.random() < 1 / 16:
                    self.do_assign(self.random_keys())
                elif self.rng.random() < 0.5:
                    self.do_send()
                else:
                    self.do_poll()
                self.stop_event.wait(self.rng.uniform(0, 2 * self.mean_gap_s))
        except BaseException as exc:
            self.error = exc

    # -- final reads ---------------------------------------------------------------------------------

    def final_reads(self, targets: dict[int, int], deadline: float, clock) -> bool:
        """Fresh process and client, all keys from the beginning, poll until every key's highest
        acknowledged offset has been read or the deadline passes.  True when caught up."""
        self.retire()
        self.do_assign(list(range(self.keys)), seek_to_beginning=True)
        while clock() < deadline:
            client = self.client
            if client is None:
                self.do_assign(list(range(self.keys)), seek_to_beginning=True)
                continue
            if all(client.positions.get(k, 0) > offset for k, offset in targets.items()):
                return True
            self.do_poll()
        return False

    def shutdown(self) -> None:
        if self.client is not None:
            self.client.close()
            self.client = None
