"""Cluster mode: this node as a metadata-quorum voter, (maybe) the active controller, and a broker of the image.

Switched on by a non-empty ``controller.quorum.voters`` (Kafka syntax ``1@host:port,...``); each node's own
entry is the address of its inter-node gRPC server (Raft and the controller service share it).  Every node:

* runs the ``RaftDriver`` and replays COMMITTED metadata records into a ``MetadataImage`` (one Raft entry
  carries a batch of records, each an ApiMessageAndVersion frame, each prefixed by its uvarint length);
* applies each delta's ``local_changes(node_id)`` to its ``ReplicaManager`` (open/lead/follow/delete);
* registers with the active controller and heartbeats every ``HEARTBEAT_INTERVAL_MS`` with the metadata
  offset it has applied (the controller unfences it once it has caught up with its own registration).

The Raft leader is the active controller.  It decides from its committed image (``QuorumController``), proposes
the records, and answers only after they commit and have been replayed here.  Decisions are serialised by one
lock and each waits for the previous one's commit: simpler than Kafka's pipelined replay-before-commit, and
metadata writes are rare.  After winning an election the controller decides nothing until everything the log
held when it became leader is applied.

Broker -> controller calls travel over one generic gRPC method, ``/cluster.v1.ControllerService/Call``, whose
request and response bodies are JSON (operation name + arguments).  Using a generic handler on the Raft gRPC
server keeps one port per node and needs no generated code; the cost is no schema for these few calls.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
import uuid

import grpc

from cluster.broker.group_coordinator import OFFSETS_TOPIC
from cluster.broker.metadata_store import META_PROPERTIES, TopicRecord
from cluster.broker.raft_driver import NotLeaderError, RaftDriver, parse_voters
from cluster.core.errors import ErrorCode, KafkaError
from cluster.metadata import (
    BrokerEndpoint,
    ControllerConfig,
    MetadataDelta,
    MetadataImage,
    NewTopic,
    QuorumController,
    decode_record,
    encode_record,
)
from cluster.raft.config import RaftConfig
from cluster.raft.state import Role
from cluster.storage.raft_store import RaftStore
from cluster.wire.primitives import read_uvarint, write_uvarint

log = logging.getLogger("cluster.broker.cluster")

CONTROLLER_METHOD = "/cluster.v1.ControllerService/Call"
HEARTBEAT_INTERVAL_MS = 2000
CONTROLLER_CALL_TIMEOUT_MS = 10_000
METADATA_DIR = "__cluster_metadata-0"
# Snapshots of the metadata log are not built from the image yet, and an empty snapshot would drop committed
# metadata when the log is compacted, so compaction is switched off: the log only grows (metadata writes are
# rare).  Building snapshots as records of the image is the fix (issue 3, part 1).
METADATA_RAFT_CONFIG = RaftConfig(snapshot_interval_entries=2**62)


def wall_ms() -> int:
    return int(time.time() * 1000)


# == entry framing ====================================================================================================
def encode_batch(records) -> bytes:
    out = bytearray()
    for record in records:
        frame = encode_record(record)
        out += write_uvarint(len(frame))
        out += frame
    return bytes(out)


def decode_batch(payload: bytes) -> list:
    records, pos = [], 0
    while pos < len(payload):
        size, pos = read_uvarint(payload, pos)
        record, _version = decode_record(memoryview(payload)[pos:pos + size])
        records.append(record)
        pos += size
    return records


def read_cluster_id(log_dir: str) -> str:
    """The cluster id a formatted log directory belongs to (``meta.properties``, written by ``format``)."""
    path = os.path.join(log_dir, META_PROPERTIES)
    if not os.path.exists(path):
        raise KafkaError(ErrorCode.INCONSISTENT_CLUSTER_ID,
                         f"{path} is missing: format the log directory with a cluster id first "
                         "(kraftpy local-cluster does this; see write_meta_properties)")
    with open(path, encoding="utf-8") as handle:
        properties = dict(line.split("=", 1) for line in handle.read().splitlines() if "=" in line)
    cluster_id = properties.get("cluster.id", "")
    if not cluster_id:
        raise KafkaError(ErrorCode.INCONSISTENT_CLUSTER_ID, f"{path} names no cluster.id")
    return cluster_id


def write_meta_properties(log_dir: str, cluster_id: str, node_id: int) -> None:
    """Kafka's ``kafka-storage format``: names the cluster and node of a fresh log directory."""
    os.makedirs(log_dir, exist_ok=True)
    path = os.path.join(log_dir, META_PROPERTIES)
    if not os.path.exists(path):
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(f"version=1\ncluster.id={cluster_id}\nnode.id={node_id}\n")


