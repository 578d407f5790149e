"""gRPC transport of the metadata quorum: proto <-> core message conversion, the server, the per-peer client.

Why it exists: the Raft core speaks frozen dataclasses (cluster/raft/messages.py) and must not know about
protobuf; this is the one place that converts (``to_envelope`` / ``from_envelope``) and moves envelopes over
the network.  Delivery is deliberately best effort (proto/cluster/v1/raft.proto explains the one-way
``Send``): each peer has a bounded queue drained by one task; while the peer is down the task drops what is
queued and reconnects with exponential backoff.  Raft resends whatever matters (fetches, votes, heartbeats).

Safety checks at the edge: an envelope with another cluster id is refused with INCONSISTENT_CLUSTER_ID and
logged; one addressed to another node id with NOT_LEADER_OR_FOLLOWER (two nodes configured with one id).

Test-only fault hook (``FaultFilter``, off unless a broker sets ``kraftpy.test.fault.file``): drops messages
to and from the peers a file names, so process tests can cut a node off without network namespaces.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable

import grpc

from cluster.core.errors import ErrorCode
from cluster.raft.log import LogEntry, OffsetAndEpoch, SnapshotId
from cluster.raft.messages import (
    BeginQuorumEpochRequest,
    BeginQuorumEpochResponse,
    EndQuorumEpochRequest,
    EndQuorumEpochResponse,
    FetchRequest,
    FetchResponse,
    FetchSnapshotRequest,
    FetchSnapshotResponse,
    RaftMessage,
    VoteRequest,
    VoteResponse,
)
from cluster.transport._generated.cluster.v1 import raft_pb2 as pb
from cluster.transport._generated.cluster.v1 import raft_pb2_grpc as pb_grpc

log = logging.getLogger(__name__)

_NO_ID = -1   # Kafka's "unknown" node id on the wire


# == conversion =======================================================================================================
def _id_to_pb(node_id: int | None) -> int:
    return _NO_ID if node_id is None else node_id


def _id_from_pb(node_id: int) -> int | None:
    return None if node_id < 0 else node_id


def _entry_to_pb(entry: LogEntry) -> pb.LogEntry:
    return pb.LogEntry(offset=entry.offset, epoch=entry.epoch, payload=entry.payload, is_control=entry.is_control)


def _snapshot_id_to_pb(snapshot_id: SnapshotId) -> pb.SnapshotId:
    return pb.SnapshotId(end_offset=snapshot_id.end_offset, epoch=snapshot_id.epoch)


def _snapshot_id_from_pb(snapshot_id: pb.SnapshotId) -> SnapshotId:
    return SnapshotId(snapshot_id.end_offset, snapshot_id.epoch)


def _body_to_pb(message: RaftMessage) -> tuple[str, object]:
    """The oneof field name and proto body of ``message``."""
    m = message
    if isinstance(m, VoteRequest):
        return "vote_request", pb.VoteRequest(candidate_epoch=m.candidate_epoch, last_offset_epoch=m.last_offset_epoch,
                                              last_offset=m.last_offset, pre_vote=m.pre_vote)
    if isinstance(m, VoteResponse):
        return "vote_response", pb.VoteResponse(error_code=m.error_code, epoch=m.epoch, leader_id=_id_to_pb(m.leader_id),
                                                vote_granted=m.vote_granted, candidate_epoch=m.candidate_epoch,
                                                pre_vote=m.pre_vote)
    if isinstance(m, BeginQuorumEpochRequest):
        return "begin_quorum_epoch_request", pb.BeginQuorumEpochRequest(leader_epoch=m.leader_epoch)
    if isinstance(m, BeginQuorumEpochResponse):
        return "begin_quorum_epoch_response", pb.BeginQuorumEpochResponse(
            error_code=m.error_code, epoch=m.epoch, leader_id=_id_to_pb(m.leader_id))
    if isinstance(m, EndQuorumEpochRequest):
        return "end_quorum_epoch_request", pb.EndQuorumEpochRequest(
            leader_epoch=m.leader_epoch, preferred_successors=list(m.preferred_successors))
    if isinstance(m, EndQuorumEpochResponse):
        return "end_quorum_epoch_response", pb.EndQuorumEpochResponse(
            error_code=m.error_code, epoch=m.epoch, leader_id=_id_to_pb(m.leader_id))
    if isinstance(m, FetchRequest):
        return "fetch_request", pb.FetchRequest(current_leader_epoch=m.current_leader_epoch, fetch_offset=m.fetch_offset,
                                                last_fetched_epoch=m.last_fetched_epoch,
                                                high_watermark=m.high_watermark)
    if isinstance(m, FetchResponse):
        body = pb.FetchResponse(error_code=m.error_code, epoch=m.epoch, leader_id=_id_to_pb(m.leader_id),
                                fetch_offset=m.fetch_offset, last_fetched_epoch=m.last_fetched_epoch,
                                high_watermark=m.high_watermark, log_start_offset=m.log_start_offset,
                                entries=[_entry_to_pb(e) for e in m.entries])
        if m.diverging_epoch is not None:
            body.diverging_epoch.CopyFrom(pb.OffsetAndEpoch(offset=m.diverging_epoch.offset,
                                                            epoch=m.diverging_epoch.epoch))
        if m.snapshot_id is not None:
            body.snapshot_id.CopyFrom(_snapshot_id_to_pb(m.snapshot_id))
        return "fetch_response", body
    if isinstance(m, FetchSnapshotRequest):
        return "fetch_snapshot_request", pb.FetchSnapshotRequest(
            current_leader_epoch=m.current_leader_epoch, snapshot_id=_snapshot_id_to_pb(m.snapshot_id),
            position=m.position)
    if isinstance(m, FetchSnapshotResponse):
        return "fetch_snapshot_response", pb.FetchSnapshotResponse(
            error_code=m.error_code, epoch=m.epoch, leader_id=_id_to_pb(m.leader_id),
            snapshot_id=_snapshot_id_to_pb(m.snapshot_id), position=m.position, size_bytes=m.size_bytes,
            chunk=m.chunk, high_watermark=m.high_watermark)
    raise TypeError(f"not a raft message: {type(message).__name__}")


def to_envelope(message: RaftMessage, *, cluster_id: str, directory_id: str) -> pb.RaftEnvelope:
    """The proto envelope carrying ``message`` from this node (``directory_id`` names our raft directory)."""
    field, body = _body_to_pb(message)
    envelope = pb.RaftEnvelope(cluster_id=cluster_id, source_id=message.source_id,
                               destination_id=message.destination_id, source_directory_id=directory_id)
    getattr(envelope, field).CopyFrom(body)
    return envelope


def from_envelope(envelope: pb.RaftEnvelope) -> RaftMessage:
    """The core message inside ``envelope`` (cluster id and directory id are checked by the caller)."""
    field = envelope.WhichOneof("message")
    src, dst = envelope.source_id, envelope.destination_id
    b = getattr(envelope, field) if field else None
    if field == "vote_request":
        return VoteRequest(src, dst, b.candidate_epoch, b.last_offset_epoch, b.last_offset, b.pre_vote)
    if field == "vote_response":
        return VoteResponse(src, dst, ErrorCode(b.error_code), b.epoch, _id_from_pb(b.leader_id), b.vote_granted,
                            b.candidate_epoch, b.pre_vote)
    if field == "begin_quorum_epoch_request":
        return BeginQuorumEpochRequest(src, dst, b.leader_epoch)
    if field == "begin_quorum_epoch_response":
        return BeginQuorumEpochResponse(src, dst, ErrorCode(b.error_code), b.epoch, _id_from_pb(b.leader_id))
    if field == "end_quorum_epoch_request":
        return EndQuorumEpochRequest(src, dst, b.leader_epoch, tuple(b.preferred_successors))
    if field == "end_quorum_epoch_response":
        return EndQuorumEpochResponse(src, dst, ErrorCode(b.error_code), b.epoch, _id_from_pb(b.leader_id))
    if field == "fetch_request":
        return FetchRequest(src, dst, b.current_leader_epoch, b.fetch_offset, b.last_fetched_epoch, b.high_watermark)
    if field == "fetch_response":
        return FetchResponse(
            src, dst, ErrorCode(b.error_code), b.epoch, _id_from_pb(b.leader_id), b.fetch_offset,
            b.last_fetched_epoch, b.high_watermark, b.log_start_offset,
            tuple(LogEntry(e.offset, e.epoch, e.payload, e.is_control) for e in b.entries),
            OffsetAndEpoch(b.diverging_epoch.offset, b.diverging_epoch.epoch) if b.HasField("diverging_epoch") else None,
            _snapshot_id_from_pb(b.snapshot_id) if b.HasField("snapshot_id") else None)
    if field == "fetch_snapshot_request":
        return FetchSnapshotRequest(src, dst, b.current_leader_epoch, _snapshot_id_from_pb(b.snapshot_id), b.position)
    if field == "fetch_snapshot_response":
        return FetchSnapshotResponse(src, dst, ErrorCode(b.error_code), b.epoch, _id_from_pb(b.leader_id),
                                     _snapshot_id_from_pb(b.snapshot_id), b.position, b.size_bytes, b.chunk,
                                     b.high_watermark)
    raise ValueError(f"raft envelope without a message (field {field!r})")


# == test-only fault hook ============================================================================================
class FaultFilter:
    """Drops inter-node traffic to and from the peer node ids listed in a file (tests cut links with it).

    The file holds node ids separated by whitespace or commas; a missing or empty file cuts nothing.  It is
    looked at (one ``stat``) at most every 50 ms and re-read when it changed, so a test cuts and heals links
    by rewriting it.  Dropping is silent, like a lost packet: Raft's own timers must notice.  With an empty
    ``path`` (production) ``blocks`` is a single attribute test.
    """

    _CHECK_INTERVAL_S = 0.05

    def __init__(self, path: str | None = None) -> None:
        self.path = path or ""
        self.blocked: frozenset[int] = frozenset()
        self.dropped = 0
        self._stamp: tuple[int, int] | None = None
        self._checked_at = 0.0

    def blocks(self, peer_id: int | None) -> bool:
        if not self.path:
            return False
        self._refresh()
        if peer_id in self.blocked:
            self.dropped += 1
            return True
        return False

    def _refresh(self) -> None:
        now = time.monotonic()
        if now - self._checked_at < self._CHECK_INTERVAL_S:
            return
        self._checked_at = now
        try:
            stat = os.stat(self.path)
            stamp: tuple[int, int] | None = (stat.st_mtime_ns, stat.st_size)
        except FileNotFoundError:
            stamp = None
        if stamp == self._stamp:
            return
        self._stamp = stamp
        try:
            with open(self.path, encoding="utf-8") as handle:
                text = handle.read()
        except FileNotFoundError:
            text = ""
        blocked = frozenset(int(item) for item in text.replace(",", " ").split())
        if blocked != self.blocked:
            log.warning("test fault hook (%s): dropping inter-node traffic to and from nodes %s",
                        self.path, sorted(blocked) or "none")
        self.blocked = blocked


_NO_FAULTS = FaultFilter()


# == server ===========================================================================================================
# Called with (message, source_directory_id) for every accepted envelope; must not block.
InboundHandler = Callable[[RaftMessage, str], None]


class _Servicer(pb_grpc.RaftServiceServicer):
    def __init__(self, node_id: int, cluster_id: str, handler: InboundHandler, fault: FaultFilter) -> None:
        self._node_id = node_id
        self._cluster_id = cluster_id
        self._handler = handler
        self._fault = fault

    async def Send(self, request: pb.RaftEnvelope, context: grpc.aio.ServicerContext) -> pb.Ack:  # noqa: N802
        if request.cluster_id != self._cluster_id:
            log.warning("refusing raft message from node %d: cluster id %r, ours is %r",
                        request.source_id, request.cluster_id, self._cluster_id)
            return pb.Ack(error_code=ErrorCode.INCONSISTENT_CLUSTER_ID)
        if request.destination_id != self._node_id:
            log.warning("refusing raft message for node %d at node %d (duplicate node id in the config?)",
                        request.destination_id, self._node_id)
            return pb.Ack(error_code=ErrorCode.NOT_LEADER_OR_FOLLOWER)
        if self._fault.blocks(request.source_id):
            return pb.Ack(error_code=ErrorCode.NONE)   # lost on the (simulated) network
        self._handler(from_envelope(request), request.source_directory_id)
        return pb.Ack(error_code=ErrorCode.NONE)


class RaftGrpcServer:
    """Accepts envelopes for ``node_id`` on ``host:port`` and hands each message to ``handler``."""

    def __init__(self, node_id: int, cluster_id: str, handler: InboundHandler, host: str, port: int,
                 fault: FaultFilter = _NO_FAULTS) -> None:
        self._server = grpc.aio.server(options=[("grpc.max_receive_message_length", 64 * 1024 * 1024)])
        pb_grpc.add_RaftServiceServicer_to_server(_Servicer(node_id, cluster_id, handler, fault), self._server)
        self.port = self._server.add_insecure_port(f"{host}:{port}")

    def add_generic_rpc_handlers(self, handlers) -> None:
        """Lets another service (the controller RPCs) share this node's one inter-node port."""
        self._server.add_generic_rpc_handlers(handlers)

    async def start(self) -> None:
        await self._server.start()

    async def stop(self, grace_s: float = 0.5) -> None:
        await self._server.stop(grace_s)


