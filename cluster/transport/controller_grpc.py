"""gRPC transport of the broker -> controller calls: proto <-> Python conversion, the client, the server handlers.

Why it exists: the controller side (cluster/broker/cluster_mode.py) thinks in operations -- an op name such as
``"heartbeat"`` with a dict of arguments, answered by a plain Python result -- while the wire carries the typed
messages of proto/cluster/v1/controller.proto, one RPC per operation.  This is the one place that converts
between the two, so neither the broker nor the tests touch protobuf.  The Python shapes, per op:

=====================  ==========================================================  ==================================
op                     args                                                        result
=====================  ==========================================================  ==================================
register               broker_id, incarnation_id (str), endpoints [[name, host,     {error_code, broker_epoch}
                       port]], rack (str | None)
heartbeat              broker_id, broker_epoch, offset, shutdown (bool)             {error_code, fenced,
                                                                                    should_shutdown, caught_up}
create_topics          topics [{name, num_partitions, replication_factor,           [{name, error_code, error_message,
                       assignments {partition: [ids]} | None, configs {k: v}}],     topic_id (str | None),
                       validate_only                                                num_partitions, replication_factor}]
delete_topics          names [str]                                                  {name: [error_code, message]}
create_partitions      name, count, assignments [[ids]] | None                      [error_code, message]
allocate_producer_ids  broker_id, broker_epoch                                      [error_code, start, length]
alter_partition        broker_id, broker_epoch, topic_id (str), partition,          {error_code, leader_id,
                       leader_epoch, partition_epoch, new_isr [[id, epoch]]          leader_epoch, partition_epoch,
                                                                                    isr [ids]}
describe_quorum        {}                                                           {leader_id, leader_epoch,
                                                                                    high_watermark, voters
                                                                                    [[id, leo, last_fetch_ms]],
                                                                                    observers [...]}
alter_reassignments    partitions [[topic, partition, [ids] | None (cancel)]]       [[topic, partition, error_code,
                                                                                    message]]
list_reassignments     partitions [[topic, partition]] | None (all)                 [[topic, partition, replicas,
                                                                                    adding, removing]]
elect_leaders          election_type (0 preferred, 1 unclean), partitions           [[topic, partition, error_code,
                       [[topic, partition]] | None (all)                            message]]
=====================  ==========================================================  ==================================

Every reply also carries a call status (``ControllerReply``): error_code 0 when the operation ran, else why it
did not (NOT_CONTROLLER with the leader this node knows, INCONSISTENT_CLUSTER_ID, REQUEST_TIMED_OUT, ...).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import grpc

from cluster.core.errors import ErrorCode, KafkaError
from cluster.transport._generated.cluster.v1 import controller_pb2 as pb

SERVICE = "cluster.v1.ControllerService"
MIN_DEADLINE_S = 0.1   # a call always gets this long, even when the caller's own deadline is nearly spent
_NO_ID = -1            # "no node" / "no leader" on the wire, as in Kafka


@dataclass(frozen=True)
class ControllerReply:
    """The call status plus, when ``error_code`` is 0, the operation's result."""
    error_code: int
    error_message: str = ""
    leader_id: int | None = None   # with NOT_CONTROLLER: the active controller the callee knows
    result: Any = None

    def as_dict(self) -> dict:
        """The reply as the old JSON body (tests and tools read ``error_code``, ``message``, ``result``)."""
        return {"error_code": self.error_code, "message": self.error_message, "leader_id": self.leader_id,
                "result": self.result}


def _id_to_pb(node_id: int | None) -> int:
    return _NO_ID if node_id is None else node_id


def _id_from_pb(node_id: int) -> int | None:
    return None if node_id < 0 else node_id


def _optional(message, field: str) -> str | None:
    return getattr(message, field) if message.HasField(field) else None


# == requests: args dict <-> proto ===================================================================================
def _register_to_pb(args: dict) -> dict:
    return {"broker_id": args["broker_id"], "incarnation_id": args["incarnation_id"],
            "endpoints": [pb.BrokerEndpoint(listener_name=name, host=host, port=port)
                          for name, host, port in args["endpoints"]],
            "rack": args.get("rack")}


def _register_from_pb(m: pb.RegisterBrokerRequest) -> dict:
    return {"broker_id": m.broker_id, "incarnation_id": m.incarnation_id,
            "endpoints": [[e.listener_name, e.host, e.port] for e in m.endpoints], "rack": _optional(m, "rack")}


def _heartbeat_to_pb(args: dict) -> dict:
    return {"broker_id": args["broker_id"], "broker_epoch": args["broker_epoch"],
            "current_metadata_offset": args["offset"], "want_shutdown": bool(args.get("shutdown"))}


