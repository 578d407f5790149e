"""Every broker -> controller request and result survives the trip through its typed proto message (as bytes),
and the client and server halves of cluster/transport/controller_grpc.py agree over a real gRPC server."""

from __future__ import annotations

import asyncio

import grpc
import pytest
from hypothesis import given
from hypothesis import strategies as st

from cluster.core.errors import ErrorCode, KafkaError
from cluster.transport.controller_grpc import (
    OPERATIONS,
    ControllerClient,
    ControllerReply,
    call_sync,
    controller_rpc_handlers,
    reply_from_pb,
    reply_to_pb,
    request_from_pb,
    request_to_pb,
)

# op -> (args as the broker sends them, the args the controller receives, a result)
CASES = {
    "register": (
        {"broker_id": 2, "incarnation_id": "6f1c1b9e-8d8a-4a3e-9a59-1f4f0e3c2b1a",
         "endpoints": [("PLAINTEXT", "localhost", 19092), ("INTERNAL", "10.0.0.2", 9093)], "rack": None},
        {"broker_id": 2, "incarnation_id": "6f1c1b9e-8d8a-4a3e-9a59-1f4f0e3c2b1a",
         "endpoints": [["PLAINTEXT", "localhost", 19092], ["INTERNAL", "10.0.0.2", 9093]], "rack": None},
        {"error_code": int(ErrorCode.NONE), "broker_epoch": 2**40 + 7},
    ),
    "heartbeat": (
        {"broker_id": 3, "broker_epoch": -7, "offset": -1},
        {"broker_id": 3, "broker_epoch": -7, "offset": -1, "shutdown": False},
        {"error_code": int(ErrorCode.STALE_BROKER_EPOCH), "fenced": True, "should_shutdown": False,
         "caught_up": True},
    ),
    "create_topics": (
        {"topics": [{"name": "orders", "num_partitions": -1, "replication_factor": -1},
                    {"name": "placed", "num_partitions": 2, "replication_factor": 2,
                     "assignments": {0: [1, 2], 1: [2, 3]}, "configs": {"cleanup.policy": "compact", "x": None}}],
         "validate_only": True},
        {"topics": [{"name": "orders", "num_partitions": -1, "replication_factor": -1, "assignments": None,
                     "configs": {}},
                    {"name": "placed", "num_partitions": 2, "replication_factor": 2,
                     "assignments": {0: [1, 2], 1: [2, 3]}, "configs": {"cleanup.policy": "compact", "x": None}}],
         "validate_only": True},
        [{"name": "orders", "error_code": 0, "error_message": None,
          "topic_id": "0c2a1d5e-1f43-4d0c-9b1e-7f6a2c3d4e5f", "num_partitions": 3, "replication_factor": 1},
         {"name": "bad", "error_code": int(ErrorCode.TOPIC_ALREADY_EXISTS), "error_message": "",
          "topic_id": None, "num_partitions": -1, "replication_factor": -1}],
    ),
    "delete_topics": (
        {"names": ["a", "b"]},
        {"names": ["a", "b"]},
        {"a": [0, None], "b": [int(ErrorCode.UNKNOWN_TOPIC_OR_PARTITION), "no such topic"]},
    ),
    "create_partitions": (
        {"name": "orders", "count": 5, "assignments": [[1, 2], [3, 1]]},
        {"name": "orders", "count": 5, "assignments": [[1, 2], [3, 1]]},
        [int(ErrorCode.INVALID_PARTITIONS), "cannot shrink"],
    ),
    "allocate_producer_ids": (
        {"broker_id": 1, "broker_epoch": 12},
        {"broker_id": 1, "broker_epoch": 12},
        [0, 2**50, 1000],
    ),
    "describe_quorum": (
        {},
        {},
        {"leader_id": 1, "leader_epoch": 4, "high_watermark": 99, "voters": [[1, 100, 5], [2, 99, -1]],
         "observers": [[7, 10, 3]]},
    ),
    "alter_partition": (
        {"broker_id": 1, "broker_epoch": 40, "topic_id": "6f1c1b9e-8d8a-4a3e-9a59-1f4f0e3c2b1a", "partition": 2,
         "leader_epoch": 3, "partition_epoch": 9, "new_isr": [(1, -1), (2, 41)]},
        {"broker_id": 1, "broker_epoch": 40, "topic_id": "6f1c1b9e-8d8a-4a3e-9a59-1f4f0e3c2b1a", "partition": 2,
         "leader_epoch": 3, "partition_epoch": 9, "new_isr": [[1, -1], [2, 41]]},
        {"error_code": 0, "leader_id": 1, "leader_epoch": 3, "partition_epoch": 10, "isr": [1, 2]},
    ),
    "alter_reassignments": (
        {"partitions": [("orders", 0, [2, 3, 1]), ("orders", 1, None), ("x", 2, [])]},
        {"partitions": [["orders", 0, [2, 3, 1]], ["orders", 1, None], ["x", 2, []]]},
        [["orders", 0, 0, None], ["orders", 1, int(ErrorCode.NO_REASSIGNMENT_IN_PROGRESS), "none"]],
    ),
    "list_reassignments": (
        {"partitions": None},
        {"partitions": None},
        [["orders", 0, [2, 3, 1], [3], [1]]],
    ),
    "elect_leaders": (
        {"election_type": 0, "partitions": [("orders", 0), ("orders", 1)]},
        {"election_type": 0, "partitions": [["orders", 0], ["orders", 1]]},
        [["orders", 0, 0, None], ["orders", 1, int(ErrorCode.ELECTION_NOT_NEEDED), "not needed"]],
    ),
}


