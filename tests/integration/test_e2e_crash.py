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
from acked_stream import AckedStream, check_acknowledged_exactly_once, read_partition
from client_adapters import create_topic

pytestmark = [pytest.mark.timeout(180)]

KILLS = 2
ACKS_BEFORE_KILL = 300
ACKS_AFTER_RESTART = 100


def test_acknowledged_writes_survive_kill_9_restarts(broker_factory):
    from confluent_kafka import Producer

    broker = broker_factory("crash")
    topic = "crash-test"
    create_topic(broker.bootstrap, topic, 1)
    stream = AckedStream(broker.bootstrap, topic)

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

    records, high_watermark = read_partition(broker.bootstrap, topic)
    check_acknowledged_exactly_once(stream, records, high_watermark)
    assert len(stream.acked) >= KILLS * (ACKS_BEFORE_KILL + ACKS_AFTER_RESTART)

    producer = Producer({"bootstrap.servers": broker.bootstrap, "acks": "all", "linger.ms": 0})
    offsets_after: list[int] = []
    for i in range(5):
        producer.produce(topic, value=f"after-{i}".encode(), partition=0,
                         on_delivery=lambda err, msg: offsets_after.append(-1 if err else msg.offset()))
    assert producer.flush(30) == 0
    assert offsets_after == list(range(high_watermark, high_watermark + 5))
