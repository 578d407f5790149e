"""A broker process: opens its logs, serves the Kafka listener, runs group commit and log upkeep.

Lifecycle: startup (config -> join the metadata quorum and replay the committed metadata, which opens and
recovers the partition logs this broker hosts -> convert an old-format single-node directory once
(legacy_metadata.py) -> listen), serve until SIGTERM/SIGINT, then shutdown (first a controlled shutdown: hand
over quorum leadership and move partition leaderships; then stop accepting, let the flusher make every appended
byte durable, close logs).

There is one metadata path: every node runs the quorum (cluster_mode.py); a node without
``controller.quorum.voters`` is a one-voter quorum of itself.  The listeners are bound before the broker
registers (the registration carries their ports) but accept connections only once the controller has unfenced
this broker and its metadata has caught up (``ClusterRuntime.wait_registered``, bounded), as Kafka's broker
serves only after its initial catch-up and registration: a client connecting earlier is refused and retries,
instead of meeting a cluster without brokers or controller.

Shutdown is bounded (``SHUTDOWN_TIMEOUT_S``, after which the process exits regardless).  A second SIGTERM or
SIGINT during it skips the graceful steps and exits at once (what was acknowledged is on disk already, unless
a topic opted out of fsync before acknowledgement).
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal

from cluster.broker.cluster_mode import ClusterRuntime
from cluster.broker.flusher import GroupCommitFlusher
from cluster.broker.group_coordinator import GroupCoordinatorRuntime
from cluster.broker.handlers.context import BrokerServices
from cluster.broker.legacy_metadata import LegacyMetadataError, convert_legacy_metadata
from cluster.broker.replica_manager import ReplicaManager
from cluster.broker.request_metrics import BrokerRequestMetrics
from cluster.broker.router import RequestRouter
from cluster.config import BrokerConfig, parse_metrics_listener
from cluster.core.clock import SystemClock
from cluster.core.errors import KafkaError
from cluster.observability import BrokerMetrics, ClusterSnapshot, MetricsHttpServer, PartitionState
from cluster.observability.metrics import raft_snapshot_of
from cluster.storage.power_loss import start_test_hooks
from cluster.transport.kafka_server import start_kafka_server

log = logging.getLogger("cluster.broker")

# The whole graceful shutdown (controlled shutdown, final flush, closing logs) ends within this, or the process
# exits without finishing it: a broker asked to stop must stop, as Kafka bounds its controlled shutdown.
SHUTDOWN_TIMEOUT_S = 10.0


class Broker:
    def __init__(self, config: BrokerConfig) -> None:
        self.config = config
        self.clock = SystemClock()   # the one clock every part of this process reads
        self.flusher = GroupCommitFlusher()
        self.replica_manager: ReplicaManager | None = None
        self.group_coordinator: GroupCoordinatorRuntime | None = None
        self._servers: list[asyncio.AbstractServer] = []
        self._connections: list[set] = []
        self._tasks: list[asyncio.Task] = []
        self._stopped = asyncio.Event()
        self._signals = 0
        self.bound_ports: list[int] = []
        self.metrics = BrokerMetrics(self._metrics_snapshot, lambda: raft_snapshot_of(self.quorum))
        self.request_metrics = BrokerRequestMetrics(self.metrics)
        # Every job of the flusher's thread is one fsync round (a hook in flusher.py would be cleaner).
        self.flusher.on_round = self.metrics.on_flush
        self.metrics_server: MetricsHttpServer | None = None
        self.ready = False  # listeners bound and logs recovered; False again once shutdown begins
        # This node's metadata quorum member: Raft voter, maybe the active controller, publisher of the image it
        # applies (a one-voter quorum without controller.quorum.voters).
        self.quorum = ClusterRuntime(config, self.clock.wall_ms, self.metrics, lambda: self.bound_ports)

    def _metrics_snapshot(self) -> ClusterSnapshot:
        """Scrape-time view of partitions and committed offsets."""
        node_id = self.config.node_id
        partitions = []
        if self.replica_manager is not None:
            for (topic, index), partition in list(self.replica_manager.partitions.items()):
                replicas = tuple(getattr(partition, "replicas", (node_id,)))
                partitions.append(PartitionState(
                    topic=topic, partition=index, replicas=replicas,
                    isr=tuple(getattr(partition, "isr", replicas)), leader=getattr(partition, "leader_id", node_id),
                    log_size_bytes=partition.log.size_in_bytes, high_watermark=partition.high_watermark))
        committed: dict[str, dict[tuple[str, int], int]] = {}
        if self.group_coordinator is not None:
            coordinator = self.group_coordinator.coordinator
            for group_id in coordinator.group_ids():
                offsets = coordinator.committed_offsets(group_id)
                if offsets:
                    committed[group_id] = {tp: value.offset for tp, value in offsets.items()}
        return ClusterSnapshot(partitions=partitions, committed_offsets=committed)

    async def _start_metrics_listener(self) -> None:
        address = parse_metrics_listener(self.config.get("metrics.listener"))
        if address is None:
            log.info("metrics listener disabled (metrics.listener is empty)")
            return
        self.metrics_server = MetricsHttpServer(self.metrics.exposition, self.is_ready)
        await self.metrics_server.start(*address)
        log.info("serving metrics on %s (also /healthz, /readyz)", self.metrics_server.url)

    def is_ready(self) -> bool:
        """/readyz: serving clients, registered, caught up with metadata and unfenced."""
        return self.ready and not self.quorum.fenced

    # lifecycle ----------------------------------------------------------------------------------------
    async def start(self) -> None:
        start_test_hooks(self.config)   # off unless a kraftpy.test.* key is set: power loss, clock offset
        await self._start_metrics_listener()  # first, so /healthz answers (and /readyz says 503) during recovery
        quorum = self.quorum
        # Partitions open as committed metadata names them.
        self.replica_manager = ReplicaManager(self.config, quorum.store, self.flusher, self.clock)
        quorum.attach_replica_manager(self.replica_manager)
        await quorum.start()
        await quorum.wait_caught_up()   # no Metadata answers from an empty image
        # Before stray logs are removed: the partitions of an old single-node directory are not in the image yet.
        await convert_legacy_metadata(self.config.log_dir, quorum)
        if quorum.applied_leaders_metadata():
            self.replica_manager.remove_stray_logs()
        self._tasks.append(asyncio.create_task(self.flusher.run(), name="group-commit"))
        self._tasks.append(asyncio.create_task(self.replica_manager.run_log_upkeep(), name="log-upkeep"))
        self._tasks.append(asyncio.create_task(self.replica_manager.run_high_watermark_checkpoints(),
                                               name="high-watermark-checkpoints"))
        self.group_coordinator = GroupCoordinatorRuntime(self.config, self.replica_manager, self.metrics.on_rebalance)
        quorum.attach_group_coordinator(self.group_coordinator)
        self.group_coordinator.start()
        await self._bind_listeners()   # bound now, accepting once registered (see the module docstring)
        quorum.start_broker_lifecycle()   # registers the bound ports
        await quorum.wait_registered()
        for server in self._servers:
            await server.start_serving()
        for (name, host, _port), bound in zip(self.config.listeners, self.bound_ports, strict=True):
            log.info("listening for Kafka clients on %s://%s:%d", name, host or "0.0.0.0", bound)
        self.ready = True
        self.metrics.ready.set(1)
        log.info("kraftpy broker started: node.id=%d quorum.id=%s log.dirs=%s", self.config.node_id,
                 quorum.cluster_id, self.config.log_dir)

    def _services(self) -> BrokerServices:
        """The collaborators the request handlers get (built once, after the quorum member, the replica manager
        and the group coordinator exist)."""
        return BrokerServices(config=self.config, replicas=self.replica_manager, metadata=self.quorum,
                              controller=self.quorum.controller_channel, groups=self.group_coordinator, metrics=self.request_metrics,
                              now_ms=self.clock.wall_ms)

    async def _bind_listeners(self) -> None:
        router = RequestRouter(self._services())
        max_request_bytes = self.config.get("socket.request.max.bytes")
        for name, host, port in self.config.listeners:
            server, connections = await start_kafka_server(router, host, port, max_request_bytes,
                                                           self.config.get("queued.max.requests"), name,
                                                           start_serving=False)
            self._servers.append(server)
            self._connections.append(connections)
            self.bound_ports.append(server.sockets[0].getsockname()[1])

    def handle_signals(self) -> None:
        """SIGTERM/SIGINT: the first stops the broker gracefully, a second one exits at once."""
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self._on_signal, signum)

    def _on_signal(self, signum: int) -> None:
        self._signals += 1
        if self._signals == 1:
            self._stopped.set()
            return
        log.warning("second %s during shutdown: exiting now, skipping the graceful steps",
                    signal.Signals(signum).name)
        _exit_now(128 + signum)

    async def serve_until_signalled(self) -> None:
        self.handle_signals()
        flusher_task = self._tasks[0]
        waiter = asyncio.create_task(self._stopped.wait())
        done, _ = await asyncio.wait([waiter, flusher_task], return_when=asyncio.FIRST_COMPLETED)
        if flusher_task in done and flusher_task.exception() is not None:
            raise flusher_task.exception()
        log.info("shutting down")
        stopping = asyncio.create_task(self.stop(), name="broker-stop")
        done, _ = await asyncio.wait({stopping}, timeout=SHUTDOWN_TIMEOUT_S)
        if not done:
            log.error("shutdown did not finish within %.0f s: exiting without finishing it", SHUTDOWN_TIMEOUT_S)
            _exit_now(1)
        stopping.result()

    async def stop(self) -> None:
        self.ready = False
        self.metrics.ready.set(0)
        if self._servers:
            # Before the listeners close: quorum leadership is handed over and partition leadership moves
            # while clients can still reach us and be redirected (bounded, see controlled_shutdown).
            await self.quorum.controlled_shutdown()
        for server in self._servers:
            server.close()
        for connections in self._connections:
            for connection in list(connections):
                connection.close("broker shutting down")
        if self.group_coordinator is not None:
            self.group_coordinator.stop()
        await self.quorum.stop()
        await self.flusher.stop()
        flusher_task, *others = self._tasks
        try:
            await asyncio.wait_for(flusher_task, timeout=30)
        except TimeoutError:
            log.error("final flush did not finish within 30 s")
        for task in others:
            task.cancel()
        self.flusher.shutdown_executor()
        if self.replica_manager is not None:
            self.replica_manager.close_all()
        if self.metrics_server is not None:
            await self.metrics_server.stop()
        log.info("broker stopped")


def _refuse_to_start(exc: Exception) -> None:
    """A start that cannot go on (wrong log directory, unconvertible old metadata): says why, exits with 1."""
    message = exc.message if isinstance(exc, KafkaError) else str(exc)
    log.critical("broker cannot start: %s", message)
    _exit_now(1)


def _exit_now(status: int) -> None:
    """Ends the process at once (no graceful steps, no waiting for threads); the log says why first."""
    logging.shutdown()
    os._exit(status)


async def run_broker(config: BrokerConfig) -> None:
    try:
        broker = Broker(config)
    except KafkaError as exc:   # the log directory is another node's or cluster's (meta.properties)
        _refuse_to_start(exc)
    # Before start: it may wait for the quorum (wait_caught_up, wait_registered), and SIGTERM must work then too.
    broker.handle_signals()
    start = asyncio.create_task(broker.start(), name="broker-start")
    stopped = asyncio.create_task(broker._stopped.wait())
    await asyncio.wait({start, stopped}, return_when=asyncio.FIRST_COMPLETED)
    if not start.done():   # nothing is served or acknowledged yet: no graceful steps to take
        log.info("signalled while starting: exiting")
        _exit_now(0)
    stopped.cancel()
    try:
        start.result()
    except (KafkaError, LegacyMetadataError) as exc:
        _refuse_to_start(exc)
    await broker.serve_until_signalled()
