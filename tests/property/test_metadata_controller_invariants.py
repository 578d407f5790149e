"""Random sequences of controller operations keep the metadata invariants.

After every committed result: each partition's leader is in its ISR or -1 and is an unfenced,
registered broker; the ISR is a non-empty subset of the replicas; replicas are distinct; leader and
partition epochs never go down; producer-id blocks never overlap; and the controller's image equals
a broker's image rebuilt from the same log (one replay path for both).
"""

from __future__ import annotations

import random
import uuid

from hypothesis import event, given, settings
from hypothesis import strategies as st

from cluster.core.errors import ErrorCode
from cluster.metadata import (
    NO_LEADER,
    BrokerEndpoint,
    ControllerConfig,
    MetadataDelta,
    MetadataImage,
    NewTopic,
    QuorumController,
)

BROKERS = 5
SESSION_MS = 9000

# Heartbeats mostly healthy (no fence/shutdown wish, caught up) so that brokers stay usable and
# topics get created; the rarer ops fence, shut down, re-register and expire sessions.
healthy_heartbeat = st.tuples(st.just("heartbeat"), st.integers(0, BROKERS - 1), st.just(False), st.just(False),
                              st.just(0))
ops = st.one_of(
    healthy_heartbeat, healthy_heartbeat, healthy_heartbeat,
    st.tuples(st.just("register"), st.integers(0, BROKERS - 1), st.integers(0, 3)),
    st.tuples(st.just("heartbeat"), st.integers(0, BROKERS - 1), st.booleans(), st.booleans(), st.integers(-2, 0)),
    st.tuples(st.just("create"), st.integers(0, 4), st.integers(1, 4), st.integers(1, 3)),
    st.tuples(st.just("create"), st.integers(0, 4), st.integers(1, 4), st.integers(1, 3)),
    st.tuples(st.just("alter_isr"), st.integers(0, 10_000), st.booleans()),
    st.tuples(st.just("advance"), st.integers(0, 2 * SESSION_MS)),
    st.tuples(st.just("create"), st.integers(0, 4), st.integers(1, 4), st.integers(1, 3)),
    st.tuples(st.just("delete"), st.integers(0, 4)),
    st.tuples(st.just("grow"), st.integers(0, 4), st.integers(1, 3)),
    st.tuples(st.just("alter_isr"), st.integers(0, 10_000), st.booleans()),
    st.tuples(st.just("pids"), st.integers(0, BROKERS - 1)),
    st.tuples(st.just("reassign"), st.integers(0, 10_000), st.lists(st.integers(0, BROKERS - 1), min_size=1,
                                                                     max_size=3, unique=True)),
    st.tuples(st.just("reassign"), st.integers(0, 10_000), st.none()),
    st.tuples(st.just("elect"), st.integers(0, 10_000), st.integers(0, 1)),
    st.tuples(st.just("rebalance"), st.integers(0, 100)),
)


