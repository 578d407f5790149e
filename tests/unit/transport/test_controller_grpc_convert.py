"""Every broker -> controller request and result survives the trip through its typed proto message (as bytes),
and the client and server halves of cluster/transport/controller_grpc.py agree over a real gRPC server."""

from __future__ import annotations

import asyncio
import uuid

import grpc
import pytest
from hypothesis import given
from hypothesis import strategies as st

from cluster.core.errors import ErrorCode, KafkaError
from cluster.metadata import (
    AlterPartitionResult,
    BrokerEndpoint,
    CreateTopicResult,
    HeartbeatResult,
    NewTopic,
)
from cluster.metadata.controller_api import (
    AllocateProducerIdsRequest,
    AlterPartitionRequest,
    AlterReassignmentsRequest,
    ApiError,
    BrokerHeartbeatRequest,
    CreatePartitionsRequest,
    CreateTopicsRequest,
    DeleteTopicsRequest,
    DescribeQuorumRequest,
    ElectLeadersRequest,
    IsrMember,
    ListReassignmentsRequest,
    PartitionReassignment,
    PartitionResult,
    ProducerIdsBlock,
    ReassignmentTarget,
    RegisterBrokerRequest,
    RegisterBrokerResult,
    TopicError,
)
from cluster.raft import QuorumInfo, ReplicaInfo
from cluster.transport.controller_grpc import (
    RPCS,
    ControllerClient,
    ControllerReply,
    call_sync,
    controller_rpc_handlers,
    reply_from_pb,
    reply_to_pb,
    request_from_pb,
    request_to_pb,
)

TOPIC_ID = uuid.UUID("6f1c1b9e-8d8a-4a3e-9a59-1f4f0e3c2b1a")

# method -> (a typed request, a typed result)
CASES = {
    "register_broker": (
        RegisterBrokerRequest(2, TOPIC_ID, (BrokerEndpoint("PLAINTEXT", "localhost", 19092),
                                            BrokerEndpoint("INTERNAL", "10.0.0.2", 9093)), None),
        RegisterBrokerResult(ErrorCode.NONE, 2**40 + 7),
    ),
    "broker_heartbeat": (
        BrokerHeartbeatRequest(3, -7, -1),
        HeartbeatResult(ErrorCode.STALE_BROKER_EPOCH, is_caught_up=True, is_fenced=True, should_shutdown=False),
    ),
    "create_topics": (
        CreateTopicsRequest((NewTopic("orders", -1, -1),
                             NewTopic("placed", 2, 2, {0: (1, 2), 1: (2, 3)}, {"cleanup.policy": "compact", "x": None})),
                            validate_only=True),
        (CreateTopicResult("orders", ErrorCode.NONE, None, uuid.UUID("0c2a1d5e-1f43-4d0c-9b1e-7f6a2c3d4e5f"), 3, 1),
         CreateTopicResult("bad", ErrorCode.TOPIC_ALREADY_EXISTS, "", None, -1, -1)),
    ),
    "delete_topics": (
        DeleteTopicsRequest(("a", "b")),
        (TopicError("a", ErrorCode.NONE, None), TopicError("b", ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, "no such topic")),
    ),
    "create_partitions": (
        CreatePartitionsRequest("orders", 5, ((1, 2), (3, 1))),
        ApiError(ErrorCode.INVALID_PARTITIONS, "cannot shrink"),
    ),
    "allocate_producer_ids": (
        AllocateProducerIdsRequest(1, 12),
        ProducerIdsBlock(ErrorCode.NONE, 2**50, 1000),
    ),
    "describe_quorum": (
        DescribeQuorumRequest(),
        QuorumInfo(1, 4, 99, (ReplicaInfo(1, 100, 5), ReplicaInfo(2, 99, -1)), (ReplicaInfo(7, 10, 3),)),
    ),
    "alter_partition": (
        AlterPartitionRequest(1, 40, TOPIC_ID, 2, 3, 9, (IsrMember(1, -1), IsrMember(2, 41))),
        AlterPartitionResult(ErrorCode.NONE, 1, 3, 10, (1, 2)),
    ),
    "alter_partition_reassignments": (
        AlterReassignmentsRequest((ReassignmentTarget("orders", 0, (2, 3, 1)), ReassignmentTarget("orders", 1, None),
                                   ReassignmentTarget("x", 2, ()))),
        (PartitionResult("orders", 0, ErrorCode.NONE, None),
         PartitionResult("orders", 1, ErrorCode.NO_REASSIGNMENT_IN_PROGRESS, "none")),
    ),
    "list_partition_reassignments": (
        ListReassignmentsRequest(None),
        (PartitionReassignment("orders", 0, (2, 3, 1), (3,), (1,)),),
    ),
    "elect_leaders": (
        ElectLeadersRequest(0, (("orders", 0), ("orders", 1))),
        (PartitionResult("orders", 0, ErrorCode.NONE, None),
         PartitionResult("orders", 1, ErrorCode.ELECTION_NOT_NEEDED, "not needed")),
    ),
}


