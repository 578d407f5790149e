"""A tiny stand-in for the quorum: decide with the controller, "commit" by replaying at the next offsets."""

from __future__ import annotations

import random
import uuid

from cluster.metadata import BrokerEndpoint, ControllerConfig, QuorumController


class Harness:
    """Owns a controller and the log offset; ``commit`` replays a result and returns its response."""

    def __init__(self, config: ControllerConfig | None = None) -> None:
        self.controller = QuorumController(config or ControllerConfig(), rng=random.Random(0))
        self.offset = 0  # offset of the last committed record
        self.log: list = []  # every committed record, in order

    @property
    def image(self):
        return self.controller.image

    def commit(self, result):
        for record in result.records:
            self.offset += 1
            self.log.append(record)
            self.controller.replay(record, self.offset)
        return result.response

    def register(self, broker_id: int, now_ms: int = 0, rack: str | None = None, incarnation: int | None = None):
        incarnation_id = uuid.UUID(int=incarnation if incarnation is not None else broker_id + 1)
        endpoints = [BrokerEndpoint("PLAINTEXT", f"host{broker_id}", 9092 + broker_id)]
        result = self.controller.register_broker(broker_id, incarnation_id, endpoints, rack, now_ms, self.offset + 1)
        return self.commit(result)

    def heartbeat(self, broker_id: int, now_ms: int, want_fence: bool = False, want_shutdown: bool = False,
                  offset: int | None = None):
        epoch = self.image.cluster.brokers[broker_id].broker_epoch
        result = self.controller.broker_heartbeat(broker_id, epoch, self.offset if offset is None else offset,
                                                  want_fence, want_shutdown, now_ms)
        return self.commit(result)

    def start_brokers(self, count: int, racks: list[str] | None = None, now_ms: int = 0) -> None:
        for broker_id in range(count):
            self.register(broker_id, now_ms, rack=racks[broker_id] if racks else None)
        for broker_id in range(count):
            response = self.heartbeat(broker_id, now_ms)
            assert not response.is_fenced