class Model:
    def __init__(self, seed: int) -> None:
        self.controller = QuorumController(ControllerConfig(default_replication_factor=2), rng=random.Random(seed))
        self.rng = random.Random(seed)
        self.now_ms = 0
        self.offset = 0
        self.log: list = []
        self.max_epochs: dict = {}
        self.pid_blocks: list[tuple[int, int]] = []

    @property
    def image(self):
        return self.controller.image

    def commit(self, result):
        for record in result.records:
            self.offset += 1
            self.log.append(record)
            self.controller.replay(record, self.offset)
        self.check()
        return result.response

    def run(self, op) -> None:
        getattr(self, "op_" + op[0])(*op[1:])

    def op_register(self, broker, incarnation):
        result = self.controller.register_broker(broker, uuid.UUID(int=broker * 10 + incarnation + 1),
                                                 [BrokerEndpoint("PLAINTEXT", "h", 9092)], None, self.now_ms,
                                                 self.offset + 1)
        self.commit(result)

    def op_heartbeat(self, broker, want_fence, want_shutdown, lag):
        reg = self.image.cluster.broker(broker)
        if reg is None:
            return
        self.commit(self.controller.broker_heartbeat(broker, reg.broker_epoch, self.offset + lag, want_fence,
                                                     want_shutdown, self.now_ms))

    def op_advance(self, ms):
        self.now_ms += ms
        self.commit(self.controller.tick(self.now_ms))

    def op_create(self, name, partitions, rf):
        self.commit(self.controller.create_topics([NewTopic(f"t{name}", partitions, rf)]))

    def op_delete(self, name):
        self.commit(self.controller.delete_topics([f"t{name}"]))

    def op_grow(self, name, more):
        topic = self.image.topics.by_name.get(f"t{name}")
        if topic is not None:
            self.commit(self.controller.create_partitions(topic.name, len(topic.partitions) + more))

    def op_alter_isr(self, pick, stale):
        parts = [(t, p, r) for t in self.image.topics.by_id.values() for p, r in sorted(t.partitions.items())
                 if r.leader != NO_LEADER]
        if not parts:
            return
        topic, index, reg = parts[pick % len(parts)]
        others = [b for b in reg.replicas if b != reg.leader]
        new_isr = [reg.leader] + self.rng.sample(others, self.rng.randint(0, len(others)))
        leader_epoch = reg.leader_epoch - (1 if stale else 0)
        broker_epoch = self.image.cluster.brokers[reg.leader].broker_epoch
        response = self.commit(self.controller.alter_partition(reg.leader, broker_epoch, topic.topic_id, index,
                                                               leader_epoch, reg.partition_epoch, new_isr))
        if stale and leader_epoch >= 0:
            assert response.error_code == ErrorCode.FENCED_LEADER_EPOCH

    def op_pids(self, broker):
        reg = self.image.cluster.broker(broker)
        if reg is None:
            return
        error, start, length = self.commit(self.controller.allocate_producer_ids(broker, reg.broker_epoch))
        if error == ErrorCode.NONE:
            assert all(start >= s + n for s, n in self.pid_blocks)
            self.pid_blocks.append((start, length))

    def _pick_partition(self, pick):
        parts = [(t, p) for t in self.image.topics.by_id.values() for p in sorted(t.partitions)]
        return None if not parts else parts[pick % len(parts)]

    def op_reassign(self, pick, target):
        chosen = self._pick_partition(pick)
        if chosen is not None:
            (topic, index) = chosen
            response = self.commit(self.controller.alter_partition_reassignments([(topic.name, index, target)]))
            event(f"reassign {'cancel' if target is None else 'start'}: {response[(topic.name, index)][0].name}")

    def op_elect(self, pick, election_type):
        chosen = self._pick_partition(pick)
        if chosen is not None:
            topic, index = chosen
            response = self.commit(self.controller.elect_leaders(election_type, [(topic.name, index)]))
            event(f"elect {election_type}: {response[(topic.name, index)][0].name}")

    def op_rebalance(self, percentage):
        self.commit(self.controller.rebalance_leaders(percentage))

    def check(self) -> None:
        image = self.image
        image.check_invariants()
        for topic in image.topics.by_id.values():
            for index, reg in topic.partitions.items():
                assert len(set(reg.replicas)) == len(reg.replicas)
                assert reg.isr and set(reg.isr) <= set(reg.replicas)
                # a reassignment never lingers once it could complete (every change tries to complete it)
                assert not (reg.is_reassigning() and set(reg.adding_replicas) <= set(reg.isr)
                            and set(reg.isr) - set(reg.removing_replicas)), reg
                if reg.leader != NO_LEADER:
                    assert reg.leader in reg.isr
                    broker = image.cluster.broker(reg.leader)
                    assert broker is not None and broker.is_active, (reg, broker)
                key = (topic.topic_id, index)
                last = self.max_epochs.get(key, (-1, -1))
                assert reg.leader_epoch >= last[0] and reg.partition_epoch >= last[1]
                self.max_epochs[key] = (reg.leader_epoch, reg.partition_epoch)


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 2**32), st.lists(ops, min_size=5, max_size=60))
def test_random_operations_keep_invariants(seed, operations):
    model = Model(seed)
    for broker in range(4):
        model.op_register(broker, 0)
        model.op_heartbeat(broker, False, False, 0)
    model.op_create(0, 4, 3)
    for op in operations:
        model.run(op)
    event(f"partitions at end: {min(model.image.topics.partition_count(), 5)}+")
    event(f"partition change records: {min(sum(type(r).__name__ == 'PartitionChangeRecord' for r in model.log), 5)}+")
    # A broker replaying the same log, in one delta, reaches the controller's image.
    delta = MetadataDelta(MetadataImage.EMPTY)
    for offset, record in enumerate(model.log, start=1):
        delta.replay(record, offset)
    assert delta.apply() == model.image