# == the image as a MetadataStore look-alike (what the single-node handlers read) =====================================
class ImageTopicStore:
    """``topics``/``cluster_id``/``topic_by_id`` of ``MetadataStore``, derived from the committed image."""

    def __init__(self, cluster_id: str) -> None:
        self.cluster_id = cluster_id
        self.topics: dict[str, TopicRecord] = {}
        self._by_id: dict[uuid.UUID, TopicRecord] = {}

    def refresh(self, image: MetadataImage) -> None:
        topics = {}
        for topic in image.topics.by_id.values():
            first = topic.partitions.get(0)
            topics[topic.name] = TopicRecord(
                name=topic.name, topic_id=topic.topic_id, num_partitions=len(topic.partitions),
                replication_factor=len(first.replicas) if first else 0,
                configs=dict(image.configs.topic_config(topic.name)))
        self.topics = topics
        self._by_id = {record.topic_id: record for record in topics.values()}

    def topic_by_id(self, topic_id: uuid.UUID) -> TopicRecord | None:
        return self._by_id.get(topic_id)


class NotControllerError(KafkaError):
    def __init__(self, leader_id: int | None) -> None:
        super().__init__(ErrorCode.NOT_CONTROLLER, f"not the active controller (leader {leader_id})")
        self.leader_id = leader_id