def _through_bytes(message):
    return type(message).FromString(message.SerializeToString())


def test_every_operation_in_use_has_a_case():
    assert set(CASES) == set(OPERATIONS)


@pytest.mark.parametrize("op", sorted(CASES))
def test_request_round_trips_through_proto_bytes(op):
    sent, received, _result = CASES[op]
    message = _through_bytes(request_to_pb(op, sent, cluster_id="cid-1", source_id=0))
    assert type(message).__name__ == f"{OPERATIONS[op].rpc}Request"
    assert request_from_pb(op, message) == ("cid-1", 0, received)
    # what arrives converts back to the same message
    assert request_to_pb(op, received, cluster_id="cid-1", source_id=0) == message


@pytest.mark.parametrize("op", sorted(CASES))
def test_result_round_trips_through_proto_bytes(op):
    result = CASES[op][2]
    message = _through_bytes(reply_to_pb(op, ControllerReply(0, result=result)))
    assert type(message).__name__ == f"{OPERATIONS[op].rpc}Response"
    assert reply_from_pb(op, message) == ControllerReply(0, "", None, result)


@pytest.mark.parametrize("op", sorted(CASES))
def test_error_status_round_trips_and_carries_no_result(op):
    for reply in (ControllerReply(int(ErrorCode.NOT_CONTROLLER), "not the active controller", 3),
                  ControllerReply(int(ErrorCode.NOT_CONTROLLER), "no leader", None),
                  ControllerReply(int(ErrorCode.INCONSISTENT_CLUSTER_ID), "wrong cluster id", None)):
        assert reply_from_pb(op, _through_bytes(reply_to_pb(op, reply))) == reply


def test_a_tool_without_node_id_or_cluster_id_travels_as_minus_one_and_empty():
    message = _through_bytes(request_to_pb("describe_quorum", {}, cluster_id=None, source_id=None))
    assert message.header.source_id == -1
    assert request_from_pb("describe_quorum", message) == ("", None, {})


def test_create_partitions_keeps_null_assignments_apart_from_empty():
    for assignments in (None, []):
        args = {"name": "t", "count": 2, "assignments": assignments}
        message = _through_bytes(request_to_pb("create_partitions", args, cluster_id="c", source_id=1))
        assert request_from_pb("create_partitions", message)[2]["assignments"] == assignments


