"""The controller service answers each RPC with its typed result (cluster/metadata/controller_api.py), decided by
the ``QuorumController`` and committed before the answer; a node that is not the active controller refuses with
NOT_CONTROLLER naming the leader it knows.  Raft is replaced by a fake that commits every proposal at once."""

from __future__ import annotations

import asyncio
import random
import uuid
from types import SimpleNamespace

import pytest

from cluster.broker.controller_server import ControllerServer, NotControllerError
from cluster.core.errors import ErrorCode
from cluster.metadata import BrokerEndpoint, NewTopic
from cluster.metadata.controller_api import (
    AllocateProducerIdsRequest,
    ApiError,
    BrokerHeartbeatRequest,
    CreatePartitionsRequest,
    CreateTopicsRequest,
    DeleteTopicsRequest,
    ElectLeadersRequest,
    ListReassignmentsRequest,
    PartitionResult,
    RegisterBrokerRequest,
    RegisterBrokerResult,
    TopicError,
)
from cluster.metadata.records import decode_batch
from cluster.raft.state import Role
from cluster.transport.raft_grpc import FaultFilter

CONFIG = {"broker.session.timeout.ms": 9000, "num.partitions": 2, "default.replication.factor": 1,
          "unclean.leader.election.enable": False, "delete.topic.enable": True, "kraftpy.test.broken": [],
          "broker.heartbeat.interval.ms": 500}


class FakeRaft:
    """Commits (and so replays into the controller) every proposal at once, as one entry."""

    def __init__(self) -> None:
        self.role, self.leader_id = Role.LEADER, 1
        self.store = SimpleNamespace(log_end_offset=0)
        self.controller = None

    async def propose(self, payload: bytes, timeout_ms: int) -> int:
        offset = self.store.log_end_offset
        self.controller.replay_batch(decode_batch(payload), offset)
        self.store.log_end_offset += 1
        return offset


def server_with_fake_raft() -> ControllerServer:
    async def applied(end_offset: int, timeout_s: float) -> None:
        return None   # FakeRaft applies at once

    server = ControllerServer(SimpleNamespace(get=CONFIG.get), "cid", FaultFilter(None), random.Random(7), applied)
    server.driver = FakeRaft()
    server.driver.controller = server.controller
    return server


async def registered_broker(server: ControllerServer) -> int:
    registered = await server.register_broker(RegisterBrokerRequest(1, uuid.uuid4(),
                                                                    (BrokerEndpoint("PLAINTEXT", "h", 9092),)))
    await server.broker_heartbeat(BrokerHeartbeatRequest(1, registered.broker_epoch, registered.broker_epoch))
    return registered.broker_epoch


def test_each_rpc_answers_with_its_typed_result():
    async def scenario():
        server = server_with_fake_raft()
        assert await server.register_broker(RegisterBrokerRequest(1, uuid.uuid4(), ())) == \
            RegisterBrokerResult(ErrorCode.NONE, 0)
        heartbeat = await server.broker_heartbeat(BrokerHeartbeatRequest(1, 0, 0))
        assert (heartbeat.error_code, heartbeat.is_fenced) == (ErrorCode.NONE, False)
        created = await server.create_topics(CreateTopicsRequest((NewTopic("orders"), NewTopic("bad name!"))))
        assert [(r.name, r.error_code, r.num_partitions) for r in created] == \
            [("orders", ErrorCode.NONE, 2), ("bad name!", ErrorCode.INVALID_TOPIC_EXCEPTION, -1)]
        assert await server.create_partitions(CreatePartitionsRequest("orders", 3)) == ApiError(ErrorCode.NONE)
        block = await server.allocate_producer_ids(AllocateProducerIdsRequest(1, 0))
        assert (block.error_code, block.producer_id_start, block.producer_id_len > 0) == (ErrorCode.NONE, 0, True)
        elected = await server.elect_leaders(ElectLeadersRequest(0, (("orders", 0),)))
        assert elected == (PartitionResult("orders", 0, ErrorCode.ELECTION_NOT_NEEDED,
                                           "Leader election not needed for topic partition."),)
        assert await server.list_partition_reassignments(ListReassignmentsRequest()) == ()
        deleted = await server.delete_topics(DeleteTopicsRequest(("orders", "missing")))
        assert deleted[0] == TopicError("orders", ErrorCode.NONE, None)
        assert deleted[1].error_code == ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
        assert server.controller.image.topics.get_topic("orders") is None   # committed before the answer

    asyncio.run(scenario())


def test_a_node_that_is_not_the_active_controller_names_the_leader_it_knows():
    async def scenario():
        server = server_with_fake_raft()
        await registered_broker(server)
        server.driver.role, server.driver.leader_id = Role.FOLLOWER, 3
        with pytest.raises(NotControllerError) as refused:
            await server.create_topics(CreateTopicsRequest((NewTopic("orders"),)))
        return refused.value

    refused = asyncio.run(scenario())
    assert (refused.error_code, refused.leader_id) == (ErrorCode.NOT_CONTROLLER, 3)
