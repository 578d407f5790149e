"""gRPC transport of the broker -> controller calls: proto <-> typed objects, the client, the server handlers.

Why it exists: the controller service (cluster/broker/controller_server.py) and the brokers' controller channel
(cluster/broker/controller_channel.py) speak in the typed requests and results of cluster/metadata/controller_api.py
(and ``NewTopic``, ``CreateTopicResult``, ``HeartbeatResult``, ``AlterPartitionResult`` of the controller, and
the Raft ``QuorumInfo``), while the wire carries the messages of proto/cluster/v1/controller.proto, one RPC per
operation.  This is the one place that converts between the two, so neither side nor the tests touch protobuf:
per RPC one pair of functions for the request and one for the result, named in ``RPCS`` after the service method
that answers it (``create_topics`` -> ``CreateTopics``).

Every reply also carries a call status (``ControllerReply``): error_code 0 when the operation ran, else why it
did not (NOT_CONTROLLER with the leader this node knows, INCONSISTENT_CLUSTER_ID, REQUEST_TIMED_OUT, ...).
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import grpc

from cluster.core.errors import ErrorCode, KafkaError
from cluster.metadata.controller import AlterPartitionResult, CreateTopicResult, HeartbeatResult, NewTopic
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
from cluster.metadata.image import BrokerEndpoint
from cluster.raft import QuorumInfo, ReplicaInfo
from cluster.transport._generated.cluster.v1 import controller_pb2 as pb

SERVICE = "cluster.v1.ControllerService"
MIN_DEADLINE_S = 0.1   # a call always gets this long, even when the caller's own deadline is nearly spent
_NO_ID = -1            # "no node" / "no leader" on the wire, as in Kafka


@dataclass(frozen=True)
class ControllerReply:
    """The call status plus, when ``error_code`` is 0, the operation's typed result."""
    error_code: int
    error_message: str = ""
    leader_id: int | None = None   # with NOT_CONTROLLER: the active controller the callee knows
    result: Any = None

    def as_dict(self) -> dict:
        """The reply as tools and test harnesses read it: ``error_code``, ``message``, ``leader_id``, ``result``
        (DescribeQuorum's in its JSON form, ``quorum_info_to_json``; any other typed result as it is)."""
        result = quorum_info_to_json(self.result) if isinstance(self.result, QuorumInfo) else self.result
        return {"error_code": self.error_code, "message": self.error_message, "leader_id": self.leader_id,
                "result": result}


def _id_to_pb(node_id: int | None) -> int:
    return _NO_ID if node_id is None else node_id


def _id_from_pb(node_id: int) -> int | None:
    return None if node_id < 0 else node_id


def _optional(message, field: str) -> str | None:
    return getattr(message, field) if message.HasField(field) else None


# == RegisterBroker, BrokerHeartbeat ==================================================================================
def _register_to_pb(r: RegisterBrokerRequest) -> pb.RegisterBrokerRequest:
    return pb.RegisterBrokerRequest(
        broker_id=r.broker_id, incarnation_id=str(r.incarnation_id), rack=r.rack,
        endpoints=[pb.BrokerEndpoint(listener_name=e.name, host=e.host, port=e.port) for e in r.endpoints])


def _register_from_pb(m: pb.RegisterBrokerRequest) -> RegisterBrokerRequest:
    return RegisterBrokerRequest(m.broker_id, uuid.UUID(m.incarnation_id),
                                 tuple(BrokerEndpoint(e.listener_name, e.host, e.port) for e in m.endpoints),
                                 _optional(m, "rack"))


def _register_result_to_pb(r: RegisterBrokerResult) -> pb.RegisterBrokerResponse:
    return pb.RegisterBrokerResponse(error_code=int(r.error_code), broker_epoch=r.broker_epoch)


def _register_result_from_pb(m: pb.RegisterBrokerResponse) -> RegisterBrokerResult:
    return RegisterBrokerResult(ErrorCode(m.error_code), m.broker_epoch)


def _heartbeat_to_pb(r: BrokerHeartbeatRequest) -> pb.BrokerHeartbeatRequest:
    return pb.BrokerHeartbeatRequest(broker_id=r.broker_id, broker_epoch=r.broker_epoch,
                                     current_metadata_offset=r.current_metadata_offset, want_shutdown=r.want_shutdown)