def _through_bytes(message):
    return type(message).FromString(message.SerializeToString())


def test_every_operation_in_use_has_a_case():
    assert set(CASES) == set(RPCS)


@pytest.mark.parametrize("op", sorted(CASES))
def test_request_round_trips_through_proto_bytes(op):
    sent, _result = CASES[op]
    message = _through_bytes(request_to_pb(op, sent, cluster_id="cid-1", source_id=0))
    assert type(message).__name__ == f"{RPCS[op].rpc}Request"
    assert request_from_pb(op, message) == ("cid-1", 0, sent)
    # what arrives converts back to the same message
    assert request_to_pb(op, request_from_pb(op, message)[2], cluster_id="cid-1", source_id=0) == message


@pytest.mark.parametrize("op", sorted(CASES))
def test_result_round_trips_through_proto_bytes(op):
    result = CASES[op][1]
    message = _through_bytes(reply_to_pb(op, ControllerReply(0, result=result)))
    assert type(message).__name__ == f"{RPCS[op].rpc}Response"
    assert reply_from_pb(op, message) == ControllerReply(0, "", None, result)


@pytest.mark.parametrize("op", sorted(CASES))
def test_error_status_round_trips_and_carries_no_result(op):
    for reply in (ControllerReply(int(ErrorCode.NOT_CONTROLLER), "not the active controller", 3),
                  ControllerReply(int(ErrorCode.NOT_CONTROLLER), "no leader", None),
                  ControllerReply(int(ErrorCode.INCONSISTENT_CLUSTER_ID), "wrong cluster id", None)):
        assert reply_from_pb(op, _through_bytes(reply_to_pb(op, reply))) == reply


def test_a_tool_without_node_id_or_cluster_id_travels_as_minus_one_and_empty():
    message = _through_bytes(request_to_pb("describe_quorum", DescribeQuorumRequest(), cluster_id=None,
                                           source_id=None))
    assert message.header.source_id == -1
    assert request_from_pb("describe_quorum", message) == ("", None, DescribeQuorumRequest())


def test_create_partitions_keeps_null_assignments_apart_from_empty():
    for assignments in (None, ()):
        request = CreatePartitionsRequest("t", 2, assignments)
        message = _through_bytes(request_to_pb("create_partitions", request, cluster_id="c", source_id=1))
        assert request_from_pb("create_partitions", message)[2].assignments == assignments


def test_reassignment_and_election_keep_null_lists_apart_from_empty():
    for value in (None, ()):
        for op, request in (("list_partition_reassignments", ListReassignmentsRequest(value)),
                            ("elect_leaders", ElectLeadersRequest(1, value))):
            message = _through_bytes(request_to_pb(op, request, cluster_id="c", source_id=1))
            assert request_from_pb(op, message)[2].partitions == value


def test_unknown_operation_is_invalid_request():
    with pytest.raises(KafkaError) as caught:
        request_to_pb("alter_isr", DescribeQuorumRequest(), cluster_id="c", source_id=1)
    assert caught.value.error_code == ErrorCode.INVALID_REQUEST


