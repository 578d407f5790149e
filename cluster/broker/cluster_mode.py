"""The metadata quorum member every node runs: a voter, (maybe) the active controller, and a broker of the image.

Every node runs it.  ``controller.quorum.voters`` (Kafka syntax ``1@host:port,...``) names the voters; each
node's own entry is the address of its inter-node gRPC server (Raft, the controller service and replica fetches
share it).  A node without voters is a one-voter quorum of itself: its server binds a free loopback port (nobody
else calls it; its own controller calls run in-process), it elects itself at once, and a fresh log directory is
formatted with a new cluster id, as the single-node broker always did.

``ClusterRuntime`` is what the broker holds: the Raft wiring, and a thin composition of the parts, each in its own
module as in Kafka's broker and controller.  As Kafka's ``BrokerServer`` does, the broker (app.py) hands it the
collaborators it uses, never itself: the config, the wall clock, the metrics and the bound listener ports at
construction; the ``ReplicaManager`` and the group coordinator, built later, through ``attach_replica_manager``
(before ``start``) and ``attach_group_coordinator``.

* ``MetadataPublisher`` (metadata_publisher.py) replays COMMITTED metadata records into a ``MetadataImage`` and
  publishes each image to the controller, the handlers' topic view, the ``ReplicaManager`` and the group
  coordinator; it takes and loads the metadata log's snapshots;
* ``ControllerServer`` (controller_server.py) is the controller service, one typed method per RPC; it answers
  only on the Raft leader (the active controller), from this node's broker or over gRPC
  (cluster/transport/controller_grpc.py, proto/cluster/v1/controller.proto);
* ``ControllerChannel`` (controller_channel.py) carries this broker's typed calls to the active controller,
  wherever it is, following the quorum leader;
* ``BrokerLifecycleManager`` (broker_lifecycle.py) registers with the controller, heartbeats, and asks for a
  controlled shutdown on SIGTERM.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import grpc

from cluster.broker.broker_lifecycle import CONTROLLED_SHUTDOWN_TIMEOUT_MS, BrokerLifecycleManager
from cluster.broker.controller_channel import ControllerChannel
from cluster.broker.controller_server import CONTROLLER_CALL_TIMEOUT_MS, ControllerServer, old_failover_bug
from cluster.broker.metadata_publisher import MetadataPublisher
from cluster.broker.raft_driver import RaftDriver, Voter, parse_voters
from cluster.broker.replica_fetcher import ReplicaFetcherManager
from cluster.broker.topic_view import ImageTopicStore
from cluster.broker.waits import stop_tasks
from cluster.core.clock import monotonic_ms
from cluster.core.errors import ErrorCode, KafkaError, invariant
from cluster.metadata import MetadataImage
from cluster.metadata.controller_api import AlterPartitionRequest, IsrMember
from cluster.raft.config import RaftConfig
from cluster.raft.state import Role
from cluster.replication import AlterPartitionOutcome, IsrChangeKind, PendingIsrChange
from cluster.storage.meta_properties import load_cluster_id
from cluster.storage.raft_store import RaftStore
from cluster.transport.controller_grpc import controller_rpc_handlers
from cluster.transport.raft_grpc import FaultFilter
from cluster.transport.replica_fetch_grpc import (
    ReplicaFetchRequest,
    ReplicaFetchResponse,
    replica_fetch_rpc_handlers,
)

if TYPE_CHECKING:
    from cluster.broker.group_coordinator import GroupCoordinatorRuntime
    from cluster.broker.replica_manager import ReplicaManager
    from cluster.config import BrokerConfig
    from cluster.observability import BrokerMetrics

log = logging.getLogger("cluster.broker.cluster")

__all__ = ["CONTROLLED_SHUTDOWN_TIMEOUT_MS", "CONTROLLER_CALL_TIMEOUT_MS", "ClusterRuntime", "METADATA_DIR"]

# Start-up: how long the Kafka listener waits for this node to apply the committed metadata (wait_caught_up), and
# how long it waits in all before it accepts clients even though this broker is not registered and unfenced
# (wait_registered; no quorum, say).
CATCH_UP_TIMEOUT_S = 10.0
LEADER_WAIT_S = 2.0
SERVE_WAIT_TIMEOUT_S = 10.0
STOP_TASKS_TIMEOUT_S = 1.0
ALTER_PARTITION_RETRY_S = 0.1
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


# == the runtime ======================================================================================================
class ClusterRuntime:
    def __init__(self, config: BrokerConfig, wall_ms: Callable[[], int], metrics: BrokerMetrics,
                 bound_ports: Callable[[], Sequence[int]]) -> None:
        """``wall_ms``: the process's one wall clock (replica fetch deadlines); ``metrics``: counts ISR changes;
        ``bound_ports``: the ports the Kafka listeners bound, in ``config.listeners`` order (empty before they
        bind), which the registration advertises for a listener configured with port 0."""
        self._config = config
        self._metrics = metrics
        self._bound_ports = bound_ports
        self._replica_manager: ReplicaManager | None = None   # attach_replica_manager, before start
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
        self._tasks: list[asyncio.Task] = []
        self.driver: RaftDriver | None = None
        self.new_cluster = False   # our metadata log was empty at start: see is_serving_ready
        # Test-only link cutter (kraftpy.test.fault.file); drops nothing unless the key names a file.
        self.fault = FaultFilter(config.get("kraftpy.test.fault.file"))
        self.controller_server = ControllerServer(config, self.cluster_id, self.fault, random.SystemRandom(),
                                                  lambda end_offset, timeout_s: self.metadata.wait_applied(
                                                      end_offset, timeout_s))
        self.controller = self.controller_server.controller   # QuorumController: decides from our image
        self.metadata = MetadataPublisher(self.node_id, self.controller, self.store)
        self.controller_channel = ControllerChannel(
            self.node_id, self.voters, self.cluster_id, self.controller_server,
            lambda: self.driver.leader_id if self.driver else None, self.fault,
            broker_epoch=lambda: self.broker_epoch, waits_on_a_moved_controller=old_failover_bug(config))
        self.lifecycle = BrokerLifecycleManager(self.node_id, config, self.controller_channel, self._endpoints,
                                                lambda: self.metadata.applied_hw - 1)
        # Partition replication: followers fetch from leaders over the same inter-node port (replication.proto).
        self.fetchers = ReplicaFetcherManager(
            self.node_id, self.cluster_id, self._inter_node_address, lambda: self.broker_epoch, config,
            wall_ms, self.fault)

    @property
    def is_sole_voter(self) -> bool:
        """The quorum is this node alone (no ``controller.quorum.voters``): a single-node cluster."""
        return set(self.voters) == {self.node_id}

    # -- the parts' state, as the broker and its handlers read it ------------------------------------------------
    @property
    def image(self) -> MetadataImage:
        return self.metadata.image

    @property
    def applied_hw(self) -> int:
        return self.metadata.applied_hw

    @property
    def broker_epoch(self) -> int:
        return self.lifecycle.broker_epoch

    @property
    def fenced(self) -> bool:
        return self.lifecycle.fenced

    async def wait_for_metadata(self, predicate, timeout_s: float) -> bool:
        """Waits until ``predicate()`` holds over the applied metadata (True), or ``timeout_s`` passes (False);
        woken by every applied commit, not by polling."""
        return await self._wait_until(predicate, monotonic_ms() + timeout_s * 1000)

    async def _wait_until(self, predicate, deadline_ms: float) -> bool:
        """Waits until ``predicate()`` holds (True) or the monotonic ``deadline_ms`` passes (False)."""
        return await self.metadata.wait_until(predicate, int(deadline_ms))

    # -- collaborators built after this runtime -----------------------------------------------------------------
    def attach_replica_manager(self, replica_manager: ReplicaManager) -> None:
        """Before ``start``: the replica manager is built on this runtime's topic view (``store``), so it comes
        second; from here on it receives the published images, serves replica fetches and proposes ISR changes
        through this runtime."""
        replica_manager.fetchers = self.fetchers
        replica_manager.registered_broker_epoch = self._registered_broker_epoch
        replica_manager.send_isr_change = self._send_isr_change
        self._replica_manager = replica_manager
        self.metadata.attach_replica_manager(replica_manager)

    def attach_group_coordinator(self, group_coordinator: GroupCoordinatorRuntime) -> None:
        """Once the group coordinator exists (after the start-up catch-up): it is told from then on which
        ``__consumer_offsets`` partitions each published image makes this broker lead or no longer lead."""
        self.metadata.attach_group_coordinator(group_coordinator)

    # -- lifecycle -----------------------------------------------------------------------------------------------
    async def start(self) -> None:
        invariant(self._replica_manager is not None, "attach_replica_manager must come before start")
        raft_dir = os.path.join(self._config.log_dir, METADATA_DIR)
        raft_store = await asyncio.to_thread(RaftStore, raft_dir, cluster_id=self.cluster_id, node_id=self.node_id)
        self.driver = RaftDriver(self.node_id, self.voters, raft_store, cluster_id=self.cluster_id,
                                 config=metadata_raft_config(self._config), on_commit=self.metadata.on_commit,
                                 take_snapshot=self.metadata.take_snapshot, load_snapshot=self.metadata.load_snapshot,
                                 on_leader_change=self._on_leader_change,
                                 listen_host=self.voters[self.node_id].host, fault=self.fault)
        self.controller_server.driver = self.driver
        # One port per node: the controller service rides on the Raft gRPC server (see module docstring).
        self.driver.add_generic_rpc_handlers(controller_rpc_handlers(self.controller_server,
                                                                     self.controller_server.admit))
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
        started_ms = monotonic_ms()
        if (await self._wait_until(lambda: driver.leader_id is not None, started_ms + LEADER_WAIT_S * 1000)
                and await self._wait_until(self.applied_leaders_metadata, started_ms + timeout_s * 1000)):
            return True
        log.warning("metadata not caught up with a quorum leader after %.1f s; going on without it",
                    (monotonic_ms() - started_ms) / 1000)
        return False

    async def wait_registered(self, timeout_s: float = SERVE_WAIT_TIMEOUT_S) -> bool:
        """After ``start_broker_lifecycle``, before the Kafka listeners accept: waits until ``is_serving_ready``.

        So a client never meets this broker while its Metadata would list no brokers or no controller (librdkafka
        calls that a partial response, and its AdminClient then waits for a controller until it times out):
        Kafka's broker too serves only once it has caught up and its controller has unfenced it.  Bounded: after
        ``timeout_s`` (no quorum, or the controller refuses us) it logs and returns False, and the listeners
        open anyway; Metadata then lists at least this broker (``metadata_brokers``).
        """
        started_ms = monotonic_ms()
        if await self._wait_until(self.is_serving_ready, started_ms + timeout_s * 1000):
            log.info("registered, unfenced and caught up after %d ms: serving clients", monotonic_ms() - started_ms)
            return True
        log.warning("not registered and unfenced by a controller after %.1f s (quorum leader %s); serving clients "
                    "anyway", (monotonic_ms() - started_ms) / 1000, self.driver.leader_id if self.driver else None)
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

    def applied_leaders_metadata(self) -> bool:
        """True when a quorum leader is known and every entry it committed (as far as we know) is applied here;
        an empty or unreachable quorum never counts (what we do not know must not delete data)."""
        driver = self.driver
        return (driver is not None and driver.leader_id is not None and driver.high_watermark > 0
                and self.applied_hw >= driver.high_watermark)

    def start_broker_lifecycle(self) -> None:
        """After the Kafka listener is bound (the registration carries its port)."""
        self._tasks.append(asyncio.create_task(self.lifecycle.run(), name="broker-lifecycle"))
        self._tasks.append(asyncio.create_task(self.controller_server.run_ticks(), name="controller-ticks"))
        self._tasks.append(asyncio.create_task(self._replica_manager.run_isr_expiration(),
                                               name="isr-expiration"))

    async def controlled_shutdown(self, timeout_ms: int = CONTROLLED_SHUTDOWN_TIMEOUT_MS) -> bool:
        """First step of a SIGTERM, while the Kafka listeners still serve: hands over quorum leadership at once
        (so the others need not wait for a fetch timeout) and leaves elections to the others, then asks the
        controller to move this broker's partition leaderships (``BrokerLifecycleManager.controlled_shutdown``).

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
        return await self.lifecycle.controlled_shutdown(timeout_ms)

    async def stop(self) -> None:
        """Bounded: every wait below ends on its own (cluster/broker/waits.py says why that needs care)."""
        await stop_tasks(self._tasks, STOP_TASKS_TIMEOUT_S)
        await self.fetchers.stop()
        if self.driver is not None:
            await self.driver.stop()
        await self.controller_channel.close()

    def _on_leader_change(self, leader_id: int | None, epoch: int) -> None:
        log.info("metadata quorum leader is now %s (epoch %d)", leader_id, epoch)
        if leader_id == self.node_id and self.driver is not None:
            self.controller_server.on_became_leader(self.driver.store.log_end_offset)
        # Our next controller call goes to the new leader at once (see ControllerChannel and the lifecycle).
        self.controller_channel.on_controller_moved()

    def is_active_controller(self) -> bool:
        return self.controller_server.is_active_controller()

    # -- the broker's own controller calls -------------------------------------------------------------------------
    def _endpoints(self) -> list[tuple[str, str, int]]:
        endpoints = []
        bound_ports = self._bound_ports()
        for index, (name, host, port) in enumerate(self._config.advertised_listeners):
            if port == 0 and index < len(bound_ports):
                port = bound_ports[index]
            endpoints.append((name or "PLAINTEXT", host or "localhost", port))
        return endpoints

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
        return await self._replica_manager.serve_replica_fetch(request)

    def _send_isr_change(self, partition, change: PendingIsrChange) -> None:
        task = asyncio.create_task(self._alter_partition(partition, change), name=f"alter-partition-{partition}")
        self._tasks.append(task)
        task.add_done_callback(lambda t: self._tasks.remove(t) if t in self._tasks else None)

    async def _alter_partition(self, partition, change: PendingIsrChange) -> None:
        """Sends one ISR proposal (AlterPartition) until the controller answers it or it no longer matters."""
        state = partition.leader_state
        request = AlterPartitionRequest(
            self.node_id, self.broker_epoch, partition.topic_id, partition.partition_index, change.leader_epoch,
            change.partition_epoch, tuple(IsrMember(b, e) for b, e in change.new_isr_with_epochs))
        while state is not None and partition.leader_state is state and state.pending_isr_change is change:
            try:
                reply = await self.controller_channel.alter_partition(request)
            except KafkaError as exc:
                log.warning("%s: AlterPartition not answered (%s); retrying", partition, exc.message)
                await asyncio.sleep(ALTER_PARTITION_RETRY_S)
                continue
            error = reply.error_code
            outcome = state.on_alter_partition_response(change, error, leader_epoch=reply.leader_epoch,
                                                        partition_epoch=reply.partition_epoch, isr=list(reply.isr))
            if outcome is AlterPartitionOutcome.RETRY:
                await asyncio.sleep(ALTER_PARTITION_RETRY_S)
                continue
            if error != ErrorCode.NONE:
                log.info("%s: ISR change to %s refused: %s (%s)", partition, list(change.new_isr), error.name,
                         outcome.value)
            partition.on_high_watermark_maybe_changed()
            break
        if partition.leader_state is state and state is not None and tuple(state.isr) == change.new_isr:
            self._count_isr_change(change.kind)

    def _count_isr_change(self, kind: IsrChangeKind) -> None:
        metrics = self._metrics
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
        return sorted(brokers + [(self.node_id, host, port, self._config.get("broker.rack"))])

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