def _heartbeat_from_pb(m: pb.BrokerHeartbeatRequest) -> dict:
    return {"broker_id": m.broker_id, "broker_epoch": m.broker_epoch, "offset": m.current_metadata_offset,
            "shutdown": m.want_shutdown}


def _new_topic_to_pb(topic: dict) -> pb.CreatableTopic:
    assignments = topic.get("assignments") or {}
    return pb.CreatableTopic(
        name=topic["name"], num_partitions=topic["num_partitions"], replication_factor=topic["replication_factor"],
        assignments=[pb.PartitionAssignment(partition_index=int(index), broker_ids=list(ids))
                     for index, ids in assignments.items()],
        configs=[pb.TopicConfig(name=name, value=value) for name, value in (topic.get("configs") or {}).items()])


def _new_topic_from_pb(t: pb.CreatableTopic) -> dict:
    return {"name": t.name, "num_partitions": t.num_partitions, "replication_factor": t.replication_factor,
            "assignments": {a.partition_index: list(a.broker_ids) for a in t.assignments} or None,
            "configs": {c.name: _optional(c, "value") for c in t.configs}}


def _create_topics_to_pb(args: dict) -> dict:
    return {"topics": [_new_topic_to_pb(t) for t in args["topics"]],
            "validate_only": bool(args.get("validate_only"))}


def _create_topics_from_pb(m: pb.CreateTopicsRequest) -> dict:
    return {"topics": [_new_topic_from_pb(t) for t in m.topics], "validate_only": m.validate_only}


def _create_partitions_to_pb(args: dict) -> dict:
    fields = {"name": args["name"], "count": args["count"]}
    if args.get("assignments") is not None:   # absent (Kafka's null) differs from an empty list
        fields["assignments"] = pb.NewPartitionAssignments(
            partitions=[pb.ReplicaList(broker_ids=list(ids)) for ids in args["assignments"]])
    return fields


def _create_partitions_from_pb(m: pb.CreatePartitionsRequest) -> dict:
    assignments = [list(r.broker_ids) for r in m.assignments.partitions] if m.HasField("assignments") else None
    return {"name": m.name, "count": m.count, "assignments": assignments}


def _producer_ids_to_pb(args: dict) -> dict:
    return {"broker_id": args["broker_id"], "broker_epoch": args["broker_epoch"]}


def _producer_ids_from_pb(m: pb.AllocateProducerIdsRequest) -> dict:
    return {"broker_id": m.broker_id, "broker_epoch": m.broker_epoch}


# == results: Python result <-> proto ================================================================================
def _register_result_to_pb(result: dict) -> dict:
    return {"error_code": result["error_code"], "broker_epoch": result["broker_epoch"]}


def _register_result_from_pb(m: pb.RegisterBrokerResponse) -> dict:
    return {"error_code": m.error_code, "broker_epoch": m.broker_epoch}


def _heartbeat_result_to_pb(result: dict) -> dict:
    return {"error_code": result["error_code"], "is_fenced": result["fenced"],
            "should_shutdown": result["should_shutdown"], "is_caught_up": result["caught_up"]}


def _heartbeat_result_from_pb(m: pb.BrokerHeartbeatResponse) -> dict:
    return {"error_code": m.error_code, "fenced": m.is_fenced, "should_shutdown": m.should_shutdown,
            "caught_up": m.is_caught_up}


def _create_topics_result_to_pb(result: list) -> dict:
    return {"topics": [pb.CreatableTopicResult(
        name=r["name"], error_code=r["error_code"], error_message=r["error_message"], topic_id=r["topic_id"],
        num_partitions=r["num_partitions"], replication_factor=r["replication_factor"]) for r in result]}


def _create_topics_result_from_pb(m: pb.CreateTopicsResponse) -> list:
    return [{"name": r.name, "error_code": r.error_code, "error_message": _optional(r, "error_message"),
             "topic_id": _optional(r, "topic_id"), "num_partitions": r.num_partitions,
             "replication_factor": r.replication_factor} for r in m.topics]


def _delete_topics_result_to_pb(result: dict) -> dict:
    return {"topics": [pb.DeletableTopicResult(name=name, error_code=int(code), error_message=message)
                       for name, (code, message) in result.items()]}


def _delete_topics_result_from_pb(m: pb.DeleteTopicsResponse) -> dict:
    return {t.name: [t.error_code, _optional(t, "error_message")] for t in m.topics}