# == the runtime ======================================================================================================
class ClusterRuntime:
    def __init__(self, broker) -> None:
        self.broker = broker
        config = broker.config
        self.node_id = config.node_id
        self.voters = parse_voters(",".join(config.get("controller.quorum.voters")))
        if self.node_id not in self.voters:
            raise KafkaError(ErrorCode.INVALID_REQUEST,
                             f"controller.quorum.voters has no entry for node.id={self.node_id}")
        self.cluster_id = read_cluster_id(config.log_dir)
        self.store = ImageTopicStore(self.cluster_id)
        self.image: MetadataImage = MetadataImage.EMPTY  # type: ignore[attr-defined]
        self.controller = QuorumController(ControllerConfig(
            num_partitions=config.get("num.partitions"),
            default_replication_factor=config.get("default.replication.factor"),
            unclean_leader_election_enable=bool(config.get("unclean.leader.election.enable")),
            delete_topic_enable=bool(config.get("delete.topic.enable"))))
        self.applied_hw = 0                # every entry below this offset has been replayed here
        self.incarnation_id = uuid.uuid4()
        self.broker_epoch = -1
        self.fenced = True
        self._leader_start_offset = 0
        self._lock = asyncio.Lock()
        self._applied = asyncio.Event()
        self._channels: dict[int, grpc.aio.Channel] = {}
        self._tasks: list[asyncio.Task] = []
        self._producer_ids: tuple[int, int] = (0, 0)   # next, end of this broker's current block
        self.driver: RaftDriver | None = None

    # -- lifecycle -----------------------------------------------------------------------------------------------
    async def start(self) -> None:
        raft_dir = os.path.join(self.broker.config.log_dir, METADATA_DIR)
        raft_store = await asyncio.to_thread(RaftStore, raft_dir, cluster_id=self.cluster_id, node_id=self.node_id)
        self.driver = RaftDriver(self.node_id, self.voters, raft_store, cluster_id=self.cluster_id,
                                 config=METADATA_RAFT_CONFIG, on_commit=self._on_commit, on_leader_change=self._on_leader_change,
                                 listen_host=self.voters[self.node_id].host)
        # One port per node: the controller service rides on the Raft gRPC server (see module docstring).
        handler = grpc.method_handlers_generic_handler("cluster.v1.ControllerService", {
            "Call": grpc.unary_unary_rpc_method_handler(self._serve_call)})
        self.driver.add_generic_rpc_handlers((handler,))
        await self.driver.start()
        log.info("metadata quorum member %d started (cluster id %s, voters %s)", self.node_id, self.cluster_id,
                 ",".join(f"{v.node_id}@{v.address}" for v in self.voters.values()))

    def start_broker_lifecycle(self) -> None:
        """After the Kafka listener is bound (the registration carries its port)."""
        self._tasks.append(asyncio.create_task(self._lifecycle(), name="broker-lifecycle"))
        self._tasks.append(asyncio.create_task(self._controller_ticks(), name="controller-ticks"))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        if self.driver is not None:
            await self.driver.stop()
        for channel in self._channels.values():
            await channel.close()

    # -- committed metadata -> image -> local replicas -------------------------------------------------------------
    def _on_commit(self, entries, high_watermark: int) -> None:
        if entries:
            delta = MetadataDelta(self.image)
            for entry in entries:
                for record in decode_batch(entry.payload):
                    delta.replay(record)
                delta.replay(_NO_OP, entry.offset)
            self.image = delta.apply()
            self.controller.image = self.image
            self.store.refresh(self.image)
            changes = delta.local_changes(self.node_id)
            self.broker.replica_manager.apply_local_changes(changes, self.image)
            self._load_offsets_partitions(changes)
        self.applied_hw = max(self.applied_hw, high_watermark)
        self._applied.set()
        self._applied = asyncio.Event()

    def _load_offsets_partitions(self, changes) -> None:
        """The group coordinator serves the ``__consumer_offsets`` partitions this broker leads.

        Loaded once, when the topic first appears here (RF=1 placement does not move); leadership moving
        later (failover, RF>1) is not followed yet: those groups answer NOT_COORDINATOR/COORDINATOR_NOT_AVAILABLE.
        """
        runtime = self.broker.group_coordinator
        topic = self.image.topics.get_topic(OFFSETS_TOPIC)
        if runtime is None or topic is None or runtime.coordinator.num_partitions is not None:
            return
        runtime._load_topic(len(topic.partitions))

    def _on_leader_change(self, leader_id: int | None, epoch: int) -> None:
        log.info("metadata quorum leader is now %s (epoch %d)", leader_id, epoch)
        if leader_id == self.node_id and self.driver is not None:
            self._leader_start_offset = self.driver.store.log_end_offset
            self.controller.reset_sessions(wall_ms())

    async def _wait_applied(self, end_offset: int, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while self.applied_hw < end_offset:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise KafkaError(ErrorCode.REQUEST_TIMED_OUT, f"metadata offset {end_offset} not applied in time")
            try:
                await asyncio.wait_for(self._applied.wait(), min(remaining, 0.05))
            except TimeoutError:
                pass

    # -- the active controller -------------------------------------------------------------------------------------
    def is_active_controller(self) -> bool:
        return self.driver is not None and self.driver.role is Role.LEADER

    async def _decide(self, decide):
        """Runs ``decide(controller) -> ControllerResult`` and commits its records; returns the response."""
        async with self._lock:
            if not self.is_active_controller():
                raise NotControllerError(self.driver.leader_id)
            await self._wait_applied(self._leader_start_offset, CONTROLLER_CALL_TIMEOUT_MS / 1000)
            result = decide(self.controller)
            if result.records:
                try:
                    offset = await self.driver.propose(encode_batch(result.records), CONTROLLER_CALL_TIMEOUT_MS)
                except NotLeaderError as exc:
                    raise NotControllerError(exc.leader_id) from None
                except TimeoutError:
                    raise KafkaError(ErrorCode.REQUEST_TIMED_OUT, "metadata records did not commit in time") from None
                await self._wait_applied(offset + 1, CONTROLLER_CALL_TIMEOUT_MS / 1000)
            return result.response

    async def execute(self, op: str, args: dict):
        """One controller operation (on the active controller); returns a JSON-able result."""
        now = wall_ms()
        if op == "register":
            endpoints = [BrokerEndpoint(name, host, port) for name, host, port in args["endpoints"]]
            error, epoch = await self._decide(lambda c: c.register_broker(
                args["broker_id"], uuid.UUID(args["incarnation_id"]), endpoints, args.get("rack"), now,
                max(self.driver.store.log_end_offset, 0)))
            return {"error_code": int(error), "broker_epoch": epoch}
        if op == "heartbeat":
            result = await self._decide(lambda c: c.broker_heartbeat(
                args["broker_id"], args["broker_epoch"], args["offset"], False, bool(args.get("shutdown")), now))
            return {"error_code": int(result.error_code), "fenced": result.is_fenced,
                    "should_shutdown": result.should_shutdown, "caught_up": result.is_caught_up}
        if op == "create_topics":
            topics = [NewTopic(t["name"], t["num_partitions"], t["replication_factor"],
                               {int(k): v for k, v in t["assignments"].items()} if t.get("assignments") else None,
                               t.get("configs") or {}) for t in args["topics"]]
            results = await self._decide(lambda c: c.create_topics(topics, bool(args.get("validate_only"))))
            return [{"name": r.name, "error_code": int(r.error_code), "error_message": r.error_message,
                     "topic_id": str(r.topic_id) if r.topic_id else None, "num_partitions": r.num_partitions,
                     "replication_factor": r.replication_factor} for r in results]
        if op == "delete_topics":
            results = await self._decide(lambda c: c.delete_topics(args["names"]))
            return {name: [int(code), message] for name, (code, message) in results.items()}
        if op == "create_partitions":
            code, message = await self._decide(lambda c: c.create_partitions(
                args["name"], args["count"], args.get("assignments")))
            return [int(code), message]
        if op == "allocate_producer_ids":
            code, start, length = await self._decide(lambda c: c.allocate_producer_ids(
                args["broker_id"], args["broker_epoch"]))
            return [int(code), start, length]
        if op == "describe_quorum":
            if not self.is_active_controller():
                raise NotControllerError(self.driver.leader_id)
            info = self.driver.quorum_info()
            return {"leader_id": info.leader_id, "leader_epoch": info.leader_epoch,
                    "high_watermark": info.high_watermark,
                    "voters": [[r.replica_id, r.log_end_offset, r.last_fetch_ms] for r in info.voters],
                    "observers": [[r.replica_id, r.log_end_offset, r.last_fetch_ms] for r in info.observers]}
        raise KafkaError(ErrorCode.INVALID_REQUEST, f"unknown controller operation {op!r}")

    async def _serve_call(self, request: bytes, context) -> bytes:
        try:
            message = json.loads(request)
            if message.get("cluster_id") != self.cluster_id and message.get("op") != "describe_quorum":
                log.error("controller call %s from a node of cluster %r refused: this is cluster %r",
                          message.get("op"), message.get("cluster_id"), self.cluster_id)
                return _error_reply(ErrorCode.INCONSISTENT_CLUSTER_ID, "wrong cluster id")
            result = await self.execute(message["op"], message.get("args") or {})
            return json.dumps({"error_code": 0, "result": result}).encode()
        except NotControllerError as exc:
            return _error_reply(exc.error_code, exc.message, leader_id=exc.leader_id)
        except KafkaError as exc:
            return _error_reply(exc.error_code, exc.message)

    # -- calling the active controller (from any node) -------------------------------------------------------------
    async def call_controller(self, op: str, args: dict, timeout_ms: int = CONTROLLER_CALL_TIMEOUT_MS):
        """Runs ``op`` on the active controller, wherever it is; retries while there is none.

        Raises KafkaError(NOT_CONTROLLER) (retriable) when no controller answered within ``timeout_ms``.
        """
        deadline = time.monotonic() + timeout_ms / 1000
        last_error = "no metadata quorum leader"
        while time.monotonic() < deadline:
            leader = self.driver.leader_id if self.driver else None
            try:
                if leader == self.node_id:
                    return await self.execute(op, args)
                if leader is not None:
                    return await self._remote_call(leader, op, args, deadline - time.monotonic())
            except NotControllerError as exc:
                last_error = exc.message
            except grpc.aio.AioRpcError as exc:
                last_error = f"controller {leader} unreachable: {exc.code()}"
            await asyncio.sleep(0.05)
        raise KafkaError(ErrorCode.NOT_CONTROLLER, f"no active controller answered {op}: {last_error}")

    async def _remote_call(self, leader: int, op: str, args: dict, timeout_s: float):
        channel = self._channels.get(leader)
        if channel is None:
            channel = self._channels[leader] = grpc.aio.insecure_channel(self.voters[leader].address)
        call = channel.unary_unary(CONTROLLER_METHOD)
        body = json.dumps({"cluster_id": self.cluster_id, "op": op, "args": args}).encode()
        reply = json.loads(await call(body, timeout=max(timeout_s, 0.1)))
        code = reply["error_code"]
        if code == ErrorCode.NOT_CONTROLLER:
            raise NotControllerError(reply.get("leader_id"))
        if code != 0:
            raise KafkaError(ErrorCode(code), reply.get("message") or "")
        return reply["result"]

    # -- broker lifecycle: register, heartbeat --------------------------------------------------------------------
    def _endpoints(self) -> list[tuple[str, str, int]]:
        endpoints = []
        for index, (name, host, port) in enumerate(self.broker.config.advertised_listeners):
            if port == 0 and index < len(self.broker.bound_ports):
                port = self.broker.bound_ports[index]
            endpoints.append((name or "PLAINTEXT", host or "localhost", port))
        return endpoints

    async def _lifecycle(self) -> None:
        while True:
            try:
                if self.broker_epoch < 0:
                    await self._register()
                else:
                    await self._heartbeat()
            except asyncio.CancelledError:
                raise
            except KafkaError as exc:
                log.warning("broker lifecycle: %s", exc)
            except Exception:  # noqa: BLE001 -- the lifecycle loop must outlive any one failure
                log.exception("broker lifecycle call failed")
            await asyncio.sleep((HEARTBEAT_INTERVAL_MS if not self.fenced else 200) / 1000)

    async def _register(self) -> None:
        reply = await self.call_controller("register", {
            "broker_id": self.node_id, "incarnation_id": str(self.incarnation_id),
            "endpoints": self._endpoints(), "rack": self.broker.config.get("broker.rack")})
        if reply["error_code"] != 0:
            log.error("broker registration refused: %s", ErrorCode(reply["error_code"]).name)
            return
        self.broker_epoch = reply["broker_epoch"]
        log.info("registered with the controller: broker epoch %d", self.broker_epoch)

    async def _heartbeat(self) -> None:
        reply = await self.call_controller("heartbeat", {
            "broker_id": self.node_id, "broker_epoch": self.broker_epoch, "offset": self.applied_hw - 1})
        code = reply["error_code"]
        if code in (ErrorCode.STALE_BROKER_EPOCH, ErrorCode.BROKER_ID_NOT_REGISTERED):
            log.warning("heartbeat: %s; registering again", ErrorCode(code).name)
            self.broker_epoch = -1
            self.fenced = True
            return
        if self.fenced and not reply["fenced"]:
            log.info("unfenced by the controller (metadata offset %d)", self.applied_hw - 1)
        self.fenced = reply["fenced"]

    async def _controller_ticks(self) -> None:
        """On the active controller: fence brokers whose session expired."""
        while True:
            await asyncio.sleep(0.5)
            if not self.is_active_controller():
                continue
            try:
                fenced = await self._decide(lambda c: c.tick(wall_ms()))
                if fenced:
                    log.warning("fenced brokers %s: session expired", list(fenced))
            except KafkaError as exc:
                log.debug("controller tick: %s", exc)

    # -- what handlers ask ---------------------------------------------------------------------------------------
    def live_brokers(self) -> list[tuple[int, str, int, str | None]]:
        brokers = []
        for broker_id in self.image.cluster.unfenced_broker_ids():
            registration = self.image.cluster.brokers[broker_id]
            if registration.endpoints:
                endpoint = registration.endpoints[0]
                brokers.append((broker_id, endpoint.host, endpoint.port, registration.rack))
        return brokers

    def broker_address(self, broker_id: int) -> tuple[str, int] | None:
        registration = self.image.cluster.brokers.get(broker_id)
        if registration is None or not registration.endpoints:
            return None
        return registration.endpoints[0].host, registration.endpoints[0].port

    async def next_producer_id(self) -> int:
        next_id, end = self._producer_ids
        if next_id >= end:
            code, start, length = await self.call_controller(
                "allocate_producer_ids", {"broker_id": self.node_id, "broker_epoch": self.broker_epoch})
            if code != 0:
                raise KafkaError(ErrorCode(code), "producer id block refused")
            next_id, end = start, start + length
        self._producer_ids = (next_id + 1, end)
        return next_id


def _error_reply(code: ErrorCode, message: str, **extra) -> bytes:
    return json.dumps({"error_code": int(code), "message": message, **extra}).encode()


def _no_op():
    from cluster.wire.metadata_records import no_op_record
    return no_op_record.NoOpRecord()


_NO_OP = _no_op()
