"""gRPC transport of follower fetches (proto/cluster/v1/replication.proto): Python shapes, client, server handler.

Why it exists: the replication code in cluster/broker thinks in plain dataclasses (one ``PartitionFetch`` per
partition, one ``PartitionFetchResult`` back), while the wire carries the typed messages of the
``ReplicaFetchService``.  This module is the only place that converts between the two, so neither the leader's
serving code nor the follower's fetcher touches protobuf.

Records travel as the stored RecordBatch bytes *after* the response message, not inside it (the framing is
described in replication.proto): building and parsing a protobuf bytes field copies every megabyte twice on each
side, which on a busy leader cost as much as the transfer.  The follower gets ``records`` as memoryview slices of
the one received buffer.
"""

from __future__ import annotations

import struct
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import grpc

from cluster.transport._generated.cluster.v1 import replication_pb2 as pb

SERVICE = "cluster.v1.ReplicaFetchService"
_FETCH_METHOD = f"/{SERVICE}/Fetch"
NO_EPOCH = -1


@dataclass(frozen=True)
class PartitionFetch:
    topic_id: uuid.UUID
    partition: int
    current_leader_epoch: int
    fetch_offset: int
    last_fetched_epoch: int
    log_start_offset: int
    partition_max_bytes: int
    durable_log_end_offset: int


@dataclass(frozen=True)
class ReplicaFetchRequest:
    cluster_id: str
    replica_id: int
    broker_epoch: int
    max_wait_ms: int
    max_bytes: int
    partitions: list[PartitionFetch]


@dataclass
class PartitionFetchResult:
    topic_id: uuid.UUID
    partition: int
    error_code: int = 0
    high_watermark: int = -1
    log_start_offset: int = -1
    diverging_epoch: tuple[int, int] | None = None   # (epoch, end offset)
    records: bytes | memoryview = b""
    log_end_offset: int = -1                          # the leader's, when ``records`` were read


@dataclass
class ReplicaFetchResponse:
    error_code: int = 0
    partitions: list[PartitionFetchResult] = field(default_factory=list)


# == conversions =====================================================================================================
def request_to_pb(request: ReplicaFetchRequest) -> pb.ReplicaFetchRequest:
    return pb.ReplicaFetchRequest(
        cluster_id=request.cluster_id, replica_id=request.replica_id, broker_epoch=request.broker_epoch,
        max_wait_ms=request.max_wait_ms, max_bytes=request.max_bytes,
        partitions=[pb.ReplicaFetchPartition(
            topic_id=str(p.topic_id), partition=p.partition, current_leader_epoch=p.current_leader_epoch,
            fetch_offset=p.fetch_offset, last_fetched_epoch=p.last_fetched_epoch,
            log_start_offset=p.log_start_offset, partition_max_bytes=p.partition_max_bytes,
            durable_log_end_offset=p.durable_log_end_offset)
            for p in request.partitions])


def request_from_pb(message: pb.ReplicaFetchRequest) -> ReplicaFetchRequest:
    return ReplicaFetchRequest(
        message.cluster_id, message.replica_id, message.broker_epoch, message.max_wait_ms, message.max_bytes,
        [PartitionFetch(uuid.UUID(p.topic_id), p.partition, p.current_leader_epoch, p.fetch_offset,
                        p.last_fetched_epoch, p.log_start_offset, p.partition_max_bytes, p.durable_log_end_offset)
         for p in message.partitions])


_HEADER_SIZE = struct.Struct(">I")


def encode_response(response: ReplicaFetchResponse) -> bytes:
    """The Fetch response body: header length, header message, then every partition's records."""
    partitions = []
    for p in response.partitions:
        entry = pb.ReplicaFetchPartitionResponse(
            topic_id=str(p.topic_id), partition=p.partition, error_code=p.error_code,
            high_watermark=p.high_watermark, log_start_offset=p.log_start_offset, records_size=len(p.records),
            log_end_offset=p.log_end_offset)
        if p.diverging_epoch is not None:
            entry.has_diverging_epoch = True
            entry.diverging_epoch.epoch, entry.diverging_epoch.end_offset = p.diverging_epoch
        partitions.append(entry)
    header = pb.ReplicaFetchResponse(error_code=response.error_code, partitions=partitions).SerializeToString()
    return b"".join([_HEADER_SIZE.pack(len(header)), header, *(p.records for p in response.partitions)])