def _create_partitions_result_to_pb(result) -> dict:
    code, message = result
    return {"error_code": int(code), "error_message": message}


def _create_partitions_result_from_pb(m: pb.CreatePartitionsResponse) -> list:
    return [m.error_code, _optional(m, "error_message")]


def _producer_ids_result_to_pb(result) -> dict:
    code, start, length = result
    return {"error_code": int(code), "producer_id_start": start, "producer_id_len": length}


def _producer_ids_result_from_pb(m: pb.AllocateProducerIdsResponse) -> list:
    return [m.error_code, m.producer_id_start, m.producer_id_len]


def _replicas_to_pb(replicas) -> list:
    return [pb.ReplicaState(replica_id=r, log_end_offset=leo, last_fetch_ms=_id_to_pb(ms)) for r, leo, ms in replicas]


def _replicas_from_pb(replicas) -> list:
    return [[r.replica_id, r.log_end_offset, r.last_fetch_ms] for r in replicas]


def _quorum_result_to_pb(result: dict) -> dict:
    return {"leader_id": _id_to_pb(result["leader_id"]), "leader_epoch": result["leader_epoch"],
            "high_watermark": result["high_watermark"], "voters": _replicas_to_pb(result["voters"]),
            "observers": _replicas_to_pb(result["observers"])}


def _quorum_result_from_pb(m: pb.DescribeQuorumResponse) -> dict:
    return {"leader_id": _id_from_pb(m.leader_id), "leader_epoch": m.leader_epoch,
            "high_watermark": m.high_watermark, "voters": _replicas_from_pb(m.voters),
            "observers": _replicas_from_pb(m.observers)}


def _alter_partition_to_pb(args: dict) -> dict:
    return {"broker_id": args["broker_id"], "broker_epoch": args["broker_epoch"], "topic_id": args["topic_id"],
            "partition": args["partition"], "leader_epoch": args["leader_epoch"],
            "partition_epoch": args["partition_epoch"],
            "new_isr": [pb.IsrMember(broker_id=b, broker_epoch=e) for b, e in args["new_isr"]]}


def _alter_partition_from_pb(m: pb.AlterPartitionRequest) -> dict:
    return {"broker_id": m.broker_id, "broker_epoch": m.broker_epoch, "topic_id": m.topic_id,
            "partition": m.partition, "leader_epoch": m.leader_epoch, "partition_epoch": m.partition_epoch,
            "new_isr": [[member.broker_id, member.broker_epoch] for member in m.new_isr]}


def _alter_partition_result_to_pb(result: dict) -> dict:
    return {"error_code": int(result["error_code"]), "leader_id": result["leader_id"],
            "leader_epoch": result["leader_epoch"], "partition_epoch": result["partition_epoch"],
            "isr": list(result["isr"])}


def _alter_partition_result_from_pb(m: pb.AlterPartitionResponse) -> dict:
    return {"error_code": m.error_code, "leader_id": m.leader_id, "leader_epoch": m.leader_epoch,
            "partition_epoch": m.partition_epoch, "isr": list(m.isr)}


def _partition_refs_to_pb(partitions) -> dict:
    if partitions is None:
        return {"all": True}
    return {"all": False, "partitions": [pb.TopicPartitionRef(topic=t, partition=p) for t, p in partitions]}


def _partition_refs_from_pb(m) -> list | None:
    return None if m.all else [[r.topic, r.partition] for r in m.partitions]


def _reassignment_target_to_pb(topic: str, partition: int, replicas) -> pb.ReassignmentTarget:
    target = pb.ReassignmentTarget(topic=topic, partition=partition)
    if replicas is not None:   # unset means cancel, unlike an (invalid) empty list
        target.replicas.CopyFrom(pb.ReplicaList(broker_ids=list(replicas)))
    return target


def _alter_reassignments_from_pb(m: pb.AlterReassignmentsRequest) -> dict:
    return {"partitions": [[t.topic, t.partition, list(t.replicas.broker_ids) if t.HasField("replicas") else None]
                           for t in m.partitions]}


def _partition_results_to_pb(result: list) -> dict:
    return {"partitions": [pb.PartitionResult(topic=t, partition=p, error_code=int(code), error_message=message)
                           for t, p, code, message in result]}


def _partition_results_from_pb(m) -> list:
    return [[r.topic, r.partition, r.error_code, _optional(r, "error_message")] for r in m.partitions]


def _list_reassignments_result_to_pb(result: list) -> dict:
    return {"partitions": [pb.OngoingReassignment(topic=t, partition=p, replicas=list(replicas),
                                                  adding_replicas=list(adding), removing_replicas=list(removing))
                           for t, p, replicas, adding, removing in result]}


