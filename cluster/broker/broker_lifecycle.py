"""The broker's side of its session with the active controller (Kafka's ``BrokerLifecycleManager``).

Why it exists: a broker registers with the active controller (getting its broker epoch), then heartbeats every
``broker.heartbeat.interval.ms`` with the metadata offset it has applied; the controller unfences it once it has
caught up with its own registration, and fences it when its heartbeats stop for a session.  On SIGTERM the same
heartbeats, with want_shutdown, ask the controller to move this broker's partition leaderships away before it
stops (controlled shutdown).  All calls go through the ``ControllerChannel``, which follows the quorum leader.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable

from cluster.broker.controller_channel import ControllerChannel
from cluster.broker.controller_server import old_failover_bug
from cluster.broker.waits import wait_event
from cluster.core.clock import monotonic_ms
from cluster.core.errors import ErrorCode, KafkaError
from cluster.metadata import BrokerEndpoint
from cluster.metadata.controller_api import BrokerHeartbeatRequest, RegisterBrokerRequest

log = logging.getLogger("cluster.broker.cluster")

# SIGTERM: how long the broker waits for the controller to move its partition leaderships before it stops anyway
# (its session timeout fences it later).  Bounded so that a node without a quorum still stops promptly.
CONTROLLED_SHUTDOWN_TIMEOUT_MS = 3000
FENCED_RETRY_MS = 200     # registration and unfencing are retried this often
SHUTDOWN_POLL_S = 0.05


class BrokerLifecycleManager:
    def __init__(self, node_id: int, config, channel: ControllerChannel,
                 endpoints: Callable[[], list[tuple[str, str, int]]], applied_offset: Callable[[], int]) -> None:
        self.node_id = node_id
        self._rack = config.get("broker.rack")
        self._channel = channel
        self._endpoints = endpoints              # (listener name, host, port) of each advertised listener
        self._applied_offset = applied_offset    # the last metadata offset replayed here (-1: none)
        self.incarnation_id = uuid.uuid4()
        self.broker_epoch = -1
        self.fenced = True
        self._refused_with: ErrorCode | None = None   # last registration refusal, logged once
        self.heartbeat_interval_ms = config.get("broker.heartbeat.interval.ms")
        # One heartbeat attempt may take a third of a session: a controller that does not answer by then is
        # given up for the next quorum leader well before the session runs out.
        self.heartbeat_attempt_timeout_ms = max(config.get("broker.session.timeout.ms") // 3, 1)
        self._waits_on_a_moved_controller = old_failover_bug(config)   # the deliberate bug: see its docstring

    async def run(self) -> None:
        """Registers, then heartbeats, for as long as the broker runs (registers again when fenced out)."""
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
            await self._sleep_unless_controller_moves(
                (self.heartbeat_interval_ms if not self.fenced else FENCED_RETRY_MS) / 1000)

    async def _sleep_unless_controller_moves(self, seconds: float) -> None:
        """The pause between heartbeats, cut short by a new quorum leader: it hears from us at once, as Kafka's
        brokers send their next heartbeat to a new controller as soon as they learn of it."""
        if self._waits_on_a_moved_controller:
            await asyncio.sleep(seconds)
            return
        await wait_event(self._channel.controller_moved, seconds)   # not wait_for: see cluster/broker/waits.py

    async def _register(self) -> None:
        reply = await self._channel.register_broker(RegisterBrokerRequest(
            self.node_id, self.incarnation_id,
            tuple(BrokerEndpoint(name, host, port) for name, host, port in self._endpoints()), self._rack))
        if reply.error_code != ErrorCode.NONE:
            code = reply.error_code
            if code != self._refused_with:   # retried every 200 ms: said once, not five times a second
                log.error("broker registration refused by the controller: %s%s", code.name,
                          f" (node.id={self.node_id} has a live session: another node with this id, or our"
                          " previous incarnation until its session times out)"
                          if code == ErrorCode.DUPLICATE_BROKER_REGISTRATION else "")
            self._refused_with = code
            return
        self._refused_with = None
        self.broker_epoch = reply.broker_epoch
        log.info("registered with the controller: broker epoch %d", self.broker_epoch)

    def _heartbeat_request(self, want_shutdown: bool = False) -> BrokerHeartbeatRequest:
        return BrokerHeartbeatRequest(self.node_id, self.broker_epoch, self._applied_offset(), want_shutdown)

    async def _heartbeat(self) -> None:
        reply = await self._channel.broker_heartbeat(self._heartbeat_request(),
                                                     attempt_timeout_ms=self.heartbeat_attempt_timeout_ms)
        code = reply.error_code
        if code in (ErrorCode.STALE_BROKER_EPOCH, ErrorCode.BROKER_ID_NOT_REGISTERED):
            log.warning("heartbeat: %s; registering again", code.name)
            self.broker_epoch = -1
            self.fenced = True
            return
        if self.fenced and not reply.is_fenced:
            log.info("unfenced by the controller (metadata offset %d)", self._applied_offset())
        self.fenced = reply.is_fenced

    async def controlled_shutdown(self, timeout_ms: int = CONTROLLED_SHUTDOWN_TIMEOUT_MS) -> bool:
        """Asks the controller, by heartbeats with want_shutdown, to move this broker's partition leaderships
        until it answers that we may stop (the caller has stopped ``run``, whose heartbeats would race ours).

        Bounded by ``timeout_ms``; returns False when the controller did not agree in time (no quorum, say).
        """
        if self.broker_epoch < 0:
            return True   # never registered: nothing to move
        started_ms = monotonic_ms()
        deadline_ms = started_ms + timeout_ms
        while (remaining_ms := deadline_ms - monotonic_ms()) > 0:
            try:
                reply = await self._channel.broker_heartbeat(self._heartbeat_request(want_shutdown=True),
                                                             timeout_ms=remaining_ms)
            except KafkaError as exc:
                log.warning("controlled shutdown not confirmed: %s", exc.message)
                return False
            if reply.error_code != ErrorCode.NONE:
                log.warning("controlled shutdown refused: %s", reply.error_code.name)
                return False
            if reply.should_shutdown:
                log.info("controlled shutdown complete in %d ms: partition leadership moved off broker %d",
                         monotonic_ms() - started_ms, self.node_id)
                return True
            await asyncio.sleep(SHUTDOWN_POLL_S)
        log.warning("controlled shutdown not confirmed within %d ms; stopping anyway", timeout_ms)
        return False