def _heartbeat_from_pb(m: pb.BrokerHeartbeatRequest) -> BrokerHeartbeatRequest:
    return BrokerHeartbeatRequest(m.broker_id, m.broker_epoch, m.current_metadata_offset, m.want_shutdown)


def _heartbeat_result_to_pb(r: HeartbeatResult) -> pb.BrokerHeartbeatResponse:
    return pb.BrokerHeartbeatResponse(error_code=int(r.error_code), is_fenced=r.is_fenced,
                                      should_shutdown=r.should_shutdown, is_caught_up=r.is_caught_up)


def _heartbeat_result_from_pb(m: pb.BrokerHeartbeatResponse) -> HeartbeatResult:
    return HeartbeatResult(ErrorCode(m.error_code), is_caught_up=m.is_caught_up, is_fenced=m.is_fenced,
                           should_shutdown=m.should_shutdown)


# == CreateTopics, DeleteTopics, CreatePartitions, AllocateProducerIds ===============================================
def _new_topic_to_pb(topic: NewTopic) -> pb.CreatableTopic:
    return pb.CreatableTopic(
        name=topic.name, num_partitions=topic.num_partitions, replication_factor=topic.replication_factor,
        assignments=[pb.PartitionAssignment(partition_index=int(index), broker_ids=list(ids))
                     for index, ids in (topic.assignments or {}).items()],
        configs=[pb.TopicConfig(name=name, value=value) for name, value in topic.configs.items()])


def _new_topic_from_pb(t: pb.CreatableTopic) -> NewTopic:
    return NewTopic(t.name, t.num_partitions, t.replication_factor,
                    {a.partition_index: tuple(a.broker_ids) for a in t.assignments} or None,
                    {c.name: _optional(c, "value") for c in t.configs})


def _create_topics_to_pb(r: CreateTopicsRequest) -> pb.CreateTopicsRequest:
    return pb.CreateTopicsRequest(topics=[_new_topic_to_pb(t) for t in r.topics], validate_only=r.validate_only)


def _create_topics_from_pb(m: pb.CreateTopicsRequest) -> CreateTopicsRequest:
    return CreateTopicsRequest(tuple(_new_topic_from_pb(t) for t in m.topics), m.validate_only)


def _create_topics_result_to_pb(results) -> pb.CreateTopicsResponse:
    return pb.CreateTopicsResponse(topics=[pb.CreatableTopicResult(
        name=r.name, error_code=int(r.error_code), error_message=r.error_message,
        topic_id=str(r.topic_id) if r.topic_id else None, num_partitions=r.num_partitions,
        replication_factor=r.replication_factor) for r in results])


def _create_topics_result_from_pb(m: pb.CreateTopicsResponse) -> tuple[CreateTopicResult, ...]:
    return tuple(CreateTopicResult(
        r.name, ErrorCode(r.error_code), _optional(r, "error_message"),
        uuid.UUID(r.topic_id) if r.HasField("topic_id") else None, r.num_partitions, r.replication_factor)
        for r in m.topics)


def _delete_topics_result_to_pb(results) -> pb.DeleteTopicsResponse:
    return pb.DeleteTopicsResponse(topics=[pb.DeletableTopicResult(
        name=r.name, error_code=int(r.error_code), error_message=r.error_message) for r in results])


def _delete_topics_result_from_pb(m: pb.DeleteTopicsResponse) -> tuple[TopicError, ...]:
    return tuple(TopicError(t.name, ErrorCode(t.error_code), _optional(t, "error_message")) for t in m.topics)


def _create_partitions_to_pb(r: CreatePartitionsRequest) -> pb.CreatePartitionsRequest:
    message = pb.CreatePartitionsRequest(name=r.name, count=r.count)
    if r.assignments is not None:   # absent (Kafka's null) differs from an empty list
        message.assignments.CopyFrom(pb.NewPartitionAssignments(
            partitions=[pb.ReplicaList(broker_ids=list(ids)) for ids in r.assignments]))
    return message


def _create_partitions_from_pb(m: pb.CreatePartitionsRequest) -> CreatePartitionsRequest:
    assignments = (tuple(tuple(r.broker_ids) for r in m.assignments.partitions)
                   if m.HasField("assignments") else None)
    return CreatePartitionsRequest(m.name, m.count, assignments)