def _list_reassignments_result_from_pb(m: pb.ListReassignmentsResponse) -> list:
    return [[r.topic, r.partition, list(r.replicas), list(r.adding_replicas), list(r.removing_replicas)]
            for r in m.partitions]


def _elect_leaders_to_pb(args: dict) -> dict:
    return {"election_type": args["election_type"], **_partition_refs_to_pb(args.get("partitions"))}


def _elect_leaders_from_pb(m: pb.ElectLeadersRequest) -> dict:
    return {"election_type": m.election_type, "partitions": _partition_refs_from_pb(m)}


# == the operation table =============================================================================================
@dataclass(frozen=True)
class _Operation:
    rpc: str                     # method name in controller.proto
    request: type                # request message class
    response: type               # response message class
    args_to_pb: Callable[[dict], dict]
    args_from_pb: Callable[[Any], dict]
    result_to_pb: Callable[[Any], dict]
    result_from_pb: Callable[[Any], Any]


OPERATIONS: dict[str, _Operation] = {
    "register": _Operation("RegisterBroker", pb.RegisterBrokerRequest, pb.RegisterBrokerResponse,
                           _register_to_pb, _register_from_pb, _register_result_to_pb, _register_result_from_pb),
    "heartbeat": _Operation("BrokerHeartbeat", pb.BrokerHeartbeatRequest, pb.BrokerHeartbeatResponse,
                            _heartbeat_to_pb, _heartbeat_from_pb, _heartbeat_result_to_pb, _heartbeat_result_from_pb),
    "create_topics": _Operation("CreateTopics", pb.CreateTopicsRequest, pb.CreateTopicsResponse,
                                _create_topics_to_pb, _create_topics_from_pb, _create_topics_result_to_pb,
                                _create_topics_result_from_pb),
    "delete_topics": _Operation("DeleteTopics", pb.DeleteTopicsRequest, pb.DeleteTopicsResponse,
                                lambda args: {"names": list(args["names"])}, lambda m: {"names": list(m.names)},
                                _delete_topics_result_to_pb, _delete_topics_result_from_pb),
    "create_partitions": _Operation("CreatePartitions", pb.CreatePartitionsRequest, pb.CreatePartitionsResponse,
                                    _create_partitions_to_pb, _create_partitions_from_pb,
                                    _create_partitions_result_to_pb, _create_partitions_result_from_pb),
    "allocate_producer_ids": _Operation("AllocateProducerIds", pb.AllocateProducerIdsRequest,
                                        pb.AllocateProducerIdsResponse, _producer_ids_to_pb, _producer_ids_from_pb,
                                        _producer_ids_result_to_pb, _producer_ids_result_from_pb),
    "alter_partition": _Operation("AlterPartition", pb.AlterPartitionRequest, pb.AlterPartitionResponse,
                                  _alter_partition_to_pb, _alter_partition_from_pb, _alter_partition_result_to_pb,
                                  _alter_partition_result_from_pb),
    "describe_quorum": _Operation("DescribeQuorum", pb.DescribeQuorumRequest, pb.DescribeQuorumResponse,
                                  lambda args: {}, lambda m: {}, _quorum_result_to_pb, _quorum_result_from_pb),
    "alter_reassignments": _Operation(
        "AlterReassignments", pb.AlterReassignmentsRequest, pb.AlterReassignmentsResponse,
        lambda args: {"partitions": [_reassignment_target_to_pb(t, p, r) for t, p, r in args["partitions"]]},
        _alter_reassignments_from_pb, _partition_results_to_pb, _partition_results_from_pb),
    "list_reassignments": _Operation(
        "ListReassignments", pb.ListReassignmentsRequest, pb.ListReassignmentsResponse,
        lambda args: _partition_refs_to_pb(args.get("partitions")),
        lambda m: {"partitions": _partition_refs_from_pb(m)},
        _list_reassignments_result_to_pb, _list_reassignments_result_from_pb),
    "elect_leaders": _Operation("ElectLeaders", pb.ElectLeadersRequest, pb.ElectLeadersResponse,
                                _elect_leaders_to_pb, _elect_leaders_from_pb, _partition_results_to_pb,
                                _partition_results_from_pb),
}


def _operation(op: str) -> _Operation:
    try:
        return OPERATIONS[op]
    except KeyError:
        raise KafkaError(ErrorCode.INVALID_REQUEST, f"unknown controller operation {op!r}") from None