def decode_response(body: bytes) -> ReplicaFetchResponse:
    """Inverse of ``encode_response``; records are zero-copy slices of ``body``.  Raises ValueError on a body
    whose sizes do not add up (a corrupt or foreign response must not be appended)."""
    view = memoryview(body)
    if len(view) < _HEADER_SIZE.size:
        raise ValueError("replica fetch response shorter than its header length")
    (header_size,) = _HEADER_SIZE.unpack_from(view)
    position = _HEADER_SIZE.size + header_size
    if position > len(view):
        raise ValueError("replica fetch response header runs past the body")
    message = pb.ReplicaFetchResponse.FromString(view[_HEADER_SIZE.size:position])
    partitions = []
    for p in message.partitions:
        end = position + p.records_size
        if p.records_size < 0 or end > len(view):
            raise ValueError(f"replica fetch response records of partition {p.partition} run past the body")
        partitions.append(PartitionFetchResult(
            uuid.UUID(p.topic_id), p.partition, p.error_code, p.high_watermark, p.log_start_offset,
            (p.diverging_epoch.epoch, p.diverging_epoch.end_offset) if p.has_diverging_epoch else None,
            view[position:end], p.log_end_offset))
        position = end
    if position != len(view):
        raise ValueError(f"{len(view) - position} unexplained bytes after the replica fetch records")
    return ReplicaFetchResponse(message.error_code, partitions)


# == client ==========================================================================================================
# Fetch responses carry up to replica.fetch.response.max.bytes; gRPC's default receive limit is 4 MiB.
_CHANNEL_OPTIONS = [("grpc.max_receive_message_length", 256 * 1024 * 1024),
                    ("grpc.max_send_message_length", 256 * 1024 * 1024)]


class ReplicaFetchClient:
    """Fetches from one leader over ``channel``; ``close`` closes that channel."""

    def __init__(self, channel: grpc.aio.Channel) -> None:
        self._channel = channel
        self._fetch = channel.unary_unary(_FETCH_METHOD, request_serializer=pb.ReplicaFetchRequest.SerializeToString,
                                          response_deserializer=decode_response)

    @classmethod
    def connect(cls, address: str) -> ReplicaFetchClient:
        """A client over a channel of its own to the leader at ``address`` ("host:port"), sized for fetch
        responses of up to 256 MiB."""
        return cls(grpc.aio.insecure_channel(address, options=_CHANNEL_OPTIONS))

    async def close(self) -> None:
        await self._channel.close()

    async def fetch(self, request: ReplicaFetchRequest, timeout_s: float) -> ReplicaFetchResponse:
        """Raises grpc.aio.AioRpcError when the leader did not answer in time or is unreachable (or sent a body
        that does not decode: gRPC reports a failed deserializer as an INTERNAL error)."""
        return await self._fetch(request_to_pb(request), timeout=timeout_s)


# == server ==========================================================================================================
ServeFetch = Callable[[ReplicaFetchRequest, grpc.aio.ServicerContext], Awaitable[ReplicaFetchResponse]]


def replica_fetch_rpc_handlers(serve: ServeFetch) -> tuple[grpc.GenericRpcHandler, ...]:
    """The ReplicaFetchService handler for a gRPC server; ``serve`` answers one decoded request."""
    async def handle(message, context):
        return await serve(request_from_pb(message), context)
    method = grpc.unary_unary_rpc_method_handler(handle, request_deserializer=pb.ReplicaFetchRequest.FromString,
                                                 response_serializer=encode_response)
    return (grpc.method_handlers_generic_handler(SERVICE, {"Fetch": method}),)