def test_reassignment_and_election_keep_null_lists_apart_from_empty():
    for op, key in (("list_reassignments", "partitions"), ("elect_leaders", "partitions")):
        base = {"election_type": 1} if op == "elect_leaders" else {}
        for value in (None, []):
            message = _through_bytes(request_to_pb(op, {**base, key: value}, cluster_id="c", source_id=1))
            assert request_from_pb(op, message)[2][key] == value


def test_unknown_operation_is_invalid_request():
    with pytest.raises(KafkaError) as caught:
        request_to_pb("alter_isr", {}, cluster_id="c", source_id=1)
    assert caught.value.error_code == ErrorCode.INVALID_REQUEST


@given(st.integers(-1, 2**31 - 1), st.integers(-(2**63), 2**63 - 1), st.integers(-1, 2**63 - 1), st.booleans())
def test_heartbeat_fields_round_trip(broker_id, broker_epoch, offset, shutdown):
    args = {"broker_id": broker_id, "broker_epoch": broker_epoch, "offset": offset, "shutdown": shutdown}
    message = _through_bytes(request_to_pb("heartbeat", args, cluster_id="c", source_id=broker_id))
    assert request_from_pb("heartbeat", message) == ("c", None if broker_id < 0 else broker_id, args)


# == client <-> server over a real gRPC server ======================================================================
async def _with_server(serve, body):
    server = grpc.aio.server()
    server.add_generic_rpc_handlers(controller_rpc_handlers(serve))
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


def test_typed_calls_reach_serve_with_header_and_return_its_result_or_error():
    seen = []

    async def serve(op, args, cluster_id, source_id, context):
        seen.append((op, args, cluster_id, source_id))
        if op == "delete_topics":
            raise _NotController(2)
        if op == "allocate_producer_ids":
            await context.abort(grpc.StatusCode.UNAVAILABLE, "dropped")
        return CASES[op][2]

    async def body(channel):
        client = ControllerClient(channel)
        ok = await client.call("heartbeat", CASES["heartbeat"][0], cluster_id="cid", source_id=3, timeout_s=2)
        moved = await client.call("delete_topics", {"names": ["a"]}, cluster_id="cid", source_id=3, timeout_s=2)
        with pytest.raises(grpc.aio.AioRpcError) as dropped:
            await client.call("allocate_producer_ids", CASES["allocate_producer_ids"][0], cluster_id="cid",
                              source_id=3, timeout_s=2)
        return ok, moved, dropped.value.code()

    ok, moved, dropped = asyncio.run(_with_server(serve, body))
    assert ok == ControllerReply(0, "", None, CASES["heartbeat"][2])
    assert moved == ControllerReply(int(ErrorCode.NOT_CONTROLLER), "not the active controller", 2, None)
    assert moved.as_dict()["leader_id"] == 2 and moved.as_dict()["result"] is None
    assert dropped == grpc.StatusCode.UNAVAILABLE
    assert seen[0] == ("heartbeat", CASES["heartbeat"][1], "cid", 3)


def test_blocking_client_gets_the_same_answers():
    """Tools that are not asyncio (bench/cluster.py) use call_sync over a blocking channel."""
    async def serve(op, args, cluster_id, source_id, context):
        if cluster_id != "cid":
            raise KafkaError(ErrorCode.INCONSISTENT_CLUSTER_ID, "wrong cluster id")
        return CASES[op][2]

    def blocking_calls(port):
        with grpc.insecure_channel(f"127.0.0.1:{port}") as blocking:
            return (call_sync(blocking, "describe_quorum", {}, cluster_id=None, source_id=None, timeout_s=2),
                    call_sync(blocking, "describe_quorum", {}, cluster_id="cid", source_id=None, timeout_s=2))

    async def scenario():
        server = grpc.aio.server()
        server.add_generic_rpc_handlers(controller_rpc_handlers(serve))
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        try:
            return await asyncio.get_running_loop().run_in_executor(None, blocking_calls, port)
        finally:
            await server.stop(0)

    stranger, ok = asyncio.run(scenario())
    assert stranger.error_code == ErrorCode.INCONSISTENT_CLUSTER_ID and stranger.error_message == "wrong cluster id"
    assert ok == ControllerReply(0, "", None, CASES["describe_quorum"][2])