def request_to_pb(op: str, args: dict, *, cluster_id: str | None, source_id: int | None):
    """The typed request message for ``op`` with ``args``, from node ``source_id`` (None: not a node)."""
    operation = _operation(op)
    header = pb.CallHeader(cluster_id=cluster_id or "", source_id=_id_to_pb(source_id))
    return operation.request(header=header, **operation.args_to_pb(args))


def request_from_pb(op: str, message) -> tuple[str, int | None, dict]:
    """(cluster_id, source_id, args) of a typed request for ``op``."""
    header = message.header
    return header.cluster_id, _id_from_pb(header.source_id), _operation(op).args_from_pb(message)


def reply_to_pb(op: str, reply: ControllerReply):
    """The typed response for ``op``: the status, and the result only when the call succeeded."""
    operation = _operation(op)
    status = pb.CallStatus(error_code=int(reply.error_code), error_message=reply.error_message or "",
                           leader_id=_id_to_pb(reply.leader_id))
    if reply.error_code != ErrorCode.NONE:
        return operation.response(status=status)
    return operation.response(status=status, **operation.result_to_pb(reply.result))


def reply_from_pb(op: str, message) -> ControllerReply:
    status = message.status
    result = _operation(op).result_from_pb(message) if status.error_code == ErrorCode.NONE else None
    return ControllerReply(status.error_code, status.error_message, _id_from_pb(status.leader_id), result)


# == client ==========================================================================================================
class ControllerClient:
    """Calls one node's controller service over ``channel`` (owned by the caller, who closes it)."""

    def __init__(self, channel: grpc.aio.Channel) -> None:
        self._methods = {op: channel.unary_unary(f"/{SERVICE}/{o.rpc}", request_serializer=o.request.SerializeToString,
                                                 response_deserializer=o.response.FromString)
                         for op, o in OPERATIONS.items()}

    async def call(self, op: str, args: dict, *, cluster_id: str | None, source_id: int | None,
                   timeout_s: float) -> ControllerReply:
        """One call with a deadline of ``timeout_s`` (at least ``MIN_DEADLINE_S``).

        Raises grpc.aio.AioRpcError when the node did not answer (unreachable, deadline, dropped by a fault hook).
        """
        request = request_to_pb(op, args, cluster_id=cluster_id, source_id=source_id)
        response = await self._methods[op](request, timeout=max(timeout_s, MIN_DEADLINE_S))
        return reply_from_pb(op, response)


def call_sync(channel: grpc.Channel, op: str, args: dict, *, cluster_id: str | None, source_id: int | None,
              timeout_s: float) -> ControllerReply:
    """The same call over a blocking channel (tools and benchmarks that are not asyncio)."""
    operation = OPERATIONS[op]
    method = channel.unary_unary(f"/{SERVICE}/{operation.rpc}", request_serializer=operation.request.SerializeToString,
                                 response_deserializer=operation.response.FromString)
    request = request_to_pb(op, args, cluster_id=cluster_id, source_id=source_id)
    return reply_from_pb(op, method(request, timeout=max(timeout_s, MIN_DEADLINE_S)))


# == server ==========================================================================================================
# serve(op, args, cluster_id, source_id, context) -> result; raises KafkaError (with ``leader_id`` when it is
# NOT_CONTROLLER) to answer with an error status, or aborts the call through ``context``.
ServeFunction = Callable[[str, dict, str | None, int | None, grpc.aio.ServicerContext], Awaitable[Any]]


async def _reply(serve: ServeFunction, op: str, args: dict, cluster_id: str | None, source_id: int | None,
                 context) -> ControllerReply:
    try:
        result = await serve(op, args, cluster_id, source_id, context)
    except KafkaError as exc:
        return ControllerReply(int(exc.error_code), exc.message or "", getattr(exc, "leader_id", None))
    return ControllerReply(ErrorCode.NONE, "", None, result)


def _typed_handler(serve: ServeFunction, op: str, operation: _Operation):
    async def handle(request, context):
        cluster_id, source_id, args = request_from_pb(op, request)
        return reply_to_pb(op, await _reply(serve, op, args, cluster_id, source_id, context))
    return grpc.unary_unary_rpc_method_handler(handle, request_deserializer=operation.request.FromString,
                                               response_serializer=operation.response.SerializeToString)


def controller_rpc_handlers(serve: ServeFunction) -> tuple[grpc.GenericRpcHandler, ...]:
    """The ControllerService handlers (one per RPC) for a gRPC server."""
    methods = {o.rpc: _typed_handler(serve, op, o) for op, o in OPERATIONS.items()}
    return (grpc.method_handlers_generic_handler(SERVICE, methods),)
