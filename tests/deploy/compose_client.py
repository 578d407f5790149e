"""A real Kafka client (confluent-kafka) run inside a network namespace by test_compose_topology.py.

``ip netns exec <ns>`` bind-mounts that namespace's hosts file, so the compose service names resolve only in
a process started that way, not in a thread of pytest: hence a script.  Each action prints one JSON object.

    compose_client.py metadata BOOTSTRAP
    compose_client.py create BOOTSTRAP TOPIC PARTITIONS REPLICATION_FACTOR
    compose_client.py produce BOOTSTRAP TOPIC COUNT PREFIX
    compose_client.py consume BOOTSTRAP TOPIC GROUP COUNT TIMEOUT_S
"""

from __future__ import annotations

import json
import sys
import time

from confluent_kafka import Consumer, KafkaException, Producer
from confluent_kafka.admin import AdminClient, NewTopic


def metadata(bootstrap: str) -> dict:
    try:
        result = AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=5)
    except KafkaException as exc:
        return {"error": str(exc)}
    return {"brokers": {str(b.id): f"{b.host}:{b.port}" for b in result.brokers.values()},
            "controller_id": result.controller_id,
            "topics": {name: {str(p.id): {"leader": p.leader, "replicas": list(p.replicas), "isrs": list(p.isrs)}
                              for p in topic.partitions.values()}
                       for name, topic in result.topics.items() if not name.startswith("__")}}


def create(bootstrap: str, topic: str, partitions: str, replication_factor: str) -> dict:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    future = admin.create_topics([NewTopic(topic, int(partitions), int(replication_factor))])[topic]
    try:
        future.result(30)
    except KafkaException as exc:
        return {"error": str(exc)}
    return {"created": topic}


def produce(bootstrap: str, topic: str, count: str, prefix: str) -> dict:
    errors: list[str] = []
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True,
                         "message.timeout.ms": 30000})
    for i in range(int(count)):
        producer.produce(topic, value=f"{prefix}-{i}".encode(),
                         on_delivery=lambda err, _msg: errors.append(str(err)) if err else None)
    remaining = producer.flush(40)
    return {"undelivered": remaining, "errors": errors[:5], "error_count": len(errors)}


def consume(bootstrap: str, topic: str, group: str, count: str, timeout_s: str) -> dict:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "auto.offset.reset": "earliest",
                         "enable.auto.commit": False})
    values: set[str] = set()
    deadline = time.monotonic() + float(timeout_s)
    try:
        consumer.subscribe([topic])
        while len(values) < int(count) and time.monotonic() < deadline:
            message = consumer.poll(0.2)
            if message is not None and not message.error():
                values.add(message.value().decode())
    finally:
        consumer.close()
    return {"values": sorted(values)}


ACTIONS = {"metadata": metadata, "create": create, "produce": produce, "consume": consume}

if __name__ == "__main__":
    print(json.dumps(ACTIONS[sys.argv[1]](*sys.argv[2:])), flush=True)