def _api_error_to_pb(r: ApiError) -> pb.CreatePartitionsResponse:
    return pb.CreatePartitionsResponse(error_code=int(r.error_code), error_message=r.error_message)


def _api_error_from_pb(m: pb.CreatePartitionsResponse) -> ApiError:
    return ApiError(ErrorCode(m.error_code), _optional(m, "error_message"))


def _producer_ids_to_pb(r: AllocateProducerIdsRequest) -> pb.AllocateProducerIdsRequest:
    return pb.AllocateProducerIdsRequest(broker_id=r.broker_id, broker_epoch=r.broker_epoch)


def _producer_ids_from_pb(m: pb.AllocateProducerIdsRequest) -> AllocateProducerIdsRequest:
    return AllocateProducerIdsRequest(m.broker_id, m.broker_epoch)


def _producer_ids_result_to_pb(r: ProducerIdsBlock) -> pb.AllocateProducerIdsResponse:
    return pb.AllocateProducerIdsResponse(error_code=int(r.error_code), producer_id_start=r.producer_id_start,
                                          producer_id_len=r.producer_id_len)


def _producer_ids_result_from_pb(m: pb.AllocateProducerIdsResponse) -> ProducerIdsBlock:
    return ProducerIdsBlock(ErrorCode(m.error_code), m.producer_id_start, m.producer_id_len)


# == AlterPartition ===================================================================================================
def _alter_partition_to_pb(r: AlterPartitionRequest) -> pb.AlterPartitionRequest:
    return pb.AlterPartitionRequest(
        broker_id=r.broker_id, broker_epoch=r.broker_epoch, topic_id=str(r.topic_id), partition=r.partition,
        leader_epoch=r.leader_epoch, partition_epoch=r.partition_epoch,
        new_isr=[pb.IsrMember(broker_id=m.broker_id, broker_epoch=m.broker_epoch) for m in r.new_isr])


def _alter_partition_from_pb(m: pb.AlterPartitionRequest) -> AlterPartitionRequest:
    return AlterPartitionRequest(m.broker_id, m.broker_epoch, uuid.UUID(m.topic_id), m.partition, m.leader_epoch,
                                 m.partition_epoch, tuple(IsrMember(i.broker_id, i.broker_epoch) for i in m.new_isr))


def _alter_partition_result_to_pb(r: AlterPartitionResult) -> pb.AlterPartitionResponse:
    return pb.AlterPartitionResponse(error_code=int(r.error_code), leader_id=r.leader, leader_epoch=r.leader_epoch,
                                     partition_epoch=r.partition_epoch, isr=list(r.isr))


def _alter_partition_result_from_pb(m: pb.AlterPartitionResponse) -> AlterPartitionResult:
    return AlterPartitionResult(ErrorCode(m.error_code), m.leader_id, m.leader_epoch, m.partition_epoch,
                                tuple(m.isr))


# == DescribeQuorum ===================================================================================================
def _replicas_to_pb(replicas) -> list[pb.ReplicaState]:
    return [pb.ReplicaState(replica_id=r.replica_id, log_end_offset=r.log_end_offset,
                            last_fetch_ms=_id_to_pb(r.last_fetch_ms)) for r in replicas]


def _replicas_from_pb(replicas) -> tuple[ReplicaInfo, ...]:
    return tuple(ReplicaInfo(r.replica_id, r.log_end_offset, r.last_fetch_ms) for r in replicas)


def _quorum_result_to_pb(info: QuorumInfo) -> pb.DescribeQuorumResponse:
    return pb.DescribeQuorumResponse(leader_id=_id_to_pb(info.leader_id), leader_epoch=info.leader_epoch,
                                     high_watermark=info.high_watermark, voters=_replicas_to_pb(info.voters),
                                     observers=_replicas_to_pb(info.observers))


def _quorum_result_from_pb(m: pb.DescribeQuorumResponse) -> QuorumInfo:
    return QuorumInfo(_id_from_pb(m.leader_id), m.leader_epoch, m.high_watermark, _replicas_from_pb(m.voters),
                      _replicas_from_pb(m.observers))


# == reassignments and elections ======================================================================================
def _partition_refs_to_pb(partitions) -> dict:
    """The ``all``/``partitions`` pair that ListReassignments and ElectLeaders share (None: all partitions)."""
    if partitions is None:
        return {"all": True}
    return {"all": False, "partitions": [pb.TopicPartitionRef(topic=t, partition=p) for t, p in partitions]}


