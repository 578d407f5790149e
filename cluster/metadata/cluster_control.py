"""Broker registrations, heartbeats, sessions and fencing (Kafka's ClusterControlManager with its
BrokerHeartbeatManager).

Why it exists: which brokers may lead is the cluster's first decision.  A broker registers (fenced), is unfenced
once a heartbeat shows it has caught up with the metadata log, is fenced when its session expires, and leaves by a
controlled shutdown; each step asks the replication manager to move leaderships away or to elect leaders again.

Broker *session* state (last heartbeat time) is soft, as in Kafka's ``BrokerHeartbeatManager``: it lives only on
the active controller and is never logged, so ``broker_heartbeat`` and ``register_broker`` update it directly,
on the caller's monotonic clock.  A new active controller starts every session fresh (a whole session from its
election), which delays fencing after a failover but never fences a live broker.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from cluster.core.errors import ErrorCode, invariant
from cluster.metadata.controller_config import (
    STALL_FRACTION_OF_SESSION,
    ControllerConfig,
    ControllerResult,
    ControlManager,
)
from cluster.metadata.image import BrokerEndpoint, BrokerRegistration, MetadataImage
from cluster.metadata.replication_control import ReplicationControlManager
from cluster.wire.metadata_records import (
    broker_registration_change_record as brc,
)
from cluster.wire.metadata_records import (
    fence_broker_record,
    register_broker_record,
    unfence_broker_record,
    unregister_broker_record,
)

__all__ = ["ClusterControlManager", "HeartbeatResult"]


@dataclass(frozen=True)
class HeartbeatResult:
    error_code: ErrorCode
    is_caught_up: bool = False
    is_fenced: bool = True
    should_shutdown: bool = False


class ClusterControlManager(ControlManager):
    """Broker decisions from the image that ``image()`` returns, and the soft session state."""

    def __init__(self, config: ControllerConfig, image: Callable[[], MetadataImage],
                 replication: ReplicationControlManager) -> None:
        self.config = config
        super().__init__(image)
        self._replication = replication
        self._last_contact_ms: dict[int, int] = {}  # soft session state: broker id -> last heartbeat
        self._last_tick_ms: int | None = None      # when ``tick`` last ran (see ran_without_a_stall)

    def register_broker(self, broker_id: int, incarnation_id: uuid.UUID, endpoints: Sequence[BrokerEndpoint],
                        rack: str | None, now_ms: int, broker_epoch: int) -> ControllerResult:
        """Registers (or re-registers) a broker, fenced; ``broker_epoch`` is the offset the
        RegisterBrokerRecord will get (the caller knows its log's next write offset)."""
        existing = self.image.cluster.broker(broker_id)
        # A live session of another incarnation means two processes claim one id.  A registration that is
        # fenced or finished its controlled shutdown belongs to a process that stopped cleanly (Kafka ends
        # the session at that point), so its restart may register at once.
        if (existing is not None and existing.incarnation_id != incarnation_id
                and not (existing.fenced or existing.in_controlled_shutdown)
                and self._session_alive(broker_id, now_ms)):
            return ControllerResult((), (ErrorCode.DUPLICATE_BROKER_REGISTRATION, -1))
        invariant(existing is None or broker_epoch > existing.broker_epoch, "broker epochs must increase")
        records: list = []
        if existing is not None:
            # The registration we replace is fenced from now on, and a new incarnation means the old
            # process is gone, possibly uncleanly: take the broker out of leaderships and ISRs now,
            # as if fenced, so that no partition is led by a fenced broker.
            records += self._replication.moves_away_from({broker_id}, remove_from_isr=True)
        records.append(register_broker_record.RegisterBrokerRecord(
            broker_id=broker_id, incarnation_id=incarnation_id, broker_epoch=broker_epoch,
            end_points=[register_broker_record.BrokerEndpoint(name=e.name, host=e.host, port=e.port,
                                                              security_protocol=e.security_protocol)
                        for e in endpoints],
            rack=rack, fenced=True, in_controlled_shutdown=False))
        self._last_contact_ms[broker_id] = now_ms
        return ControllerResult(tuple(records), (ErrorCode.NONE, broker_epoch))

    def broker_heartbeat(self, broker_id: int, broker_epoch: int, current_metadata_offset: int,
                         want_fence: bool, want_shutdown: bool, now_ms: int) -> ControllerResult:
        """Kafka's BrokerHeartbeat: refreshes the session and moves the broker between fenced,
        unfenced and controlled shutdown.  The response describes the state after the records."""
        registration = self.image.cluster.broker(broker_id)
        if registration is None:
            return ControllerResult((), HeartbeatResult(ErrorCode.BROKER_ID_NOT_REGISTERED))
        if registration.broker_epoch != broker_epoch:
            return ControllerResult((), HeartbeatResult(ErrorCode.STALE_BROKER_EPOCH))
        self._last_contact_ms[broker_id] = now_ms
        caught_up = current_metadata_offset >= registration.broker_epoch
        if want_shutdown:
            return self._controlled_shutdown(registration, caught_up)
        if registration.fenced:
            # A broker that began a controlled shutdown is not unfenced again: as in Kafka, it comes back only as
            # a new incarnation (registration), never to lead while it is still marked as shutting down.
            if want_fence or not caught_up or registration.in_controlled_shutdown:
                return ControllerResult((), HeartbeatResult(ErrorCode.NONE, caught_up, True, False))
            records = [unfence_broker_record.UnfenceBrokerRecord(id=broker_id, epoch=broker_epoch)]
            records += self._replication.elect_for_leaderless(broker_id)
            return ControllerResult(tuple(records), HeartbeatResult(ErrorCode.NONE, caught_up, False, False))
        if want_fence:
            return ControllerResult(self.fence_records(registration), HeartbeatResult(ErrorCode.NONE, caught_up, True))
        return ControllerResult((), HeartbeatResult(ErrorCode.NONE, caught_up, False, False))

    def _controlled_shutdown(self, registration: BrokerRegistration, caught_up: bool) -> ControllerResult:
        broker_id = registration.broker_id
        if registration.fenced:
            # A fenced broker leads nothing the controller could move: it may stop now.
            return ControllerResult((), HeartbeatResult(ErrorCode.NONE, caught_up, True, True))
        records: list = []
        if not registration.in_controlled_shutdown:
            records.append(brc.BrokerRegistrationChangeRecord(
                broker_id=broker_id, broker_epoch=registration.broker_epoch, in_controlled_shutdown=1))
        records += self._replication.moves_away_from({broker_id}, remove_from_isr=True)
        still_leads = any(p.leader == broker_id for _, _, p in self._replication.all_partitions())
        should_shutdown = not records and not still_leads
        return ControllerResult(tuple(records), HeartbeatResult(ErrorCode.NONE, caught_up, False, should_shutdown))

    def reset_sessions(self, now_ms: int, grace_ms: int | None = None) -> None:
        """A newly active controller gives every registered broker ``grace_ms`` (default: a whole session) from
        ``now_ms`` to send it a heartbeat.

        Session times are soft state that is never logged (as in Kafka, whose BrokerHeartbeatManager starts empty
        on a new active controller), so without this the first ``tick`` of a new controller would fence every
        broker it has not heard from yet.  Less than a whole session is unsafe: brokers may still be waiting on
        the old controller when it was frozen rather than dead, and a broker that heartbeats within its session
        must never be fenced.  (``grace_ms`` exists for the deliberate bug ``short_session_on_new_controller`` that
        the fault harnesses must catch.)
        """
        timeout_ms = self.config.broker_session_timeout_ms
        grace = timeout_ms if grace_ms is None else min(max(grace_ms, 0), timeout_ms)
        for broker_id in self.image.cluster.brokers:
            self._last_contact_ms[broker_id] = now_ms - timeout_ms + grace
        # Activation counts as a tick: a controller frozen between its election and its first tick must see
        # that stall like any other (the replication simulator's seed 2887 found it fencing live brokers).
        self._last_tick_ms = now_ms

    def ran_without_a_stall(self, now_ms: int) -> bool:
        last, self._last_tick_ms = self._last_tick_ms, now_ms
        return last is None or now_ms - last <= self.config.broker_session_timeout_ms // STALL_FRACTION_OF_SESSION

    def expired_brokers(self, now_ms: int) -> list[int]:
        """The unfenced brokers whose session expired by ``now_ms``, in id order."""
        return sorted(b for b, reg in self.image.cluster.brokers.items()
                      if not reg.fenced and not self._session_alive(b, now_ms))

    def next_session_deadline_ms(self) -> int | None:
        """When ``tick`` may next have work: the earliest session expiry of an unfenced broker."""
        deadlines = [self._last_contact_ms.get(b, 0) + self.config.broker_session_timeout_ms
                     for b, reg in self.image.cluster.brokers.items() if not reg.fenced]
        return min(deadlines) if deadlines else None

    def unregister_broker(self, broker_id: int) -> ControllerResult:
        registration = self.image.cluster.broker(broker_id)
        if registration is None:
            return ControllerResult((), ErrorCode.BROKER_ID_NOT_REGISTERED)
        records = self._replication.moves_away_from({broker_id}, remove_from_isr=True)
        records.append(unregister_broker_record.UnregisterBrokerRecord(
            broker_id=broker_id, broker_epoch=registration.broker_epoch))
        self._last_contact_ms.pop(broker_id, None)
        return ControllerResult(tuple(records), ErrorCode.NONE)

    def fence_records(self, registration: BrokerRegistration) -> tuple:
        records = [fence_broker_record.FenceBrokerRecord(id=registration.broker_id, epoch=registration.broker_epoch)]
        records += self._replication.moves_away_from({registration.broker_id}, remove_from_isr=True)
        return tuple(records)

    def _session_alive(self, broker_id: int, now_ms: int) -> bool:
        last = self._last_contact_ms.get(broker_id)
        return last is not None and now_ms - last < self.config.broker_session_timeout_ms
