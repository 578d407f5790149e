"""How fast a 10-member consumer group forms, and how fast it rebalances when one member leaves.

Issue 5 asks for these two figures because Kafka-compatible brokers have got them badly wrong (groups that
took 8-25 s to form, members that each owned every partition).  Each run starts a fresh broker process
(tests/helpers/broker_process.py) with a given ``group.initial.rebalance.delay.ms``, creates a topic of 20
partitions and runs 10 confluent-kafka (librdkafka) consumers of one group, each polling in its own thread
with the client's default settings (eager range assignor, heartbeat.interval.ms 3000).  It measures:

* formation: from the first ``subscribe()`` until all 10 members hold an assignment and every partition is
  owned by exactly one member;
* rebalance: from one member's ``close()`` (which sends LeaveGroup) until the other 9 again own every
  partition exactly once.  The others learn of the rebalance from their next heartbeat, so this is bounded
  below by about one heartbeat interval, on Kafka too.

Output: one JSON line per run, then a human line ("# ").  Slowness never fails; the exit status is non-zero
only when the group did not converge at all within ``--timeout-s`` (a correctness failure), a member
reported an error, or the broker died.

    .venv/bin/python bench/groups.py [--delays 3000,0] [--members 10] [--partitions 20] [--runs 1]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "helpers"))

from broker_process import BrokerProcess  # noqa: E402

POLL_TIMEOUT_S = 0.01
CHECK_INTERVAL_S = 0.005


class Member(threading.Thread):
    """One consumer polling in its own thread; its current assignment is updated by the rebalance callbacks."""

    def __init__(self, bootstrap: str, group: str, topic: str, index: int, heartbeat_interval_ms: int) -> None:
        super().__init__(name=f"member-{index}", daemon=True)
        from confluent_kafka import Consumer

        self.topic = topic
        self.consumer = Consumer({
            "bootstrap.servers": bootstrap, "group.id": group, "client.id": f"bench-member-{index}",
            "auto.offset.reset": "earliest", "enable.auto.commit": False,
            "heartbeat.interval.ms": heartbeat_interval_ms,
        })
        self.assignment: frozenset[int] = frozenset()
        self.errors: list[str] = []
        self.subscribed_at: float | None = None
        self.closed_at: float | None = None
        self._leave_event = threading.Event()

    def run(self) -> None:
        def on_assign(consumer, partitions):
            self.assignment = frozenset(p.partition for p in partitions)

        def on_revoke(consumer, partitions):
            self.assignment = frozenset()

        try:
            self.subscribed_at = time.monotonic()
            self.consumer.subscribe([self.topic], on_assign=on_assign, on_revoke=on_revoke)
            while not self._leave_event.is_set():
                message = self.consumer.poll(POLL_TIMEOUT_S)
                if message is not None and message.error() and not message.error().retriable():
                    self.errors.append(str(message.error()))
        except Exception as exc:  # noqa: BLE001 - reported by the main thread
            self.errors.append(repr(exc))
        finally:
            self.assignment = frozenset()
            self.consumer.close()
            self.closed_at = time.monotonic()

    def leave(self) -> None:
        self._leave_event.set()


def owned_exactly_once(members: list[Member], partitions: int) -> bool:
    """Every member holds partitions, and together they hold each partition once."""
    assignments = [m.assignment for m in members]
    if not all(assignments):
        return False
    return (sum(len(a) for a in assignments) == partitions
            and frozenset().union(*assignments) == frozenset(range(partitions)))


def wait_converged(members: list[Member], partitions: int, timeout_s: float, broker: BrokerProcess) -> float | None:
    """Monotonic time at which the members first own every partition exactly once, or None on timeout."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if owned_exactly_once(members, partitions):
            return time.monotonic()
        if not broker.is_alive():
            raise RuntimeError(f"broker died; log tail:\n{broker.log_tail()}")
        time.sleep(CHECK_INTERVAL_S)
    return None


def create_topic(bootstrap: str, topic: str, partitions: int) -> None:
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1)])[topic].result(30)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        metadata = admin.list_topics(topic, timeout=5).topics.get(topic)
        if metadata is not None and len(metadata.partitions) == partitions and all(
                p.leader >= 0 for p in metadata.partitions.values()):
            return
        time.sleep(0.05)
    raise RuntimeError(f"topic {topic} not ready")