def _partition_refs_from_pb(m) -> tuple[tuple[str, int], ...] | None:
    return None if m.all else tuple((r.topic, r.partition) for r in m.partitions)


def _alter_reassignments_to_pb(r: AlterReassignmentsRequest) -> pb.AlterReassignmentsRequest:
    message = pb.AlterReassignmentsRequest()
    for target in r.partitions:
        wire = message.partitions.add(topic=target.topic, partition=target.partition)
        if target.replicas is not None:   # unset means cancel, unlike an (invalid) empty list
            wire.replicas.CopyFrom(pb.ReplicaList(broker_ids=list(target.replicas)))
    return message


def _alter_reassignments_from_pb(m: pb.AlterReassignmentsRequest) -> AlterReassignmentsRequest:
    return AlterReassignmentsRequest(tuple(
        ReassignmentTarget(t.topic, t.partition, tuple(t.replicas.broker_ids) if t.HasField("replicas") else None)
        for t in m.partitions))


def _partition_results_to_pb(response: type) -> Callable[[Any], Any]:
    """AlterReassignments' and ElectLeaders' results: the same list of PartitionResult in both responses."""
    def to_pb(results) -> Any:
        return response(partitions=[pb.PartitionResult(topic=r.topic, partition=r.partition,
                                                       error_code=int(r.error_code), error_message=r.error_message)
                                    for r in results])
    return to_pb


def _partition_results_from_pb(m) -> tuple[PartitionResult, ...]:
    return tuple(PartitionResult(r.topic, r.partition, ErrorCode(r.error_code), _optional(r, "error_message"))
                 for r in m.partitions)


def _list_reassignments_to_pb(r: ListReassignmentsRequest) -> pb.ListReassignmentsRequest:
    return pb.ListReassignmentsRequest(**_partition_refs_to_pb(r.partitions))


def _list_reassignments_from_pb(m: pb.ListReassignmentsRequest) -> ListReassignmentsRequest:
    return ListReassignmentsRequest(_partition_refs_from_pb(m))


def _list_reassignments_result_to_pb(results) -> pb.ListReassignmentsResponse:
    return pb.ListReassignmentsResponse(partitions=[pb.OngoingReassignment(
        topic=r.topic, partition=r.partition, replicas=list(r.replicas), adding_replicas=list(r.adding_replicas),
        removing_replicas=list(r.removing_replicas)) for r in results])


def _list_reassignments_result_from_pb(m: pb.ListReassignmentsResponse) -> tuple[PartitionReassignment, ...]:
    return tuple(PartitionReassignment(r.topic, r.partition, tuple(r.replicas), tuple(r.adding_replicas),
                                       tuple(r.removing_replicas)) for r in m.partitions)


def _elect_leaders_to_pb(r: ElectLeadersRequest) -> pb.ElectLeadersRequest:
    return pb.ElectLeadersRequest(election_type=r.election_type, **_partition_refs_to_pb(r.partitions))


def _elect_leaders_from_pb(m: pb.ElectLeadersRequest) -> ElectLeadersRequest:
    return ElectLeadersRequest(m.election_type, _partition_refs_from_pb(m))


# == the RPC table ====================================================================================================
@dataclass(frozen=True)
class Rpc:
    """One RPC of ControllerService: the service method that answers it and its two conversion pairs."""
    method: str                  # the controller service's (and channel's) method name
    rpc: str                     # method name in controller.proto
    request: type                # request message class
    response: type               # response message class
    request_to_pb: Callable[[Any], Any]
    request_from_pb: Callable[[Any], Any]
    result_to_pb: Callable[[Any], Any]
    result_from_pb: Callable[[Any], Any]


def _rpcs(*rpcs: Rpc) -> dict[str, Rpc]:
    return {rpc.method: rpc for rpc in rpcs}


