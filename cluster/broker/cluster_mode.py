"""The metadata quorum member every node runs: a voter, (maybe) the active controller, and a broker of the image.

Every node runs it.  ``controller.quorum.voters`` (Kafka syntax ``1@host:port,...``) names the voters; each
node's own entry is the address of its inter-node gRPC server (Raft and the controller service share it).  A node
without voters is a one-voter quorum of itself: its server binds a free loopback port (nobody else calls it; its
own controller calls run in-process), it elects itself at once, and a fresh log directory is formatted with a new
cluster id, as the single-node broker always did.  Every node:

* runs the ``RaftDriver`` and replays COMMITTED metadata records into a ``MetadataImage`` (one Raft entry
  carries a batch of records, each an ApiMessageAndVersion frame, each prefixed by its uvarint length);
* applies each delta's ``local_changes(node_id)`` to its ``ReplicaManager`` (open/lead/follow/delete);
* snapshots the image every ``metadata.log.max.snapshot.interval.entries`` entries (then Raft drops the log below
  it), and loads a snapshot -- its own on restart, the leader's when it fell behind the leader's log start --
  through the same delta path (``snapshot_delta`` from the current image, so local changes are exact);
* registers with the active controller and heartbeats every ``broker.heartbeat.interval.ms`` with the metadata
  offset it has applied (the controller unfences it once it has caught up with its own registration).

The Raft leader is the active controller.  It decides from its committed image (``QuorumController``), proposes
the records, and answers only after they commit and have been replayed here.  Decisions are serialised by one
lock and each waits for the previous one's commit: simpler than Kafka's pipelined replay-before-commit, and
metadata writes are rare.  After winning an election the controller decides nothing until everything the log
held when it became leader is applied.

Broker -> controller calls travel over the typed ``cluster.v1.ControllerService`` (proto/cluster/v1/controller.proto,
one RPC per operation), registered on the Raft gRPC server so that each node keeps one inter-node port.  Here
they stay operations (an op name, a dict of arguments, a plain result): cluster/transport/controller_grpc.py
converts to and from the proto messages.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import time
import uuid

import grpc

from cluster.broker.group_coordinator import OFFSETS_TOPIC
from cluster.broker.raft_driver import NotLeaderError, RaftDriver, Voter, parse_voters
from cluster.broker.replica_fetcher import ReplicaFetcherManager
from cluster.broker.topic_view import ImageTopicStore
from cluster.broker.waits import stop_tasks, wait_event
from cluster.core.clock import monotonic_ms, wall_clock_ms
from cluster.core.errors import ErrorCode, KafkaError, invariant
from cluster.metadata import (
    BrokerEndpoint,
    ControllerConfig,
    MetadataDelta,
    MetadataImage,
    NewTopic,
    QuorumController,
    decode_record,
    decode_snapshot,
    encode_record,
    encode_snapshot,
    snapshot_delta,
)
from cluster.raft.config import RaftConfig
from cluster.raft.log import SnapshotId
from cluster.raft.state import Role
from cluster.replication import AlterPartitionOutcome, IsrChangeKind, PendingIsrChange
from cluster.storage.meta_properties import load_cluster_id
from cluster.storage.raft_store import RaftStore
from cluster.transport.controller_grpc import ControllerClient, controller_rpc_handlers
from cluster.transport.raft_grpc import FaultFilter
from cluster.transport.replica_fetch_grpc import (
    ReplicaFetchRequest,
    ReplicaFetchResponse,
    replica_fetch_rpc_handlers,
)
from cluster.wire.primitives import read_uvarint, write_uvarint

log = logging.getLogger("cluster.broker.cluster")

CONTROLLER_CALL_TIMEOUT_MS = 10_000
# SIGTERM: how long the broker waits for the controller to move its partition leaderships before it stops anyway
# (its session timeout fences it later).  Bounded so that a node without a quorum still stops promptly.
CONTROLLED_SHUTDOWN_TIMEOUT_MS = 3000
# Start-up: how long the Kafka listener waits for this node to apply the committed metadata (wait_caught_up), and
# how long it waits in all before it accepts clients even though this broker is not registered and unfenced
# (wait_registered; no quorum, say).
CATCH_UP_TIMEOUT_S = 10.0
LEADER_WAIT_S = 2.0
SERVE_WAIT_TIMEOUT_S = 10.0
STOP_TASKS_TIMEOUT_S = 1.0
# Start-up waits re-check after every applied commit, and at least this often (leadership and our own
# registration also change between commits).
RECHECK_S = 0.1
METADATA_DIR = "__cluster_metadata-0"
SOLE_VOTER_HOST = "127.0.0.1"   # a one-voter quorum's inter-node server: loopback, a free port


def metadata_raft_config(config) -> RaftConfig:
    """The Raft config of the metadata quorum: Kafka's timeouts, and a snapshot of the image (records written by
    cluster/metadata/snapshot.py) every ``metadata.log.max.snapshot.interval.entries`` committed entries, after
    which the log below it is dropped."""
    return RaftConfig(snapshot_interval_entries=config.get("metadata.log.max.snapshot.interval.entries"),
                      election_timeout_ms=config.get("controller.quorum.election.timeout.ms"),
                      fetch_timeout_ms=config.get("controller.quorum.fetch.timeout.ms"),
                      # The long-poll must fit in the fetch timeout twice over (RaftConfig's rule).
                      fetch_max_wait_ms=min(500, config.get("controller.quorum.fetch.timeout.ms") // 4))


def wall_ms() -> int:
    return wall_clock_ms()


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


class ControllerMovedError(KafkaError):
    """A controller call abandoned because the quorum leader changed while it was under way."""

    def __init__(self, old_leader_id: int, new_leader_id: int | None) -> None:
        super().__init__(ErrorCode.NOT_CONTROLLER,
                         f"quorum leader moved from {old_leader_id} to {new_leader_id} during the call")


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
        configured = config.get("controller.quorum.voters")
        # No voters configured: a one-voter quorum of this node, its port chosen when the server binds (start).
        self.voters = (parse_voters(",".join(configured)) if configured
                       else {self.node_id: Voter(self.node_id, SOLE_VOTER_HOST, 0)})
        if self.node_id not in self.voters:
            raise KafkaError(ErrorCode.INVALID_REQUEST,
                             f"controller.quorum.voters has no entry for node.id={self.node_id}")
        self.cluster_id = load_cluster_id(config.log_dir, self.node_id, format_if_missing=self.is_sole_voter)
        self.store = ImageTopicStore(self.cluster_id)
        self.image: MetadataImage = MetadataImage.EMPTY  # type: ignore[attr-defined]
        self.controller = QuorumController(ControllerConfig(
            broker_session_timeout_ms=config.get("broker.session.timeout.ms"),
            num_partitions=config.get("num.partitions"),
            default_replication_factor=config.get("default.replication.factor"),
            unclean_leader_election_enable=bool(config.get("unclean.leader.election.enable")),
            delete_topic_enable=bool(config.get("delete.topic.enable"))), rng=random.SystemRandom())
        self.applied_hw = 0                # every entry below this offset has been replayed here
        self.incarnation_id = uuid.uuid4()
        self.broker_epoch = -1
        self.fenced = True
        self._leader_start_offset = 0
        self._lock = asyncio.Lock()
        self._applied = asyncio.Event()
        self._channels: dict[int, grpc.aio.Channel] = {}
        self._controller_clients: dict[int, ControllerClient] = {}
        self._tasks: list[asyncio.Task] = []
        self._producer_ids: tuple[int, int] = (0, 0)   # next, end of this broker's current block
        self.driver: RaftDriver | None = None
        self.new_cluster = False   # our metadata log was empty at start: see is_serving_ready
        # Test-only link cutter (kraftpy.test.fault.file); drops nothing unless the key names a file.
        self.fault = FaultFilter(config.get("kraftpy.test.fault.file"))
        self._refused_with: ErrorCode | None = None   # last registration refusal, logged once
        self.heartbeat_interval_ms = config.get("broker.heartbeat.interval.ms")
        # One heartbeat attempt may take a third of a session: a controller that does not answer by then is
        # given up for the next quorum leader well before the session runs out.
        self.heartbeat_attempt_timeout_ms = max(config.get("broker.session.timeout.ms") // 3, 1)
        self._controller_moved = asyncio.Event()   # set (and replaced) whenever the quorum leader changes
        # A deliberate bug for the fault harnesses (kraftpy.test.broken=short_session_on_new_controller): the whole
        # failover of before issue 16, half a session on a new controller and brokers that wait on a frozen
        # controller until their call's deadline.
        self._waits_on_a_moved_controller = "short_session_on_new_controller" in config.get("kraftpy.test.broken")
        # Partition replication: followers fetch from leaders over the same inter-node port (replication.proto).
        self.fetchers = ReplicaFetcherManager(
            self.node_id, self.cluster_id, self._inter_node_address, lambda: self.broker_epoch, config,
            wall_ms, self.fault)

    @property
    def is_sole_voter(self) -> bool:
        """The quorum is this node alone (no ``controller.quorum.voters``): a single-node cluster."""
        return set(self.voters) == {self.node_id}

    # -- lifecycle -----------------------------------------------------------------------------------------------
    async def start(self) -> None:
        replica_manager = self.broker.replica_manager
        replica_manager.fetchers = self.fetchers
        replica_manager.registered_broker_epoch = self._registered_broker_epoch
        replica_manager.send_isr_change = self._send_isr_change
        raft_dir = os.path.join(self.broker.config.log_dir, METADATA_DIR)
        raft_store = await asyncio.to_thread(RaftStore, raft_dir, cluster_id=self.cluster_id, node_id=self.node_id)
        self.driver = RaftDriver(self.node_id, self.voters, raft_store, cluster_id=self.cluster_id,
                                 config=metadata_raft_config(self.broker.config), on_commit=self._on_commit,
                                 take_snapshot=self._take_snapshot, load_snapshot=self._load_snapshot,
                                 on_leader_change=self._on_leader_change,
                                 listen_host=self.voters[self.node_id].host, fault=self.fault)
        # One port per node: the controller service rides on the Raft gRPC server (see module docstring).
        self.driver.add_generic_rpc_handlers(controller_rpc_handlers(self._serve_call))
        self.driver.add_generic_rpc_handlers(replica_fetch_rpc_handlers(self._serve_replica_fetch))
        self.new_cluster = raft_store.log_end_offset <= 0
        me = self.voters[self.node_id]
        if me.port == 0:   # a one-voter quorum: the port its server bound
            self.voters[self.node_id] = Voter(self.node_id, me.host, self.driver.listen_port)
        await self.driver.start()
        log.info("metadata quorum member %d started (cluster id %s, voters %s)", self.node_id, self.cluster_id,
                 ",".join(f"{v.node_id}@{v.address}" for v in self.voters.values()))

    async def wait_caught_up(self, timeout_s: float = CATCH_UP_TIMEOUT_S) -> bool:
        """Before the Kafka listeners are bound and the group coordinator loads: waits until a leader is known and
        its high watermark is applied, so that stray logs are told apart from ours (``applied_leaders_metadata``).

        Kafka's broker likewise starts only after its initial metadata catch-up.  Bounded: without a quorum it
        gives up after ``timeout_s`` (returns False), or after ``LEADER_WAIT_S`` if no leader is known by then (the
        others may be starting one by one after us); ``wait_registered`` then still keeps clients out for a while.
        A node with an empty metadata log (a new cluster) does not wait here: its peers are as empty as it is.
        """
        driver = self.driver
        if driver is None or driver.store.log_end_offset <= 0:
            return True
        started = time.monotonic()
        if (await self._wait_until(lambda: driver.leader_id is not None, started + LEADER_WAIT_S)
                and await self._wait_until(self.applied_leaders_metadata, started + timeout_s)):
            return True
        log.warning("metadata not caught up with a quorum leader after %.1f s; going on without it",
                    time.monotonic() - started)
        return False

    async def wait_registered(self, timeout_s: float = SERVE_WAIT_TIMEOUT_S) -> bool:
        """After ``start_broker_lifecycle``, before the Kafka listeners accept: waits until ``is_serving_ready``.

        So a client never meets this broker while its Metadata would list no brokers or no controller (librdkafka
        calls that a partial response, and its AdminClient then waits for a controller until it times out):
        Kafka's broker too serves only once it has caught up and its controller has unfenced it.  Bounded: after
        ``timeout_s`` (no quorum, or the controller refuses us) it logs and returns False, and the listeners
        open anyway; Metadata then lists at least this broker (``metadata_brokers``).
        """
        started = time.monotonic()
        if await self._wait_until(self.is_serving_ready, started + timeout_s):
            log.info("registered, unfenced and caught up after %d ms: serving clients",
                     (time.monotonic() - started) * 1000)
            return True
        log.warning("not registered and unfenced by a controller after %.1f s (quorum leader %s); serving clients "
                    "anyway", time.monotonic() - started, self.driver.leader_id if self.driver else None)
        return False

    def is_serving_ready(self) -> bool:
        """This incarnation is registered and unfenced in the committed image, and a quorum leader is known.

        In a new cluster (our metadata log was empty at start) also every voter is a live broker (every node is a
        broker here): the nodes start together, a fraction of a second apart, and a client's first look at the
        cluster then shows all of it -- it can create a topic with a replication factor of all the nodes at once.
        """
        registration = self.image.cluster.brokers.get(self.node_id)
        if not (self.driver is not None and self.driver.leader_id is not None and self.broker_epoch >= 0
                and registration is not None and registration.broker_epoch == self.broker_epoch
                and not registration.fenced):
            return False
        return not self.new_cluster or set(self.voters) <= set(self.image.cluster.unfenced_broker_ids())

    async def wait_for_metadata(self, predicate, timeout_s: float) -> bool:
        """Waits until ``predicate()`` holds over the applied metadata (True), or ``timeout_s`` passes (False);
        woken by every applied commit, not by polling."""
        return await self._wait_until(predicate, time.monotonic() + timeout_s)

    async def _wait_until(self, predicate, deadline: float) -> bool:
        """Waits until ``predicate()`` holds (True) or the monotonic ``deadline`` passes (False)."""
        while not predicate():
            remaining_s = deadline - time.monotonic()
            if remaining_s <= 0:
                return False
            await wait_event(self._applied, min(remaining_s, RECHECK_S))
        return True

    def applied_leaders_metadata(self) -> bool:
        """True when a quorum leader is known and every entry it committed (as far as we know) is applied here;
        an empty or unreachable quorum never counts (what we do not know must not delete data)."""
        driver = self.driver
        return (driver is not None and driver.leader_id is not None and driver.high_watermark > 0
                and self.applied_hw >= driver.high_watermark)

    def start_broker_lifecycle(self) -> None:
        """After the Kafka listener is bound (the registration carries its port)."""
        self._tasks.append(asyncio.create_task(self._lifecycle(), name="broker-lifecycle"))
        self._tasks.append(asyncio.create_task(self._controller_ticks(), name="controller-ticks"))
        self._tasks.append(asyncio.create_task(self.broker.replica_manager.run_isr_expiration(),
                                               name="isr-expiration"))

    async def controlled_shutdown(self, timeout_ms: int = CONTROLLED_SHUTDOWN_TIMEOUT_MS) -> bool:
        """First step of a SIGTERM, while the Kafka listeners still serve: hands over quorum leadership at once
        (so the others need not wait for a fetch timeout) and leaves elections to the others, then asks the
        controller, by heartbeats with want_shutdown, to move this broker's partition leaderships until it answers
        that we may stop.

        Bounded by ``timeout_ms``; returns False when the controller did not agree in time (no quorum, say).
        """
        if self.is_sole_voter:
            return True   # nobody to hand quorum or partition leadership to
        for task in self._tasks:
            if task.get_name() == "broker-lifecycle":
                task.cancel()   # its heartbeats would race ours
        if self.driver is not None:
            if self.driver.role is Role.LEADER:
                log.info("controlled shutdown: resigning metadata quorum leadership (epoch %d)", self.driver.epoch)
            self.driver.begin_shutdown()   # and from now on never campaign, vote or lead (RaftNode.begin_shutdown)
        if self.broker_epoch < 0:
            return True   # never registered: nothing to move
        started = time.monotonic()
        deadline = started + timeout_ms / 1000
        while (remaining_ms := int((deadline - time.monotonic()) * 1000)) > 0:
            try:
                reply = await self.call_controller("heartbeat", {
                    "broker_id": self.node_id, "broker_epoch": self.broker_epoch, "offset": self.applied_hw - 1,
                    "shutdown": True}, timeout_ms=remaining_ms)
            except KafkaError as exc:
                log.warning("controlled shutdown not confirmed: %s", exc.message)
                return False
            if reply["error_code"] != 0:
                log.warning("controlled shutdown refused: %s", ErrorCode(reply["error_code"]).name)
                return False
            if reply["should_shutdown"]:
                log.info("controlled shutdown complete in %d ms: partition leadership moved off broker %d",
                         (time.monotonic() - started) * 1000, self.node_id)
                return True
            await asyncio.sleep(0.05)
        log.warning("controlled shutdown not confirmed within %d ms; stopping anyway", timeout_ms)
        return False

    async def stop(self) -> None:
        """Bounded: every wait below ends on its own (cluster/broker/waits.py says why that needs care)."""
        await stop_tasks(self._tasks, STOP_TASKS_TIMEOUT_S)
        await self.fetchers.stop()
        if self.driver is not None:
            await self.driver.stop(resign=not self.is_sole_voter)
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
            self._publish(delta)
        self.applied_hw = max(self.applied_hw, high_watermark)
        self._applied.set()
        self._applied = asyncio.Event()

    def _publish(self, delta: MetadataDelta) -> None:
        """Makes ``delta`` the image of this node: controller, handlers' topic store, local replicas."""
        self.image = delta.apply()
        self.controller.image = self.image
        self.store.refresh(self.image)
        changes = delta.local_changes(self.node_id)
        self.broker.replica_manager.apply_local_changes(changes, self.image)
        self._load_offsets_partitions(changes)

    # -- metadata log snapshots ------------------------------------------------------------------------------------
    def _take_snapshot(self, snapshot_id: SnapshotId) -> bytes:
        """The image as of ``snapshot_id``: every committed entry below its end offset, and nothing after.

        The driver asks right after applying the Ready whose committed entries end exactly at
        ``snapshot_id.end_offset`` (ready.py, step 4), with no await in between, so ``self.image`` is that state
        (control entries change no image, hence "<", not "== end_offset - 1").
        """
        invariant(self.image.offset < snapshot_id.end_offset,
                  f"image at offset {self.image.offset} is ahead of snapshot {snapshot_id}")
        data = encode_snapshot(self.image, snapshot_id.end_offset, snapshot_id.epoch)
        log.info("metadata snapshot taken at end offset %d epoch %d (%d topics, %d bytes)", snapshot_id.end_offset,
                 snapshot_id.epoch, len(self.image.topics.by_id), len(data))
        return data

    def _load_snapshot(self, snapshot_id: SnapshotId, data: bytes) -> None:
        """Replaces the image by a snapshot (on restart, or one a follower downloaded from the leader).

        Goes through a delta from the current image (``snapshot_delta``), so the replica manager opens, re-roles
        or deletes exactly the partitions that differ, as after any committed batch.
        """
        snapshot = decode_snapshot(data)
        invariant((snapshot.end_offset, snapshot.epoch) == (snapshot_id.end_offset, snapshot_id.epoch),
                  f"snapshot payload says ({snapshot.end_offset}, {snapshot.epoch}), stored as {snapshot_id}")
        self._publish(snapshot_delta(self.image, snapshot.image))
        self.applied_hw = max(self.applied_hw, snapshot_id.end_offset)
        log.info("metadata snapshot loaded: end offset %d epoch %d (%d topics)", snapshot_id.end_offset,
                 snapshot_id.epoch, len(self.image.topics.by_id))

    def _load_offsets_partitions(self, changes) -> None:
        """The group coordinator serves exactly the ``__consumer_offsets`` partitions this broker leads: tells it
        which of them this delta made us lead (with the leader epoch) and which we no longer lead.

        Before the coordinator exists (start-up catch-up) there is nothing to tell: its ``start`` loads what
        the replica manager then says we lead.
        """
        runtime = self.broker.group_coordinator
        if runtime is None:
            return
        led = {index: local.registration.leader_epoch
               for (name, index), local in changes.leaders.items() if name == OFFSETS_TOPIC}
        not_led = {index for name, index in changes.followers if name == OFFSETS_TOPIC}
        not_led |= {index for name, _topic_id, index in changes.deletes if name == OFFSETS_TOPIC}
        if led or not_led:
            runtime.on_offsets_partitions_changed(led, not_led)

    def _on_leader_change(self, leader_id: int | None, epoch: int) -> None:
        log.info("metadata quorum leader is now %s (epoch %d)", leader_id, epoch)
        if leader_id == self.node_id and self.driver is not None:
            self._leader_start_offset = self.driver.store.log_end_offset
            # Every registered broker gets a whole session from our election, as Kafka's BrokerHeartbeatManager
            # starts empty on a new active controller: the brokers may still be waiting on the old controller.
            grace_ms = None
            if self._waits_on_a_moved_controller:   # the deliberate bug: half a session
                grace_ms = max(self.controller.config.broker_session_timeout_ms // 2, 2 * self.heartbeat_interval_ms)
            self.controller.reset_sessions(monotonic_ms(), grace_ms)
        # Our next controller call goes to the new leader at once (see call_controller and _lifecycle).
        self._controller_moved.set()
        self._controller_moved = asyncio.Event()

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
        # Broker sessions run on monotonic time (a skewed wall clock must not expire them), read when the decision
        # runs: a heartbeat that waited for the controller's lock still counts from when it was decided.
        if op == "register":
            endpoints = [BrokerEndpoint(name, host, port) for name, host, port in args["endpoints"]]
            error, epoch = await self._decide(lambda c: c.register_broker(
                args["broker_id"], uuid.UUID(args["incarnation_id"]), endpoints, args.get("rack"), monotonic_ms(),
                max(self.driver.store.log_end_offset, 0)))
            return {"error_code": int(error), "broker_epoch": epoch}
        if op == "heartbeat":
            result = await self._decide(lambda c: c.broker_heartbeat(
                args["broker_id"], args["broker_epoch"], args["offset"], False, bool(args.get("shutdown")),
                monotonic_ms()))
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
        if op == "alter_partition":
            result = await self._decide(lambda c: c.alter_partition(
                args["broker_id"], args["broker_epoch"], uuid.UUID(args["topic_id"]), args["partition"],
                args["leader_epoch"], args["partition_epoch"], [b for b, _e in args["new_isr"]],
                {b: e for b, e in args["new_isr"]}))
            return {"error_code": int(result.error_code), "leader_id": result.leader,
                    "leader_epoch": result.leader_epoch, "partition_epoch": result.partition_epoch,
                    "isr": list(result.isr)}
        if op == "describe_quorum":
            if not self.is_active_controller():
                raise NotControllerError(self.driver.leader_id)
            info = self.driver.quorum_info()
            return {"leader_id": info.leader_id, "leader_epoch": info.leader_epoch,
                    "high_watermark": info.high_watermark,
                    "voters": [[r.replica_id, r.log_end_offset, r.last_fetch_ms] for r in info.voters],
                    "observers": [[r.replica_id, r.log_end_offset, r.last_fetch_ms] for r in info.observers]}
        if op == "alter_reassignments":
            requests = [(t, p, None if r is None else list(r)) for t, p, r in args["partitions"]]
            results = await self._decide(lambda c: c.alter_partition_reassignments(requests))
            return [[t, p, int(code), message] for (t, p), (code, message) in results.items()]
        if op == "list_reassignments":
            wanted = args.get("partitions")
            wanted = None if wanted is None else [(t, p) for t, p in wanted]
            from cluster.metadata import ControllerResult  # a read: run under the lock, commit nothing
            found = await self._decide(lambda c: ControllerResult((), c.list_partition_reassignments(wanted)))
            return [[t, p, list(r.replicas), list(r.adding_replicas), list(r.removing_replicas)]
                    for (t, p), r in sorted(found.items())]
        if op == "elect_leaders":
            wanted = args.get("partitions")
            wanted = None if wanted is None else [(t, p) for t, p in wanted]
            results = await self._decide(lambda c: c.elect_leaders(args["election_type"], wanted))
            return [[t, p, int(code), message] for (t, p), (code, message) in results.items()]
        raise KafkaError(ErrorCode.INVALID_REQUEST, f"unknown controller operation {op!r}")

    async def _serve_call(self, op: str, args: dict, cluster_id: str | None, source_id: int | None, context):
        """One controller call from the network (controller_grpc turns a KafkaError into the reply's status;
        NotControllerError's ``leader_id`` travels with it)."""
        if self.fault.blocks(source_id):
            await context.abort(grpc.StatusCode.UNAVAILABLE, "dropped by the test fault hook")
        if cluster_id != self.cluster_id and op != "describe_quorum":
            log.error("controller call %s from a node of cluster %r refused: this is cluster %r",
                      op, cluster_id, self.cluster_id)
            raise KafkaError(ErrorCode.INCONSISTENT_CLUSTER_ID, "wrong cluster id")
        return await self.execute(op, args)

    # -- calling the active controller (from any node) -------------------------------------------------------------
    async def call_controller(self, op: str, args: dict, timeout_ms: int = CONTROLLER_CALL_TIMEOUT_MS,
                              attempt_timeout_ms: int | None = None):
        """Runs ``op`` on the active controller, wherever it is; retries while there is none.

        A call to another node is abandoned as soon as our Raft sees a new quorum leader (a frozen controller
        never answers; its successor should hear from us at once), and after ``attempt_timeout_ms`` if given.
        Raises KafkaError(NOT_CONTROLLER) (retriable) when no controller answered within ``timeout_ms``.
        """
        deadline = time.monotonic() + timeout_ms / 1000
        last_error = "no metadata quorum leader"
        others = [voter for voter in self.voters if voter != self.node_id]
        probes, hint = 0, None
        while time.monotonic() < deadline:
            leader = self.driver.leader_id if self.driver else None
            if leader is None and others:
                # Our Raft knows no leader (yet): ask the voters in turn; a follower's NOT_CONTROLLER names it.
                leader, hint = (hint if hint is not None else others[probes % len(others)]), None
                probes += 1
            try:
                if leader == self.node_id:
                    return await self.execute(op, args)
                if leader is not None and self._waits_on_a_moved_controller:   # the deliberate bug, see __init__
                    return await self._remote_call(leader, op, args, deadline - time.monotonic())
                if leader is not None:
                    attempt_s = deadline - time.monotonic()
                    if attempt_timeout_ms is not None:
                        attempt_s = min(attempt_s, attempt_timeout_ms / 1000)
                    return await self._call_until_controller_moves(leader, op, args, attempt_s)
            except ControllerMovedError as exc:
                last_error = exc.message
                continue   # straight to the new leader
            except NotControllerError as exc:
                last_error = exc.message
                if exc.leader_id not in (None, leader, self.node_id):
                    hint = exc.leader_id
            except grpc.aio.AioRpcError as exc:
                last_error = f"controller {leader} unreachable: {exc.code()}"
            await asyncio.sleep(0.05)
        raise KafkaError(ErrorCode.NOT_CONTROLLER, f"no active controller answered {op}: {last_error}")

    async def _call_until_controller_moves(self, leader: int, op: str, args: dict, timeout_s: float):
        """``_remote_call``, abandoned with ControllerMovedError when the quorum leader changes meanwhile."""
        moved = self._controller_moved
        call = asyncio.ensure_future(self._remote_call(leader, op, args, timeout_s))
        watch = asyncio.ensure_future(moved.wait())
        try:
            await asyncio.wait((call, watch), return_when=asyncio.FIRST_COMPLETED)
        finally:
            watch.cancel()
            abandoned = not call.done()
            if abandoned:
                call.cancel()   # takes effect when the call next runs: it is not done yet after this line
        if abandoned:
            raise ControllerMovedError(leader, self.driver.leader_id if self.driver else None)
        return call.result()

    async def _remote_call(self, leader: int, op: str, args: dict, timeout_s: float):
        if self.fault.blocks(leader):   # test fault hook: as if the network lost the call
            await asyncio.sleep(min(timeout_s, 0.1))
            raise grpc.aio.AioRpcError(grpc.StatusCode.UNAVAILABLE, grpc.aio.Metadata(), grpc.aio.Metadata(),
                                       "dropped by the test fault hook")
        client = self._controller_clients.get(leader)
        if client is None:
            channel = self._channels[leader] = grpc.aio.insecure_channel(self.voters[leader].address)
            client = self._controller_clients[leader] = ControllerClient(channel)
        reply = await client.call(op, args, cluster_id=self.cluster_id, source_id=self.node_id, timeout_s=timeout_s)
        if reply.error_code == ErrorCode.NOT_CONTROLLER:
            raise NotControllerError(reply.leader_id)
        if reply.error_code != 0:
            raise KafkaError(ErrorCode(reply.error_code), reply.error_message)
        return reply.result

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
                    if self.broker_epoch >= 0:
                        continue   # heartbeat at once: the first caught-up heartbeat unfences us
                else:
                    await self._heartbeat()
            except asyncio.CancelledError:
                raise
            except KafkaError as exc:
                log.warning("broker lifecycle: %s", exc)
            except Exception:  # noqa: BLE001 -- the lifecycle loop must outlive any one failure
                log.exception("broker lifecycle call failed")
            await self._sleep_unless_controller_moves((self.heartbeat_interval_ms if not self.fenced else 200) / 1000)

    async def _sleep_unless_controller_moves(self, seconds: float) -> None:
        """The pause between heartbeats, cut short by a new quorum leader: it hears from us at once, as Kafka's
        brokers send their next heartbeat to a new controller as soon as they learn of it."""
        if self._waits_on_a_moved_controller:
            await asyncio.sleep(seconds)
            return
        await wait_event(self._controller_moved, seconds)   # not wait_for: see cluster/broker/waits.py

    async def _register(self) -> None:
        reply = await self.call_controller("register", {
            "broker_id": self.node_id, "incarnation_id": str(self.incarnation_id),
            "endpoints": self._endpoints(), "rack": self.broker.config.get("broker.rack")})
        if reply["error_code"] != 0:
            code = ErrorCode(reply["error_code"])
            if code != self._refused_with:   # retried every 200 ms: said once, not five times a second
                log.error("broker registration refused by the controller: %s%s", code.name,
                          f" (node.id={self.node_id} has a live session: another node with this id, or our"
                          " previous incarnation until its session times out)"
                          if code == ErrorCode.DUPLICATE_BROKER_REGISTRATION else "")
            self._refused_with = code
            return
        self._refused_with = None
        self.broker_epoch = reply["broker_epoch"]
        log.info("registered with the controller: broker epoch %d", self.broker_epoch)

    async def _heartbeat(self) -> None:
        reply = await self.call_controller("heartbeat", {
            "broker_id": self.node_id, "broker_epoch": self.broker_epoch, "offset": self.applied_hw - 1},
            attempt_timeout_ms=self.heartbeat_attempt_timeout_ms)
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
        """On the active controller: fence brokers whose session expired; every
        ``leader.imbalance.check.interval.seconds`` (with ``auto.leader.rebalance.enable``) move leadership
        back to preferred replicas on brokers above ``leader.imbalance.per.broker.percentage``."""
        config = self.broker.config
        rebalance = bool(config.get("auto.leader.rebalance.enable"))
        interval_s = config.get("leader.imbalance.check.interval.seconds")
        percentage = config.get("leader.imbalance.per.broker.percentage")
        next_rebalance = time.monotonic() + interval_s
        # A dead broker is fenced (and its leaderships move) at most a tenth of its session late.
        tick_s = min(0.5, config.get("broker.session.timeout.ms") / 10_000)
        while True:
            await asyncio.sleep(tick_s)
            if not self.is_active_controller():
                continue
            try:
                fenced = await self._decide(lambda c: c.tick(monotonic_ms()))
                if fenced:
                    log.warning("fenced brokers %s: session expired", list(fenced))
                if rebalance and time.monotonic() >= next_rebalance:
                    next_rebalance = time.monotonic() + interval_s
                    moved = await self._decide(lambda c: c.rebalance_leaders(percentage))
                    if moved:
                        log.info("preferred leader election moved %d partition(s): %s", len(moved), list(moved))
            except KafkaError as exc:
                log.debug("controller tick: %s", exc)

    # -- partition replication ----------------------------------------------------------------------------------
    def _inter_node_address(self, node_id: int) -> str | None:
        voter = self.voters.get(node_id)
        return voter.address if voter is not None else None

    def _registered_broker_epoch(self, broker_id: int) -> int:
        registration = self.image.cluster.brokers.get(broker_id)
        return registration.broker_epoch if registration is not None else -1

    async def _serve_replica_fetch(self, request: ReplicaFetchRequest, context) -> ReplicaFetchResponse:
        """A follower's fetch (replication.proto), served by the partitions this broker leads."""
        if self.fault.blocks(request.replica_id):
            await context.abort(grpc.StatusCode.UNAVAILABLE, "dropped by the test fault hook")
        if request.cluster_id != self.cluster_id:
            log.error("replica fetch from broker %d of cluster %r refused: this is cluster %r",
                      request.replica_id, request.cluster_id, self.cluster_id)
            return ReplicaFetchResponse(error_code=int(ErrorCode.INCONSISTENT_CLUSTER_ID))
        return await self.broker.replica_manager.serve_replica_fetch(request)

    def _send_isr_change(self, partition, change: PendingIsrChange) -> None:
        task = asyncio.create_task(self._alter_partition(partition, change), name=f"alter-partition-{partition}")
        self._tasks.append(task)
        task.add_done_callback(lambda t: self._tasks.remove(t) if t in self._tasks else None)

    async def _alter_partition(self, partition, change: PendingIsrChange) -> None:
        """Sends one ISR proposal (AlterPartition) until the controller answers it or it no longer matters."""
        state = partition.leader_state
        args = {"broker_id": self.node_id, "broker_epoch": self.broker_epoch, "topic_id": str(partition.topic_id),
                "partition": partition.partition_index, "leader_epoch": change.leader_epoch,
                "partition_epoch": change.partition_epoch, "new_isr": [list(m) for m in change.new_isr_with_epochs]}
        while state is not None and partition.leader_state is state and state.pending_isr_change is change:
            try:
                reply = await self.call_controller("alter_partition", args)
            except KafkaError as exc:
                log.warning("%s: AlterPartition not answered (%s); retrying", partition, exc.message)
                await asyncio.sleep(0.1)
                continue
            error = ErrorCode(reply["error_code"])
            outcome = state.on_alter_partition_response(change, error, leader_epoch=reply["leader_epoch"],
                                                        partition_epoch=reply["partition_epoch"], isr=reply["isr"])
            if outcome is AlterPartitionOutcome.RETRY:
                await asyncio.sleep(0.1)
                continue
            if error != ErrorCode.NONE:
                log.info("%s: ISR change to %s refused: %s (%s)", partition, list(change.new_isr), error.name,
                         outcome.value)
            partition.on_high_watermark_maybe_changed()
            break
        if partition.leader_state is state and state is not None and tuple(state.isr) == change.new_isr:
            self._count_isr_change(change.kind)

    def _count_isr_change(self, kind: IsrChangeKind) -> None:
        metrics = self.broker.metrics
        (metrics.on_isr_shrink if kind is IsrChangeKind.SHRINK else metrics.on_isr_expand)()

    # -- what handlers ask ---------------------------------------------------------------------------------------
    def live_brokers(self, listener_name: str | None = None) -> list[tuple[int, str, int, str | None]]:
        """Unfenced brokers at their endpoint for ``listener_name`` (None: each one's first endpoint).

        As in Kafka, a broker that registered no endpoint for that listener is left out of the answer.
        """
        brokers = []
        for broker_id in self.image.cluster.unfenced_broker_ids():
            registration = self.image.cluster.brokers[broker_id]
            endpoint = next((e for e in registration.endpoints if listener_name in (None, e.name)), None)
            if endpoint is not None:
                brokers.append((broker_id, endpoint.host, endpoint.port, registration.rack))
        return brokers

    def metadata_brokers(self, listener_name: str | None = None) -> list[tuple[int, str, int, str | None]]:
        """The brokers a Metadata answer lists: the live ones, and this broker too while it is not among them
        (it accepts clients unregistered only after ``wait_registered`` gave up), so that no answer is empty."""
        brokers = self.live_brokers(listener_name)
        if any(broker_id == self.node_id for broker_id, *_ in brokers):
            return brokers
        endpoint = next((e for e in self._endpoints() if listener_name in (None, e[0])), None)
        if endpoint is None:
            return brokers
        _name, host, port = endpoint
        return sorted(brokers + [(self.node_id, host, port, self.broker.config.get("broker.rack"))])

    def metadata_controller_id(self, broker_ids) -> int:
        """The controller id a Metadata answer names, always one of the listed ``broker_ids`` (-1 if none).

        As in Kafka's KRaft brokers, which forward admin requests to the active controller: the quorum leader
        when it is listed, else this broker, else the first listed.  librdkafka's AdminClient waits until the
        controller id is a broker it knows, so a leader that is fenced, dead or unknown must not be named.
        """
        leader = self.driver.leader_id if self.driver is not None else None
        for candidate in (leader, self.node_id):
            if candidate in broker_ids:
                return candidate
        return min(broker_ids, default=-1)

    def broker_address(self, broker_id: int, listener_name: str | None = None) -> tuple[str, int] | None:
        """(host, port) of ``broker_id`` for ``listener_name`` (None: its first endpoint), or None."""
        registration = self.image.cluster.brokers.get(broker_id)
        endpoints = registration.endpoints if registration is not None else ()
        endpoint = next((e for e in endpoints if listener_name in (None, e.name)), None)
        if endpoint is None:
            return None
        return endpoint.host, endpoint.port

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


def _no_op():
    from cluster.wire.metadata_records import no_op_record
    return no_op_record.NoOpRecord()


_NO_OP = _no_op()