@given(st.integers(-1, 2**31 - 1), st.integers(-(2**63), 2**63 - 1), st.integers(-1, 2**63 - 1), st.booleans())
def test_heartbeat_fields_round_trip(broker_id, broker_epoch, offset, shutdown):
    request = BrokerHeartbeatRequest(broker_id, broker_epoch, offset, shutdown)
    message = _through_bytes(request_to_pb("broker_heartbeat", request, cluster_id="c", source_id=broker_id))
    assert request_from_pb("broker_heartbeat", message) == ("c", None if broker_id < 0 else broker_id, request)


# == client <-> server over a real gRPC server ======================================================================
class _Service:
    """A controller service whose every method answers ``answer(method, request)``."""

    def __init__(self, answer) -> None:
        self._answer = answer

    def __getattr__(self, method: str):
        async def call(request):
            return await self._answer(method, request)
        return call


async def _with_server(service, admit, body):
    server = grpc.aio.server()
    server.add_generic_rpc_handlers(controller_rpc_handlers(service, admit))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            return await body(channel)
    finally:
        await server.stop(0)


class _NotController(KafkaError):
    def __init__(self, leader_id):
        super().__init__(ErrorCode.NOT_CONTROLLER, "not the active controller")
        self.leader_id = leader_id


def test_typed_calls_reach_the_service_with_header_and_return_its_result_or_error():
    seen, requests = [], []

    async def answer(method, request):
        requests.append((method, request))
        if method == "delete_topics":
            raise _NotController(2)
        return CASES[method][1]

    async def admit(method, cluster_id, source_id, context):
        seen.append((method, cluster_id, source_id))
        if method == "allocate_producer_ids":
            await context.abort(grpc.StatusCode.UNAVAILABLE, "dropped")

    async def body(channel):
        client = ControllerClient(channel)
        ok = await client.call("broker_heartbeat", CASES["broker_heartbeat"][0], cluster_id="cid", source_id=3,
                               timeout_s=2)
        moved = await client.call("delete_topics", DeleteTopicsRequest(("a",)), cluster_id="cid", source_id=3,
                                  timeout_s=2)
        with pytest.raises(grpc.aio.AioRpcError) as dropped:
            await client.call("allocate_producer_ids", CASES["allocate_producer_ids"][0], cluster_id="cid",
                              source_id=3, timeout_s=2)
        return ok, moved, dropped.value.code()

    ok, moved, dropped = asyncio.run(_with_server(_Service(answer), admit, body))
    assert ok == ControllerReply(0, "", None, CASES["broker_heartbeat"][1])
    assert moved == ControllerReply(int(ErrorCode.NOT_CONTROLLER), "not the active controller", 2, None)
    assert moved.as_dict()["leader_id"] == 2 and moved.as_dict()["result"] is None
    assert dropped == grpc.StatusCode.UNAVAILABLE
    assert seen[0] == ("broker_heartbeat", "cid", 3)
    assert requests[0] == ("broker_heartbeat", CASES["broker_heartbeat"][0])
    assert "allocate_producer_ids" not in dict(requests)   # refused before the service ran it


def test_blocking_client_gets_the_same_answers():
    """Tools that are not asyncio (bench/cluster.py) use call_sync over a blocking channel."""
    async def answer(method, request):
        return CASES[method][1]

    async def admit(method, cluster_id, source_id, context):
        if cluster_id != "cid":
            raise KafkaError(ErrorCode.INCONSISTENT_CLUSTER_ID, "wrong cluster id")

    def blocking_calls(port):
        with grpc.insecure_channel(f"127.0.0.1:{port}") as blocking:
            return (call_sync(blocking, "describe_quorum", DescribeQuorumRequest(), cluster_id=None, source_id=None,
                              timeout_s=2),
                    call_sync(blocking, "describe_quorum", DescribeQuorumRequest(), cluster_id="cid", source_id=None,
                              timeout_s=2))

    async def scenario():
        server = grpc.aio.server()
        server.add_generic_rpc_handlers(controller_rpc_handlers(_Service(answer), admit))
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        try:
            return await asyncio.get_running_loop().run_in_executor(None, blocking_calls, port)
        finally:
            await server.stop(0)

    stranger, ok = asyncio.run(scenario())
    assert stranger.error_code == ErrorCode.INCONSISTENT_CLUSTER_ID and stranger.error_message == "wrong cluster id"
    assert ok == ControllerReply(0, "", None, CASES["describe_quorum"][1])