def run_once(work_dir: Path, delay_ms: int, args: argparse.Namespace, run: int) -> dict:
    broker = BrokerProcess(work_dir / f"delay-{delay_ms}-run-{run}", name=f"bench-groups-{delay_ms}",
                           overrides={"group.initial.rebalance.delay.ms": str(delay_ms)})
    broker.start()
    members: list[Member] = []
    try:
        topic, group = f"bench-groups-{delay_ms}-{run}", f"bench-group-{delay_ms}-{run}"
        create_topic(broker.bootstrap, topic, args.partitions)
        members = [Member(broker.bootstrap, group, topic, i, args.heartbeat_interval_ms)
                   for i in range(args.members)]
        started = time.monotonic()  # just before the first subscribe()
        for member in members:
            member.start()
        stable_at = wait_converged(members, args.partitions, args.timeout_s, broker)
        result = {"bench": "groups", "run": run, "initial_rebalance_delay_ms": delay_ms, "members": args.members,
                  "partitions": args.partitions, "heartbeat_interval_ms": args.heartbeat_interval_ms,
                  "stable_s": None if stable_at is None else round(stable_at - started, 3),
                  "rebalance_after_leave_s": None, "leave_close_s": None}
        if stable_at is not None:
            time.sleep(args.settle_s)  # let the group sit Stable (heartbeats flowing) before the change
            leaving, staying = members[0], members[1:]
            left_at = time.monotonic()
            leaving.leave()
            rebalanced_at = wait_converged(staying, args.partitions, args.timeout_s, broker)
            leaving.join(30)
            if rebalanced_at is not None:
                result["rebalance_after_leave_s"] = round(rebalanced_at - left_at, 3)
            if leaving.closed_at is not None:
                result["leave_close_s"] = round(leaving.closed_at - left_at, 3)
        result["errors"] = sorted({e for m in members for e in m.errors})
        return result
    finally:
        for member in members:
            member.leave()
        for member in members:
            member.join(30)
        broker.stop()


def human_line(result: dict) -> str:
    def seconds(value):
        return "did NOT converge" if value is None else f"{value:.2f} s"
    return (f"# initial.rebalance.delay={result['initial_rebalance_delay_ms']} ms: {result['members']} members / "
            f"{result['partitions']} partitions stable after {seconds(result['stable_s'])}; one member left -> "
            f"{result['members'] - 1} members own all partitions again after "
            f"{seconds(result['rebalance_after_leave_s'])} (heartbeat.interval.ms {result['heartbeat_interval_ms']})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--delays", default="3000,0", help="group.initial.rebalance.delay.ms values, comma-separated")
    parser.add_argument("--members", type=int, default=10)
    parser.add_argument("--partitions", type=int, default=20)
    parser.add_argument("--runs", type=int, default=1, help="runs per delay")
    parser.add_argument("--heartbeat-interval-ms", type=int, default=3000, help="consumer setting (librdkafka default)")
    parser.add_argument("--settle-s", type=float, default=1.0, help="pause between forming and the leave")
    parser.add_argument("--timeout-s", type=float, default=120.0, help="give up (and fail) after this long")
    args = parser.parse_args(argv)
    failed = False
    with tempfile.TemporaryDirectory(prefix="kraftpy-bench-groups-") as tmp:
        for delay_ms in (int(d) for d in args.delays.split(",") if d.strip()):
            for run in range(args.runs):
                try:
                    result = run_once(Path(tmp), delay_ms, args, run)
                except Exception as exc:  # noqa: BLE001 - a dead broker is reported, not a traceback
                    print(f"# run aborted (delay {delay_ms} ms): {exc!r}", flush=True)
                    failed = True
                    continue
                print(json.dumps(result), flush=True)
                print(human_line(result), flush=True)
                if result["errors"]:
                    print(f"# member errors: {result['errors']}", flush=True)
                    failed = True
                failed |= result["stable_s"] is None or result["rebalance_after_leave_s"] is None
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