# == client ===========================================================================================================
class RaftPeerClient:
    """Fire-and-forget sender to one peer: bounded queue, one task, reconnect with backoff, drop when down."""

    def __init__(self, peer_id: int, address: str, *, cluster_id: str, directory_id: str, queue_size: int = 256,
                 rpc_timeout_s: float = 2.0, backoff_min_s: float = 0.05, backoff_max_s: float = 1.0,
                 fault: FaultFilter = _NO_FAULTS) -> None:
        self.peer_id = peer_id
        self._fault = fault
        self.address = address
        self._cluster_id = cluster_id
        self._directory_id = directory_id
        self._queue: asyncio.Queue[RaftMessage] = asyncio.Queue(maxsize=queue_size)
        self._rpc_timeout_s = rpc_timeout_s
        self._backoff_min_s = backoff_min_s
        self._backoff_max_s = backoff_max_s
        self._channel = grpc.aio.insecure_channel(address, options=[
            ("grpc.max_send_message_length", 64 * 1024 * 1024),
            ("grpc.initial_reconnect_backoff_ms", 50), ("grpc.max_reconnect_backoff_ms", 1000)])
        self._stub = pb_grpc.RaftServiceStub(self._channel)
        self._task: asyncio.Task | None = None
        self.sent = 0
        self.dropped = 0
        self.rejected_cluster_id = 0

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name=f"raft-send-{self.peer_id}")

    def send(self, message: RaftMessage) -> None:
        """Queues ``message``; drops it (Raft resends) when the queue is full."""
        if self._fault.blocks(self.peer_id):
            return
        try:
            self._queue.put_nowait(message)
        except asyncio.QueueFull:
            self.dropped += 1

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        await self._channel.close()

    async def _run(self) -> None:
        backoff_s = self._backoff_min_s
        while True:
            message = await self._queue.get()
            envelope = to_envelope(message, cluster_id=self._cluster_id, directory_id=self._directory_id)
            try:
                ack = await self._stub.Send(envelope, timeout=self._rpc_timeout_s)
            except grpc.aio.AioRpcError as error:
                self.dropped += 1 + self._drain()
                log.debug("raft peer %d at %s unreachable (%s); retrying in %.2fs",
                          self.peer_id, self.address, error.code(), backoff_s)
                await asyncio.sleep(backoff_s)
                backoff_s = min(backoff_s * 2, self._backoff_max_s)
                continue
            backoff_s = self._backoff_min_s
            self.sent += 1
            if ack.error_code == ErrorCode.INCONSISTENT_CLUSTER_ID:
                self.rejected_cluster_id += 1
                log.error("raft peer %d at %s rejected our cluster id %r (INCONSISTENT_CLUSTER_ID)",
                          self.peer_id, self.address, self._cluster_id)
            elif ack.error_code != ErrorCode.NONE:
                log.error("raft peer %d at %s refused a message: %s", self.peer_id, self.address,
                          ErrorCode(ack.error_code).name)

    def _drain(self) -> int:
        """Drops everything queued (the peer is down: these would be stale by the time it is back)."""
        count = 0
        while not self._queue.empty():
            self._queue.get_nowait()
            count += 1
        return count