RPCS: dict[str, Rpc] = _rpcs(
    Rpc("register_broker", "RegisterBroker", pb.RegisterBrokerRequest, pb.RegisterBrokerResponse,
        _register_to_pb, _register_from_pb, _register_result_to_pb, _register_result_from_pb),
    Rpc("broker_heartbeat", "BrokerHeartbeat", pb.BrokerHeartbeatRequest, pb.BrokerHeartbeatResponse,
        _heartbeat_to_pb, _heartbeat_from_pb, _heartbeat_result_to_pb, _heartbeat_result_from_pb),
    Rpc("create_topics", "CreateTopics", pb.CreateTopicsRequest, pb.CreateTopicsResponse,
        _create_topics_to_pb, _create_topics_from_pb, _create_topics_result_to_pb, _create_topics_result_from_pb),
    Rpc("delete_topics", "DeleteTopics", pb.DeleteTopicsRequest, pb.DeleteTopicsResponse,
        lambda r: pb.DeleteTopicsRequest(names=list(r.names)), lambda m: DeleteTopicsRequest(tuple(m.names)),
        _delete_topics_result_to_pb, _delete_topics_result_from_pb),
    Rpc("create_partitions", "CreatePartitions", pb.CreatePartitionsRequest, pb.CreatePartitionsResponse,
        _create_partitions_to_pb, _create_partitions_from_pb, _api_error_to_pb, _api_error_from_pb),
    Rpc("allocate_producer_ids", "AllocateProducerIds", pb.AllocateProducerIdsRequest,
        pb.AllocateProducerIdsResponse, _producer_ids_to_pb, _producer_ids_from_pb, _producer_ids_result_to_pb,
        _producer_ids_result_from_pb),
    Rpc("alter_partition", "AlterPartition", pb.AlterPartitionRequest, pb.AlterPartitionResponse,
        _alter_partition_to_pb, _alter_partition_from_pb, _alter_partition_result_to_pb,
        _alter_partition_result_from_pb),
    Rpc("describe_quorum", "DescribeQuorum", pb.DescribeQuorumRequest, pb.DescribeQuorumResponse,
        lambda r: pb.DescribeQuorumRequest(), lambda m: DescribeQuorumRequest(), _quorum_result_to_pb,
        _quorum_result_from_pb),
    Rpc("alter_partition_reassignments", "AlterReassignments", pb.AlterReassignmentsRequest,
        pb.AlterReassignmentsResponse, _alter_reassignments_to_pb, _alter_reassignments_from_pb,
        _partition_results_to_pb(pb.AlterReassignmentsResponse), _partition_results_from_pb),
    Rpc("list_partition_reassignments", "ListReassignments", pb.ListReassignmentsRequest,
        pb.ListReassignmentsResponse, _list_reassignments_to_pb, _list_reassignments_from_pb,
        _list_reassignments_result_to_pb, _list_reassignments_result_from_pb),
    Rpc("elect_leaders", "ElectLeaders", pb.ElectLeadersRequest, pb.ElectLeadersResponse,
        _elect_leaders_to_pb, _elect_leaders_from_pb, _partition_results_to_pb(pb.ElectLeadersResponse),
        _partition_results_from_pb),
)


def _rpc(method: str) -> Rpc:
    try:
        return RPCS[method]
    except KeyError:
        raise KafkaError(ErrorCode.INVALID_REQUEST, f"unknown controller RPC {method!r}") from None


def request_to_pb(method: str, request, *, cluster_id: str | None, source_id: int | None):
    """The proto request of ``method`` for the typed ``request``, from node ``source_id`` (None: not a node)."""
    message = _rpc(method).request_to_pb(request)
    message.header.CopyFrom(pb.CallHeader(cluster_id=cluster_id or "", source_id=_id_to_pb(source_id)))
    return message


def request_from_pb(method: str, message) -> tuple[str, int | None, Any]:
    """(cluster_id, source_id, typed request) of a proto request of ``method``."""
    header = message.header
    return header.cluster_id, _id_from_pb(header.source_id), _rpc(method).request_from_pb(message)


def reply_to_pb(method: str, reply: ControllerReply):
    """The proto response of ``method``: the status, and the result only when the call succeeded."""
    rpc = _rpc(method)
    message = rpc.result_to_pb(reply.result) if reply.error_code == ErrorCode.NONE else rpc.response()
    message.status.CopyFrom(pb.CallStatus(error_code=int(reply.error_code), error_message=reply.error_message or "",
                                          leader_id=_id_to_pb(reply.leader_id)))
    return message


def reply_from_pb(method: str, message) -> ControllerReply:
    status = message.status
    result = _rpc(method).result_from_pb(message) if status.error_code == ErrorCode.NONE else None
    return ControllerReply(status.error_code, status.error_message, _id_from_pb(status.leader_id), result)


def _stub(channel, rpc: Rpc):
    return channel.unary_unary(f"/{SERVICE}/{rpc.rpc}", request_serializer=rpc.request.SerializeToString,
                               response_deserializer=rpc.response.FromString)


# == client ==========================================================================================================
class ControllerClient:
    """Calls one node's controller service over ``channel``; ``close`` closes that channel."""

    def __init__(self, channel: grpc.aio.Channel) -> None:
        self._channel = channel
        self._stubs = {method: _stub(channel, rpc) for method, rpc in RPCS.items()}

    @classmethod
    def connect(cls, address: str) -> ControllerClient:
        """A client over a channel of its own to the node at ``address`` ("host:port")."""
        return cls(grpc.aio.insecure_channel(address))

    async def close(self) -> None:
        await self._channel.close()

    async def call(self, method: str, request, *, cluster_id: str | None, source_id: int | None,
                   timeout_s: float) -> ControllerReply:
        """One call of the service's ``method`` with the typed ``request`` and a deadline of ``timeout_s`` (at
        least ``MIN_DEADLINE_S``).

        Raises grpc.aio.AioRpcError when the node did not answer (unreachable, deadline, dropped by a fault hook).
        """
        message = request_to_pb(method, request, cluster_id=cluster_id, source_id=source_id)
        response = await self._stubs[method](message, timeout=max(timeout_s, MIN_DEADLINE_S))
        return reply_from_pb(method, response)


def call_sync(channel: grpc.Channel, method: str, request, *, cluster_id: str | None, source_id: int | None,
              timeout_s: float) -> ControllerReply:
    """The same call over a blocking channel (tools and benchmarks that are not asyncio)."""
    message = request_to_pb(method, request, cluster_id=cluster_id, source_id=source_id)
    return reply_from_pb(method, _stub(channel, _rpc(method))(message, timeout=max(timeout_s, MIN_DEADLINE_S)))


# == server ==========================================================================================================
# admit(method, cluster_id, source_id, context): before the service runs a call; raises KafkaError to refuse it, or
# aborts it through ``context``.
AdmitFunction = Callable[[str, str | None, int | None, grpc.aio.ServicerContext], Awaitable[None]]


def _typed_handler(service, admit: AdmitFunction, rpc: Rpc):
    answer = getattr(service, rpc.method)

    async def handle(message, context):
        cluster_id, source_id, request = request_from_pb(rpc.method, message)
        try:
            await admit(rpc.method, cluster_id, source_id, context)
            reply = ControllerReply(ErrorCode.NONE, "", None, await answer(request))
        except KafkaError as exc:   # NotControllerError's ``leader_id`` travels with it
            reply = ControllerReply(int(exc.error_code), exc.message or "", getattr(exc, "leader_id", None))
        return reply_to_pb(rpc.method, reply)
    return grpc.unary_unary_rpc_method_handler(handle, request_deserializer=rpc.request.FromString,
                                               response_serializer=rpc.response.SerializeToString)


def controller_rpc_handlers(service, admit: AdmitFunction) -> tuple[grpc.GenericRpcHandler, ...]:
    """The ControllerService handlers (one per RPC) for a gRPC server: each calls the typed method of ``service``
    named in ``RPCS`` once ``admit`` let the call in."""
    methods = {rpc.rpc: _typed_handler(service, admit, rpc) for rpc in RPCS.values()}
    return (grpc.method_handlers_generic_handler(SERVICE, methods),)


# == tools ===========================================================================================================
def quorum_info_to_json(info: QuorumInfo) -> dict:
    """DescribeQuorum's answer as tools print and read it (``kraftpy cluster describe-quorum --json``, the test
    harnesses): leader_id, leader_epoch, high_watermark, and [replica_id, log_end_offset, last_fetch_ms] per
    voter and observer."""
    def replicas(states) -> list[list[int]]:
        return [[r.replica_id, r.log_end_offset, r.last_fetch_ms] for r in states]
    return {"leader_id": info.leader_id, "leader_epoch": info.leader_epoch, "high_watermark": info.high_watermark,
            "voters": replicas(info.voters), "observers": replicas(info.observers)}
