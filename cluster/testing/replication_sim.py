"""A seeded simulation of partition replication: leader, followers, controller decisions and faults.

Why: the rules that keep an acknowledged ``acks=all`` write alive (epoch-based truncation, fsynced-only high
watermark, ISR-only election, epoch-checked AlterPartition; replication.md §2 and §5) fail only under rare
interleavings of crashes, pauses and a misbehaving network.  As ``raft_sim`` does for KRaft, this runs the
*real* pure cores -- ``PartitionReplicaState`` (the role transitions, the leader's answer to follower fetches
and whether to park them, the follower's fetch-ahead decision, ISR proposals; with ``PartitionLeaderState``
and ``FollowerFetchState`` inside), the same class the broker's ``Partition`` drives, and the real
``QuorumController`` (it is pure and decides by records, so it is driven directly; the metadata quorum itself is
tested by raft_sim and is modelled here as a reliable, instantly committing log) -- under thousands of
reproducible fault schedules, and checks the safety properties after every event:

  * a leader's high watermark never decreases within its leader epoch;
  * committed data is never lost: every acknowledged batch (offset range, payload) is in the log of every
    later leader at the same offset, and no offset is acknowledged twice with different payloads;
  * no replica truncates below its own high watermark;
  * a follower appends only what continues its log (no gap between its log end and the leader's answer);
  * after healing (network reliable, every broker running) and quiescing, all replicas hold identical logs.

What is simulated: one partition with N replicas, each a fake log (batches of (offset range, leader epoch,
payload id)), an fsynced prefix, a log start offset that retention moves (never past what is committed and
fsynced), and the real ``LeaderEpochCache`` kept in memory; a fake clock; a network
that delays, drops, duplicates and (through random delays) reorders fetch requests/responses, heartbeats and
AlterPartition calls, and can cut links; crashes (of one broker, of several at once, or of the leader right
after an acknowledgement) that lose the unfsynced suffix of the log and restart the broker with a new broker
epoch once the controller lets it re-register; pauses (SIGSTOP), which let the broker's session expire so the controller
fences it and unfences it once it heartbeats again.  Clients produce with acks=all to whichever broker thinks
it leads; a batch counts as acknowledged when that leader's ``check_acks_all`` answers done with NONE.

``BrokenVariant`` switches on one deliberate bug so the tests can show the checks catch it:
``truncate_to_hw`` (pre-KIP-101 follower: truncate to the local high watermark on a leader change and fetch
without a last fetched epoch), ``hw_counts_unflushed`` (the leader's unfsynced log end counts toward the high
watermark), ``elect_outside_isr`` (the controller may elect a replica outside the ISR: the real controller with
``unclean.leader.election.enable=true``, the Jepsen 2013 failure), ``fetch_ahead_counts_unflushed`` (a follower
fetching ahead of its fsync, as the broker does under a backlog, is credited with its whole log end instead of its
durable offset), ``short_session_on_new_controller`` (a newly elected controller gives brokers half a session
instead of a whole one; the paused-controller failure of issue 16), ``drop_producer_state_on_become_leader`` (a
new leader forgets its idempotent producers, so a retry of a batch it already holds is appended again),
``skip_fetch_offset_check`` (the leader answers a fetch below its log start offset with what it holds from there
on instead of OFFSET_OUT_OF_RANGE).  The replica-side variants are switched on inside ``PartitionReplicaState``
(``BrokenReplica``), so the real code is what breaks.  Followers fetch ahead of their fsync when the leader had
more than one answer carries (a per-seed answer size keeps that frequent), as the broker does, and leaders park a
fetch at their log end until they append or the seed's replica.fetch.wait.max.ms passes (0: never).

The active controller can be frozen too: its calls wait until it is continued, and past an election delay a new
controller takes over the same committed metadata (``QuorumController.reset_sessions``, as the broker's shell
calls it) while brokers keep calling the frozen one until they learn of the new one.  One more safety property
is checked at every fence: a broker is fenced only by a controller that has been active for a whole session and
has not heard from it for that session.

Clients are idempotent producers that behave as librdkafka does (``SimProducer``): numbered batches retried
with the same numbers until acknowledged, up to five in flight, and a new producer id with renumbered batches on
OUT_OF_ORDER_SEQUENCE_NUMBER.  Leaders deduplicate with the real ``ProducerStateTable``, rebuilt from the log
whenever it is cut, and check min.insync.replicas before sequences as the broker does.  So one more property:
no committed write is duplicated (each client batch is acknowledged at one offset and committed once).

    python -m cluster.testing.replication_sim --seeds 500 [--start 0] [--replicas 3] [--steps 3000]
           [--broken truncate_to_hw|hw_counts_unflushed|elect_outside_isr|fetch_ahead_counts_unflushed|
                     short_session_on_new_controller|drop_producer_state_on_become_leader|
                     skip_fetch_offset_check] [--keep-going]
"""

from __future__ import annotations

import argparse
import dataclasses
import heapq
import random
import sys
import time
import traceback
import uuid
from bisect import bisect_right
from collections.abc import Callable

from cluster.core.errors import ErrorCode, InvariantViolation, KafkaError
from cluster.metadata.controller import (
    STALL_FRACTION_OF_SESSION,
    ControllerConfig,
    NewTopic,
    QuorumController,
)
from cluster.metadata.image import NO_LEADER, BrokerEndpoint, PartitionRegistration
from cluster.replication.follower import (
    FetchAction,
    FetchPosition,
    FollowerFetchState,
    TruncationBelowHighWatermarkError,
)
from cluster.replication.leader import (
    UNDEFINED_EPOCH,
    AlterPartitionOutcome,
    EpochEndOffset,
    PartitionLeaderState,
    PendingIsrChange,
)
from cluster.replication.producer_state import NO_PRODUCER_ID, ProducerStateTable
from cluster.replication.replica import BrokenReplica, PartitionReplicaState
from cluster.storage.epoch_cache import LeaderEpochCache

__all__ = ["BrokenVariant", "ReplicationSim", "ReplicationSimResult", "SimViolation", "main"]

CONTROLLER_ID = 0
PRODUCER_EPOCH = 0
MAX_IN_FLIGHT = 5   # librdkafka's max.in.flight for an idempotent producer
PRODUCERS = 4
TOPIC = "sim-topic"
MIN_INSYNC_REPLICAS = 2
FETCH_TIMEOUT_MS = 1000
LIVENESS_CHECK_MS = 100
DEFAULT_STEPS = 3000  # about 10-20 s of simulated time, enough for several crashes and elections per seed


class BrokenVariant:
    """Names of the deliberate bugs (see the module docstring)."""

    TRUNCATE_TO_HW = "truncate_to_hw"
    HW_COUNTS_UNFLUSHED = "hw_counts_unflushed"
    ELECT_OUTSIDE_ISR = "elect_outside_isr"
    FETCH_AHEAD_COUNTS_UNFLUSHED = "fetch_ahead_counts_unflushed"
    SHORT_SESSION_ON_NEW_CONTROLLER = "short_session_on_new_controller"
    DROP_PRODUCER_STATE_ON_BECOME_LEADER = "drop_producer_state_on_become_leader"
    SKIP_FETCH_OFFSET_CHECK = "skip_fetch_offset_check"
    ALL = (TRUNCATE_TO_HW, HW_COUNTS_UNFLUSHED, ELECT_OUTSIDE_ISR, FETCH_AHEAD_COUNTS_UNFLUSHED,
           SHORT_SESSION_ON_NEW_CONTROLLER, DROP_PRODUCER_STATE_ON_BECOME_LEADER, SKIP_FETCH_OFFSET_CHECK)


class SimViolation(Exception):
    """A safety or liveness property broke; ``kind`` names which one."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(f"[{kind}] {message}")
        self.kind = kind


@dataclasses.dataclass(frozen=True, slots=True)
class Batch:
    base_offset: int
    count: int
    leader_epoch: int
    payload_id: int          # which client records these are: the same id twice in a log is a duplicate
    producer_id: int = NO_PRODUCER_ID
    first_sequence: int = -1

    @property
    def end_offset(self) -> int:
        return self.base_offset + self.count

    def tail_from(self, offset: int) -> Batch:
        """The part of the batch from ``offset`` on (only the broken follower ever fetches mid-batch)."""
        return dataclasses.replace(self, base_offset=offset, count=self.end_offset - offset)


@dataclasses.dataclass(frozen=True, slots=True)
class Profile:
    """Per-seed fault knobs (swarm testing): rates per simulated second, delays in ms."""

    drop_probability: float
    duplicate_probability: float
    delay_max_ms: int
    long_delay_probability: float
    crash_rate_per_s: float
    correlated_crash_probability: float
    crash_after_ack_probability: float  # targets the window where only the ISR's disks hold the write
    pause_rate_per_s: float
    controller_pause_rate_per_s: float  # the active controller frozen; past an election delay, a new one takes over
    partition_rate_per_s: float
    produce_rate_per_s: float
    fsync_delay_max_ms: tuple[int, ...]  # per broker: a slow disk widens every durability window
    metadata_delay_max_ms: int
    session_timeout_ms: int
    replica_lag_time_max_ms: int
    retention_rate_per_s: float   # how often a replica deletes committed batches from the start of its log
    fetch_max_batches: int        # batches per fetch answer: small answers leave followers a backlog
    fetch_max_wait_ms: int        # replica.fetch.wait.max.ms: how long a leader parks a fetch (0: never)

    @classmethod
    def random(cls, rng: random.Random) -> Profile:
        return cls(
            drop_probability=rng.choice((0.0, 0.01, 0.05, 0.2)),
            duplicate_probability=rng.choice((0.0, 0.02, 0.1)),
            delay_max_ms=rng.choice((5, 20, 100)),
            long_delay_probability=rng.choice((0.0, 0.01, 0.05)),
            crash_rate_per_s=rng.choice((0.0, 0.2, 0.5, 1.0)),
            correlated_crash_probability=rng.choice((0.0, 0.3, 0.7)),
            crash_after_ack_probability=rng.choice((0.0, 0.0, 0.02, 0.1)),
            pause_rate_per_s=rng.choice((0.0, 0.2, 0.5)),
            controller_pause_rate_per_s=rng.choice((0.0, 0.1, 0.3)),
            partition_rate_per_s=rng.choice((0.0, 0.2, 0.5)),
            produce_rate_per_s=rng.choice((10.0, 40.0, 100.0)),
            fsync_delay_max_ms=tuple(rng.choice((1, 10, 50, 300)) for _ in range(16)),
            metadata_delay_max_ms=rng.choice((5, 50, 300)),
            session_timeout_ms=rng.choice((1000, 3000)),
            replica_lag_time_max_ms=rng.choice((300, 1000, 3000)),
            retention_rate_per_s=rng.choice((0.0, 0.5, 2.0)),
            fetch_max_batches=rng.choice((1, 2, 4)),
            fetch_max_wait_ms=rng.choice((0, 50, 500)))


@dataclasses.dataclass(frozen=True, slots=True)
class ReplicationSimResult:
    seed: int
    steps: int
    sim_time_ms: int
    violation: SimViolation | None
    traceback_text: str
    acked_batches: int
    leaders_elected: int
    crashes: int

    @property
    def ok(self) -> bool:
        return self.violation is None


# -- messages -----------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True, slots=True)
class FollowerFetchMessage:
    """One follower fetch on the simulated network (the broker's ``ReplicaFetchRequest``, one partition)."""

    follower_id: int
    incarnation: int
    broker_epoch: int
    position: FetchPosition


@dataclasses.dataclass(frozen=True, slots=True)
class FollowerFetchReply:
    incarnation: int
    position: FetchPosition
    error_code: ErrorCode
    high_watermark: int = -1
    diverging_epoch: EpochEndOffset | None = None
    batches: tuple[Batch, ...] = ()
    leader_log_end_offset: int = -1
    log_start_offset: int = -1


@dataclasses.dataclass(frozen=True, slots=True)
class AlterPartitionRequest:
    leader_id: int
    incarnation: int
    broker_epoch: int
    change: PendingIsrChange


@dataclasses.dataclass(frozen=True, slots=True)
class AlterPartitionResponse:
    incarnation: int
    change: PendingIsrChange
    error_code: ErrorCode
    leader_epoch: int = -1
    partition_epoch: int = -1
    isr: tuple[int, ...] = ()


@dataclasses.dataclass(frozen=True, slots=True)
class Heartbeat:
    broker_id: int
    broker_epoch: int
    metadata_offset: int


# -- one idempotent producer ----------------------------------------------------------------------------------
class SimProducer:
    """An idempotent producer as librdkafka runs one: numbered batches, retried with the same numbers until
    acknowledged, to one leader at a time, at most MAX_IN_FLIGHT; on OUT_OF_ORDER_SEQUENCE_NUMBER it takes a new
    producer id and renumbers every unacknowledged batch from 0 (KIP-360's epoch bump)."""

    def __init__(self, producer_id: int) -> None:
        self.producer_id = producer_id
        self.next_sequence = 0
        self.unacked: dict[int, tuple[int, int]] = {}   # first sequence -> (record count, payload id), in order
        self.bumps = 0

    def add(self, count: int, payload_id: int) -> int:
        first_sequence, self.next_sequence = self.next_sequence, self.next_sequence + count
        self.unacked[first_sequence] = (count, payload_id)
        return first_sequence

    def bump_epoch(self) -> None:
        self.bumps += 1
        self.producer_id += 1
        pending, self.unacked, self.next_sequence = list(self.unacked.values()), {}, 0
        for count, payload_id in pending:
            self.add(count, payload_id)


# -- one replica ----------------------------------------------------------------------------------------------
class SimReplica:
    """One broker's copy of the partition (the ``ReplicaLogView`` its ``PartitionReplicaState`` reads) and the
    broker's memory: that state machine, its parked fetches and its waiting produces."""

    def __init__(self, broker_id: int, broken: str | None = None) -> None:
        self.broker_id = broker_id
        self.broken = () if broken is None else (broken,)
        self.alive = True
        self.incarnation = 0
        self.known_controller_epoch = 0   # the controller incarnation its calls go to
        self.broker_epoch = -1
        self.paused_until_ms = 0
        self.batches: list[Batch] = []
        self.log_start_offset = 0
        # Batches retention deleted: producer state still knows them, so a retry is answered with their offsets.
        self.deleted_batches: dict[int, Batch] = {}
        self.durable_log_end_offset = 0
        self.epoch_cache = LeaderEpochCache(None, f"sim-{broker_id}")  # type: ignore[arg-type]  # never flushed
        self.high_watermark = 0   # the highest this broker knew: the floor checked against truncation
        self.high_watermark_checkpoint = 0
        self.log_version = 0
        self.flush_in_flight = False
        self.state = self.new_state(0, None)
        self.image = None  # the metadata image this broker has applied
        self.metadata_offset = -1
        self.pending_produces: list[Batch] = []
        self.parked_fetches: list[FollowerFetchMessage] = []
        self.alter_sends = 0
        self.hide_last_fetched_epoch = False

    def new_state(self, high_watermark: int, topic_id: uuid.UUID | None) -> PartitionReplicaState:
        """The broker's memory after a (re)start: nothing but what the log and the checkpoint say."""
        state = PartitionReplicaState(topic_id, 0, self.broker_id, self, high_watermark=high_watermark,
                                      broken=self.broken)
        for batch in self.batches:
            self._replay_producer(batch, state.producer_state)
        return state

    @property
    def leader(self) -> PartitionLeaderState | None:
        return self.state.leader_state

    @property
    def follower(self) -> FollowerFetchState | None:
        return self.state.follower_state

    @property
    def producer_state(self) -> ProducerStateTable:
        return self.state.producer_state

    # ReplicaLogView
    @property
    def log_end_offset(self) -> int:
        return self.batches[-1].end_offset if self.batches else self.log_start_offset

    @property
    def latest_epoch(self) -> int:
        if self.hide_last_fetched_epoch:
            return UNDEFINED_EPOCH
        latest = self.epoch_cache.latest_epoch
        return UNDEFINED_EPOCH if latest is None else latest

    def end_offset_for_epoch(self, leader_epoch: int) -> tuple[int, int]:
        return self.epoch_cache.end_offset_for(leader_epoch, self.log_end_offset)

    # log changes
    def append(self, batches: list[Batch], *, replay_producers: bool = True) -> None:
        """Appends at the log end; a follower's append also replays the producers (a leader's state machine
        does that itself, in ``on_leader_append``)."""
        for batch in batches:
            if batch.base_offset != self.log_end_offset:
                raise InvariantViolation(f"broker {self.broker_id}: batch {batch} does not start at the log end "
                                         f"{self.log_end_offset}")
            self.epoch_cache.assign(batch.leader_epoch, batch.base_offset, flush=False)
            self.batches.append(batch)
            if replay_producers:
                self._replay_producer(batch, self.producer_state)

    @staticmethod
    def _replay_producer(batch: Batch, producer_state: ProducerStateTable) -> None:
        producer_state.replay(batch.producer_id, PRODUCER_EPOCH, batch.first_sequence, batch.count - 1,
                              batch.base_offset, 0)

    def truncate_to(self, offset: int) -> None:
        """Kafka truncates whole batches: a batch reaching past ``offset`` goes entirely.  Below the log start
        the log restarts at ``offset``, as PartitionLog's does."""
        if offset < self.log_start_offset:
            self.reset_to(offset)
            return
        while self.batches and self.batches[-1].end_offset > offset:
            self.batches.pop()
        self.epoch_cache.truncate_from_end(self.log_end_offset, flush=False)
        self._after_cut()

    def reset_to(self, offset: int) -> None:
        """An empty log starting at ``offset`` (fsynced at once, as PartitionLog.reset_to is)."""
        self.batches = []
        self.log_start_offset = offset
        self.epoch_cache.clear(flush=False)
        self.durable_log_end_offset = offset
        self._after_cut()

    def _after_cut(self) -> None:
        self.durable_log_end_offset = min(self.durable_log_end_offset, self.log_end_offset)
        self.log_version += 1
        self.state.producer_state = ProducerStateTable()   # as the broker does: replay what is left
        for batch in self.batches:
            self._replay_producer(batch, self.producer_state)

    def delete_before(self, offset: int) -> None:
        """Retention: whole batches ending at or before ``offset`` go; the log start moves to the next one."""
        kept = [b for b in self.batches if b.end_offset > offset]
        if len(kept) == len(self.batches):
            return
        self.log_start_offset = kept[0].base_offset if kept else self.log_end_offset
        self.deleted_batches.update((b.base_offset, b) for b in self.batches if b.end_offset <= offset)
        self.batches = kept
        self.epoch_cache.truncate_from_start(self.log_start_offset, flush=False)

    def batch_at(self, base_offset: int) -> Batch | None:
        if base_offset < self.log_start_offset:
            return self.deleted_batches.get(base_offset)
        i = bisect_right([b.base_offset for b in self.batches], base_offset) - 1
        return self.batches[i] if i >= 0 and self.batches[i].base_offset == base_offset else None

    def read_from(self, offset: int, max_batches: int) -> tuple[Batch, ...]:
        out = []
        for batch in self.batches:
            if batch.end_offset > offset:
                out.append(batch if batch.base_offset >= offset else batch.tail_from(offset))
                if len(out) == max_batches:
                    break
        return tuple(out)


# -- the simulation -------------------------------------------------------------------------------------------
class ReplicationSim:
    """See the module docstring.  ``run(steps)`` never raises: a violation comes back in the result."""

    def __init__(self, seed: int, *, replicas: int = 3, broken: str | None = None,
                 profile: Profile | None = None, liveness_bound_ms: int = 60_000) -> None:
        if broken is not None and broken not in BrokenVariant.ALL:
            raise ValueError(f"unknown broken variant {broken!r}")
        self.seed = seed
        master = random.Random(seed)
        self.rng = random.Random(master.getrandbits(64))
        self.net_rng = random.Random(master.getrandbits(64))
        self.profile = profile or Profile.random(master)
        self.broken = broken
        self.liveness_bound_ms = liveness_bound_ms
        self.broker_ids = tuple(range(1, replicas + 1))
        replica_broken = broken if broken in BrokenReplica.ALL else None
        self.replicas = {b: SimReplica(b, replica_broken) for b in self.broker_ids}
        config = ControllerConfig(broker_session_timeout_ms=self.profile.session_timeout_ms,
                                  unclean_leader_election_enable=broken == BrokenVariant.ELECT_OUTSIDE_ISR)
        self.controller = QuorumController(config, rng=random.Random(master.getrandbits(64)))
        self.metadata_offset = -1
        self.topic_id: uuid.UUID | None = None
        self.now_ms = 0
        self.steps = 0
        self.crashes = 0
        self.leaders_elected = 0
        self._queue: list[tuple[int, int, int | None, Callable[[], None]]] = []
        self._sequence = 0
        self._cut_links: set[tuple[int, int]] = set()
        self._healing = False
        self._next_payload_id = 0
        self.producers = [SimProducer(1000 * (i + 1)) for i in range(PRODUCERS)]
        self._acked_payloads: dict[int, int] = {}       # payload id -> base offset it was acknowledged at
        self.acked: dict[int, Batch] = {}  # base offset -> acknowledged batch
        self._hw_seen: dict[tuple[int, int], int] = {}  # (broker, leader epoch) -> highest HW observed
        # The active controller: which incarnation (a new one after an election), whether it is frozen, when it was
        # elected, and when it last heard each broker (to check that it fences only brokers silent for a session).
        self.controller_epoch = 0
        self.controller_paused_until_ms = 0
        self.controller_elected_ms = 0
        self._heard_from_ms: dict[int, int] = {}
        self._controller_pauses: list[tuple[int, int]] = []   # (from, until) of each freeze

    # == running ==============================================================================================
    def run(self, steps: int) -> ReplicationSimResult:
        violation, trace = None, ""
        try:
            self._start()
            while self.steps < steps and self._queue:
                self._step()
            self._heal_and_quiesce()
        except SimViolation as exc:
            violation, trace = exc, traceback.format_exc()
        except (InvariantViolation, TruncationBelowHighWatermarkError) as exc:
            kind = "truncate-below-hw" if isinstance(exc, TruncationBelowHighWatermarkError) else "core-invariant"
            violation, trace = SimViolation(kind, str(exc)), traceback.format_exc()
        return ReplicationSimResult(self.seed, self.steps, self.now_ms, violation, trace, len(self.acked),
                                    self.leaders_elected, self.crashes)

    def _schedule(self, at_ms: int, broker: int | None, action: Callable[[], None]) -> None:
        self._sequence += 1
        heapq.heappush(self._queue, (max(at_ms, self.now_ms), self._sequence, broker, action))

    def _step(self) -> None:
        at_ms, _, broker, action = heapq.heappop(self._queue)
        self.now_ms = at_ms
        if broker is not None:
            replica = self.replicas[broker]
            if replica.paused_until_ms > at_ms:  # a stopped process runs nothing until it is continued
                self._schedule(replica.paused_until_ms, broker, action)
                return
        self.steps += 1
        action()
        self._after_step()

    def _start(self) -> None:
        for b in self.broker_ids:
            self._register(self.replicas[b])
            self._commit(self.controller.broker_heartbeat(b, self.replicas[b].broker_epoch, self.metadata_offset,
                                                          False, False, 0).records)
        result = self.controller.create_topics([NewTopic(TOPIC, 1, len(self.broker_ids))])
        self._commit(result.records)
        self.topic_id = result.response[0].topic_id
        for b in self.broker_ids:
            self._deliver_metadata(b)
            self._start_timers(self.replicas[b])
        # It becomes the active controller as the runtime's does; reset_sessions also starts its stall clock, so a
        # freeze before its first tick is seen as a stall too.
        self.controller.reset_sessions(self.now_ms)
        self._schedule_controller_tick()
        self._schedule_chaos()

    # == controller ===========================================================================================
    def _commit(self, records) -> None:
        if not records:
            return
        self.metadata_offset += len(records)
        self.controller.replay_batch(records, self.metadata_offset)
        self.controller.check_invariants()
        for b in self.broker_ids:
            if self.replicas[b].alive:
                self._schedule(self.now_ms + self.rng.randint(1, self.profile.metadata_delay_max_ms), b,
                               lambda b=b: self._deliver_metadata(b))

    def _register(self, replica: SimReplica) -> bool:
        """Registers a (re)started broker; its broker epoch is the offset of its RegisterBrokerRecord.

        False while the controller still holds a live session of the previous incarnation (Kafka's broker
        retries until that session expires)."""
        endpoints = [BrokerEndpoint("PLAINTEXT", "sim", 9092 + replica.broker_id, 0)]
        incarnation = uuid.UUID(int=self.rng.getrandbits(128))
        # Decide first on a scratch copy (no sessions, nothing kept) to learn where the record will land.
        scratch = QuorumController(self.controller.config, rng=random.Random(0), image=self.controller.image)
        probe = scratch.register_broker(replica.broker_id, incarnation, endpoints, None, self.now_ms,
                                        self.metadata_offset + 1_000_000)
        broker_epoch = self.metadata_offset + len(probe.records)
        result = self.controller.register_broker(replica.broker_id, incarnation, endpoints, None, self.now_ms,
                                                 broker_epoch)
        if result.response[0] != ErrorCode.NONE:
            return False
        replica.broker_epoch = broker_epoch
        replica.alive = True
        replica.known_controller_epoch = self.controller_epoch
        self._heard_from_ms[replica.broker_id] = self.now_ms
        self._commit(result.records)
        return True

    def _schedule_controller_tick(self) -> None:
        def tick() -> None:
            if self.controller_paused_until_ms <= self.now_ms:
                result = self.controller.tick(self.now_ms)
                self._check_fenced_only_silent_brokers(result.response)
                self._commit(result.records)
            self._schedule_controller_tick()
        self._schedule(self.now_ms + 100, None, tick)

    def _on_heartbeat(self, beat: Heartbeat) -> None:
        result = self.controller.broker_heartbeat(beat.broker_id, beat.broker_epoch, beat.metadata_offset,
                                                  False, False, self.now_ms)
        if result.response.error_code == ErrorCode.NONE:   # not a late one from a previous incarnation
            self._heard_from_ms[beat.broker_id] = self.now_ms
        self._commit(result.records)

    def _send_to_controller(self, src: int, deliver: Callable[[], None]) -> None:
        """A call to the controller ``src`` believes active: a frozen one takes it when it is continued, and a
        controller that was replaced meanwhile never answers it (the broker learns of the new one later)."""
        addressed_to = self.replicas[src].known_controller_epoch

        def arrive() -> None:
            if addressed_to != self.controller_epoch:
                return
            if self.controller_paused_until_ms > self.now_ms:
                self._schedule(self.controller_paused_until_ms, None, arrive)
                return
            deliver()
        self._send(src, CONTROLLER_ID, arrive)

    def _controller_pause_fault(self) -> None:
        """SIGSTOP of the active controller; if it stays stopped past an election delay (Raft's fetch timeout), a
        new controller is elected on the same committed metadata, which is what QuorumController models.  Unless a
        majority of the quorum is frozen with it: then it stays the controller and resumes with every session
        seemingly expired (it must not fence brokers for its own pause)."""
        if self.controller_paused_until_ms > self.now_ms:
            return
        session_ms = self.profile.session_timeout_ms
        pause_ms = self.rng.randint(100, 3 * session_ms)
        election_delay_ms = self.rng.randint(session_ms // 6, session_ms // 3)
        self.controller_paused_until_ms = self.now_ms + pause_ms
        self._controller_pauses.append((self.now_ms, self.now_ms + pause_ms))
        majority_frozen_too = self.rng.random() < 0.3
        if pause_ms > election_delay_ms and not majority_frozen_too:
            self._schedule(self.now_ms + election_delay_ms, None, self._elect_new_controller)

    def _elect_new_controller(self) -> None:
        self.controller_epoch += 1
        self._end_controller_pause()   # the new one runs; the frozen one is no longer asked
        self.controller_elected_ms = self.now_ms
        grace_ms = None
        if self.broken == BrokenVariant.SHORT_SESSION_ON_NEW_CONTROLLER:
            grace_ms = self.profile.session_timeout_ms // 2
        self.controller.reset_sessions(self.now_ms, grace_ms)
        # Brokers learn of it from the metadata quorum, some only after their call to the frozen one gave up.
        for b in self.broker_ids:
            self._schedule(self.now_ms + self.rng.randint(1, self.profile.session_timeout_ms // 2), b,
                           lambda b=b, epoch=self.controller_epoch: self._learn_controller(b, epoch))

    def _end_controller_pause(self) -> None:
        if self.controller_paused_until_ms > self.now_ms:
            self.controller_paused_until_ms = self.now_ms
            start, _until = self._controller_pauses[-1]
            self._controller_pauses[-1] = (start, self.now_ms)

    def _learn_controller(self, b: int, epoch: int) -> None:
        replica = self.replicas[b]
        replica.known_controller_epoch = max(replica.known_controller_epoch, epoch)

    def _check_fenced_only_silent_brokers(self, fenced: tuple[int, ...]) -> None:
        """Issue 16: a broker is fenced only by a controller that has been active for a whole session and has not
        heard from it for that session, and that was not frozen itself for a real part of it (more than
        ``session / STALL_FRACTION_OF_SESSION``, a stall it must notice); a broker that heartbeats within its
        session is never fenced."""
        session_ms = self.profile.session_timeout_ms
        stall_ms = session_ms // STALL_FRACTION_OF_SESSION
        # A freeze of the controller longer than a stall restarts every session, as an election does.
        running_since_ms = max([self.controller_elected_ms] + [end for start, end in self._controller_pauses
                                                               if end - start > stall_ms and end <= self.now_ms])
        for b in fenced:
            silent_ms = self.now_ms - max(running_since_ms, self._heard_from_ms.get(b, 0))
            if silent_ms < session_ms:
                raise SimViolation("fenced-live-broker", f"broker {b} fenced by a controller that has run {silent_ms} "
                                                         f"ms without hearing from it since its election, its last "
                                                         f"stall or the broker's last heartbeat (session "
                                                         f"{session_ms} ms)")

    def _on_alter_partition(self, request: AlterPartitionRequest) -> None:
        change = request.change
        result = self.controller.alter_partition(
            request.leader_id, request.broker_epoch, self.topic_id, 0, change.leader_epoch, change.partition_epoch,
            change.new_isr, dict(change.new_isr_with_epochs))
        self._commit(result.records)
        r = result.response
        response = AlterPartitionResponse(request.incarnation, change, r.error_code, r.leader_epoch,
                                          r.partition_epoch, tuple(r.isr))
        self._send(CONTROLLER_ID, request.leader_id, lambda: self._on_alter_partition_response(
            request.leader_id, response))

    # == network ==============================================================================================
    def _send(self, src: int, dst: int, deliver: Callable[[], None]) -> None:
        p = self.profile
        if self._healing:
            copies, drop = 1, False
        else:
            copies = 2 if self.net_rng.random() < p.duplicate_probability else 1
            drop = (src, dst) in self._cut_links or self.net_rng.random() < p.drop_probability
        if drop:
            return
        target = None if dst == CONTROLLER_ID else dst
        for _ in range(copies):
            delay = self.net_rng.randint(1, p.delay_max_ms)
            if not self._healing and self.net_rng.random() < p.long_delay_probability:
                delay += self.net_rng.randint(100, 2000)

            def arrive(src=src, dst=dst) -> None:
                if (src, dst) not in self._cut_links:  # a cut also swallows what is in flight
                    deliver()
            self._schedule(self.now_ms + delay, target, arrive)

    # == broker timers ========================================================================================
    def _start_timers(self, replica: SimReplica) -> None:
        incarnation = replica.incarnation
        b = replica.broker_id

        def fetch_tick() -> None:
            if replica.alive and replica.incarnation == incarnation:
                self._maybe_fetch(replica)
                self._schedule(self.now_ms + 20, b, fetch_tick)

        def heartbeat_tick() -> None:
            if replica.alive and replica.incarnation == incarnation:
                replica.high_watermark_checkpoint = replica.high_watermark
                beat = Heartbeat(b, replica.broker_epoch, max(replica.metadata_offset, 0))
                self._send_to_controller(b, lambda: self._on_heartbeat(beat))
                self._schedule(self.now_ms + self.profile.session_timeout_ms // 4, b, heartbeat_tick)

        def isr_tick() -> None:
            if replica.alive and replica.incarnation == incarnation:
                if replica.leader is not None:
                    self._send_alter(replica, replica.leader.maybe_shrink_isr(self.now_ms))
                self._schedule(self.now_ms + self.profile.replica_lag_time_max_ms // 2, b, isr_tick)

        self._schedule(self.now_ms + 1, b, fetch_tick)
        self._schedule(self.now_ms + 1, b, heartbeat_tick)
        self._schedule(self.now_ms + 1, b, isr_tick)

    def _maybe_flush(self, replica: SimReplica) -> None:
        if replica.flush_in_flight or replica.durable_log_end_offset >= replica.log_end_offset:
            return
        replica.flush_in_flight = True
        target, version, incarnation = replica.log_end_offset, replica.log_version, replica.incarnation

        def flushed() -> None:
            if not replica.alive or replica.incarnation != incarnation:
                return
            replica.flush_in_flight = False
            if replica.log_version == version:
                replica.durable_log_end_offset = max(replica.durable_log_end_offset, target)
                replica.state.on_local_flushed(self.now_ms)
            self._maybe_flush(replica)
            self._maybe_fetch(replica)
        self._schedule(self.now_ms + self.rng.randint(1, self.profile.fsync_delay_max_ms[replica.broker_id % 16]), replica.broker_id,
                       flushed)

    # == metadata on a broker =================================================================================
    def _deliver_metadata(self, b: int) -> None:
        replica = self.replicas[b]
        if not replica.alive:
            return
        replica.image = self.controller.image
        replica.metadata_offset = self.metadata_offset
        partition = replica.image.topics.by_id[self.topic_id].partitions[0]
        self._apply_partition(replica, partition)
        cluster = replica.image.cluster

        def is_active(broker_id: int) -> bool:
            registration = cluster.broker(broker_id)
            return registration is not None and registration.is_active
        replica.state.refresh_isr_eligibility(is_active)

    def _apply_partition(self, replica: SimReplica, p: PartitionRegistration) -> None:
        """What the broker's ReplicaManager.apply_local_changes does, through the same state machine."""
        state = replica.state
        if p.leader == replica.broker_id:
            change = state.become_leader(p.leader_epoch, p.partition_epoch, p.replicas, p.isr, self.now_ms,
                                         self.profile.replica_lag_time_max_ms, MIN_INSYNC_REPLICAS)
        else:
            change = state.become_follower(p.leader, p.leader_epoch, p.replicas, p.isr, self.now_ms,
                                           fetch_backoff_ms=100)
        if change.stopped_leading:
            replica.pending_produces = []  # answered NOT_LEADER_OR_FOLLOWER: not acknowledged
        if change.assign_epoch_start:
            replica.epoch_cache.assign(p.leader_epoch, replica.log_end_offset, flush=False)
        if change.new_leader_epoch:
            self._check_acked_present(replica, f"new leader {replica.broker_id} epoch {p.leader_epoch}")
            self.leaders_elected += 1
        if change.fetch_restarted:
            self._on_new_leader_as_follower(replica)

    def _on_new_leader_as_follower(self, replica: SimReplica) -> None:
        if self.broken == BrokenVariant.TRUNCATE_TO_HW:
            # Pre-KIP-101: truncate to the local high watermark and trust offsets alone from then on.
            replica.hide_last_fetched_epoch = True
            replica.truncate_to(replica.high_watermark)
        self._maybe_fetch(replica)

    # == fetch ================================================================================================
    def _maybe_fetch(self, replica: SimReplica) -> None:
        follower = replica.follower
        if follower is None or not replica.alive:
            return
        position = replica.state.next_fetch(self.now_ms)
        if position is None:
            return
        request = FollowerFetchMessage(replica.broker_id, replica.incarnation, replica.broker_epoch, position)
        self._send(replica.broker_id, position.leader_id, lambda: self._on_fetch(position.leader_id, request))

        def timeout(follower=follower) -> None:
            if replica.follower is follower and follower.in_flight is position:
                follower.on_fetch_failed(position, self.now_ms)
        self._schedule(self.now_ms + FETCH_TIMEOUT_MS, replica.broker_id, timeout)

    def _on_fetch(self, leader_id: int, request: FollowerFetchMessage) -> None:
        """The broker's ReplicaManager.serve_replica_fetch: answer, or park until the log grows or the wait ends."""
        leader = self.replicas[leader_id]
        if not leader.alive:
            return
        registration = leader.image.cluster.broker(request.follower_id)
        registered_epoch = registration.broker_epoch if registration is not None else -1
        answer = leader.state.answer_follower_fetch(request.follower_id, request.broker_epoch, registered_epoch,
                                                    request.position, self.now_ms)
        if leader.leader is not None:
            self._check_leader_hw(leader)
        self._send_alter(leader, answer.isr_change)
        if not answer.reads_records:
            self._reply_fetch(leader, request, FollowerFetchReply(
                request.incarnation, request.position, answer.error_code, answer.high_watermark,
                answer.diverging_epoch, leader_log_end_offset=leader.log_end_offset,
                log_start_offset=answer.log_start_offset))
        elif self.profile.fetch_max_wait_ms > 0 and leader.state.parks_follower_fetch(request.position, answer):
            leader.parked_fetches.append(request)
            incarnation = leader.incarnation
            self._schedule(self.now_ms + self.profile.fetch_max_wait_ms, leader_id,
                           lambda: self._release_parked_fetch(leader, request, incarnation))
        else:
            self._read_for_follower(leader, request)

    def _release_parked_fetch(self, leader: SimReplica, request: FollowerFetchMessage, incarnation: int) -> None:
        if leader.alive and leader.incarnation == incarnation and request in leader.parked_fetches:
            leader.parked_fetches.remove(request)
            self._read_for_follower(leader, request)

    def _release_parked_fetches(self, leader: SimReplica) -> None:
        """The leader's log grew: every parked fetch is answered now."""
        parked, leader.parked_fetches = leader.parked_fetches, []
        for request in parked:
            self._read_for_follower(leader, request)

    def _read_for_follower(self, leader: SimReplica, request: FollowerFetchMessage) -> None:
        """The read after the answer (maybe after parking): a leader that stopped leading meanwhile says so."""
        position, state = request.position, leader.leader
        if state is None:
            reply = FollowerFetchReply(request.incarnation, position, ErrorCode.NOT_LEADER_OR_FOLLOWER)
        else:
            reply = FollowerFetchReply(request.incarnation, position, ErrorCode.NONE, state.high_watermark,
                                       batches=leader.read_from(position.fetch_offset, self.profile.fetch_max_batches),
                                       leader_log_end_offset=leader.log_end_offset,
                                       log_start_offset=leader.log_start_offset)
        self._reply_fetch(leader, request, reply)

    def _reply_fetch(self, leader: SimReplica, request: FollowerFetchMessage, reply: FollowerFetchReply) -> None:
        self._send(leader.broker_id, request.follower_id, lambda: self._on_fetch_response(request.follower_id, reply))

    def _on_fetch_response(self, b: int, response: FollowerFetchReply) -> None:
        replica = self.replicas[b]
        follower = replica.follower
        if not replica.alive or replica.incarnation != response.incarnation or follower is None:
            return
        outcome = follower.on_fetch_response(response.position, self.now_ms, replica,
                                             error_code=response.error_code,
                                             high_watermark=response.high_watermark,
                                             log_start_offset=response.log_start_offset,
                                             diverging_epoch=response.diverging_epoch)
        if outcome.action is FetchAction.APPEND:
            self._check_no_gap(replica, response.batches)
            replica.append(list(response.batches))
            replica.high_watermark = follower.on_records_appended(replica, response.leader_log_end_offset)
            self._maybe_flush(replica)
            if not response.batches:
                return  # nothing new: the next fetch waits for the poll timer
        elif outcome.action is FetchAction.TRUNCATE:
            self._truncate(replica, outcome.offset)
        elif outcome.action is FetchAction.RESET:
            replica.reset_to(outcome.offset)
        elif (outcome.action is FetchAction.BACKOFF and response.error_code == ErrorCode.OFFSET_OUT_OF_RANGE
              and self.broken == BrokenVariant.TRUNCATE_TO_HW and response.leader_log_end_offset >= 0):
            self._truncate(replica, response.leader_log_end_offset)  # the old follower's out-of-range handling
        else:
            return  # back off / wait for metadata / stale answer: the poll timer fetches again
        self._maybe_fetch(replica)

    @staticmethod
    def _check_no_gap(replica: SimReplica, batches: tuple[Batch, ...]) -> None:
        if batches and batches[0].base_offset != replica.log_end_offset:
            raise SimViolation("log-gap", f"broker {replica.broker_id} was sent {batches[0]} to append at its log "
                                          f"end {replica.log_end_offset}: the offsets between are missing")

    def _truncate(self, replica: SimReplica, offset: int) -> None:
        if offset < replica.high_watermark:
            raise SimViolation("truncate-below-hw", f"broker {replica.broker_id} truncates to {offset} below its "
                                                    f"high watermark {replica.high_watermark}")
        replica.truncate_to(offset)

    # == ISR changes ==========================================================================================
    def _send_alter(self, replica: SimReplica, change: PendingIsrChange | None) -> None:
        if change is None:
            return
        replica.alter_sends += 1
        sends, incarnation = replica.alter_sends, replica.incarnation
        request = AlterPartitionRequest(replica.broker_id, replica.incarnation, replica.broker_epoch, change)
        self._send_to_controller(replica.broker_id, lambda: self._on_alter_partition(request))

        def timeout() -> None:  # no answer: outcome unknown, resend the same proposal
            if (replica.alive and replica.incarnation == incarnation and replica.alter_sends == sends
                    and replica.leader is not None and replica.leader.pending_isr_change is change):
                self._send_alter(replica, change)
        self._schedule(self.now_ms + 1000, replica.broker_id, timeout)

    def _on_alter_partition_response(self, b: int, response: AlterPartitionResponse) -> None:
        replica = self.replicas[b]
        if not replica.alive or replica.incarnation != response.incarnation or replica.leader is None:
            return
        outcome = replica.leader.on_alter_partition_response(
            response.change, response.error_code, leader_epoch=response.leader_epoch,
            partition_epoch=response.partition_epoch, isr=response.isr)
        if outcome is AlterPartitionOutcome.RETRY:
            self._send_alter(replica, response.change)

    # == clients ==============================================================================================
    def _produce(self) -> None:
        leaders = [r for r in self.replicas.values() if r.alive and r.leader is not None
                   and r.paused_until_ms <= self.now_ms]
        if not leaders:
            return
        replica, producer = self.rng.choice(leaders), self.rng.choice(self.producers)
        in_flight = {b.first_sequence: r for r in self.replicas.values() for b in r.pending_produces
                     if b.producer_id == producer.producer_id}
        if any(r is not replica for r in in_flight.values()):
            return   # librdkafka drains what is in flight to the old leader before it sends to a new one
        first_sequence = next((seq for seq in producer.unacked if seq not in in_flight), None)
        if first_sequence is None:   # nothing to retry: a new batch, if the in-flight window allows
            if len(in_flight) >= MAX_IN_FLIGHT:
                return
            self._next_payload_id += 1
            first_sequence = producer.add(self.rng.randint(1, 3), self._next_payload_id)
        self._append_as_leader(replica, producer, first_sequence)

    def _append_as_leader(self, replica: SimReplica, producer: SimProducer, first_sequence: int) -> None:
        """Partition.append_records through the same state machine: min ISR first, then the producer's sequence."""
        state = replica.state
        count, payload_id = producer.unacked[first_sequence]
        try:
            state.check_append_allowed(-1)
            duplicate = state.check_producer_sequence(producer.producer_id, PRODUCER_EPOCH, first_sequence,
                                                      count - 1)
        except KafkaError as exc:
            if exc.error_code == ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER:
                producer.bump_epoch()
            return   # NOT_ENOUGH_REPLICAS: nothing written, retried later
        if duplicate is not None:   # answered with the original offsets once they are committed
            replica.pending_produces.append(replica.batch_at(duplicate.base_offset))
            return
        batch = Batch(replica.log_end_offset, count, state.leader_epoch, payload_id, producer.producer_id,
                      first_sequence)
        replica.append([batch], replay_producers=False)
        state.on_leader_append(producer.producer_id, PRODUCER_EPOCH, first_sequence, count - 1, batch.base_offset,
                               0, self.now_ms)
        replica.pending_produces.append(batch)
        self._release_parked_fetches(replica)
        self._maybe_flush(replica)

    def _complete_produces(self, replica: SimReplica) -> None:
        state, still_waiting, incarnation = replica.leader, [], replica.incarnation
        for batch in replica.pending_produces:
            check = state.check_acks_all(batch.end_offset)
            if not check.done:
                still_waiting.append(batch)
            elif check.error_code == ErrorCode.NONE:
                self._record_ack(replica, batch)
        if replica.incarnation == incarnation:   # not crashed by an acknowledgement (crash_after_ack)
            replica.pending_produces = still_waiting

    def _record_ack(self, leader: SimReplica, batch: Batch) -> None:
        acked_at = self._acked_payloads.setdefault(batch.payload_id, batch.base_offset)
        if acked_at != batch.base_offset:
            raise SimViolation("idempotent-duplicate", f"records {batch.payload_id} acknowledged at offset {acked_at} "
                                                       f"and again at {batch.base_offset} (by leader {leader.broker_id})")
        for producer in self.producers:
            if batch.producer_id == producer.producer_id:
                producer.unacked.pop(batch.first_sequence, None)
        previous = self.acked.get(batch.base_offset)
        if previous is not None and previous != batch:
            raise SimViolation("offset-reused", f"offset {batch.base_offset} acknowledged as {previous} and then "
                                                f"as {batch} (by leader {leader.broker_id})")
        for other in self.acked.values():
            if other.base_offset < batch.end_offset and batch.base_offset < other.end_offset and other != batch:
                raise SimViolation("offset-reused", f"acknowledged {batch} overlaps acknowledged {other}")
        self.acked[batch.base_offset] = batch
        if not self._healing and self.rng.random() < self.profile.crash_after_ack_probability:
            self._crash_fault(leader.broker_id)

    # == faults ===============================================================================================
    def _schedule_chaos(self) -> None:
        p = self.profile
        for rate, action in ((p.produce_rate_per_s, self._produce), (p.crash_rate_per_s, self._crash_fault),
                             (p.pause_rate_per_s, self._pause_fault), (p.partition_rate_per_s, self._cut_fault),
                             (p.controller_pause_rate_per_s, self._controller_pause_fault),
                             (p.retention_rate_per_s, self._retention_fault)):
            if rate > 0:
                self._schedule_poisson(rate, action)

    def _schedule_poisson(self, rate_per_s: float, action: Callable[[], None]) -> None:
        def fire() -> None:
            if self._healing:
                return
            action()
            self._schedule_poisson(rate_per_s, action)
        self._schedule(self.now_ms + max(1, int(self.rng.expovariate(rate_per_s) * 1000)), None, fire)

    def _crash_fault(self, victim: int | None = None) -> None:
        alive = [b for b in self.broker_ids if self.replicas[b].alive]
        if not alive:
            return
        victims = [self._pick_victim(alive) if victim is None else victim]
        if self.rng.random() < self.profile.correlated_crash_probability:
            others = [b for b in alive if b != victims[0]]
            victims += self.rng.sample(others, self.rng.randint(0, len(others)))
        for b in victims:
            self._crash(self.replicas[b])
            self._schedule(self.now_ms + self.rng.randint(50, 3000), None, lambda b=b: self._restart(b))

    def _pick_victim(self, alive: list[int]) -> int:
        leaders = [b for b in alive if self.replicas[b].leader is not None]
        return self.rng.choice(leaders) if leaders and self.rng.random() < 0.5 else self.rng.choice(alive)

    def _crash(self, replica: SimReplica) -> None:
        """Power loss: the unfsynced suffix of the log is gone, and so is all memory state."""
        self.crashes += 1
        replica.truncate_to(replica.durable_log_end_offset)
        replica.alive = False
        replica.incarnation += 1
        replica.state = replica.new_state(0, self.topic_id)   # memory is gone; the restart rebuilds it
        replica.pending_produces = []
        replica.parked_fetches = []
        replica.flush_in_flight = False
        replica.paused_until_ms = 0
        replica.hide_last_fetched_epoch = False

    def _restart(self, b: int) -> None:
        replica = self.replicas[b]
        if replica.alive:
            return
        # A frozen controller answers no registration (before, one taken during the freeze hid the freeze from
        # the controller's stall check, and it then fenced brokers it had not been able to hear).
        if self.controller_paused_until_ms > self.now_ms or not self._register(replica):
            self._schedule(self.now_ms + 200, None, lambda: self._restart(b))
            return
        # Retention deletes only committed data, so the log start is committed even if the checkpoint lags.
        replica.high_watermark = min(max(replica.high_watermark_checkpoint, replica.log_start_offset),
                                     replica.log_end_offset)
        replica.state = replica.new_state(replica.high_watermark, self.topic_id)
        replica.metadata_offset = -1
        self._start_timers(replica)

    def _pause_fault(self) -> None:
        candidates = [b for b in self.broker_ids if self.replicas[b].alive
                      and self.replicas[b].paused_until_ms <= self.now_ms]
        if candidates:
            victim = self._pick_victim(candidates)
            self.replicas[victim].paused_until_ms = self.now_ms + self.rng.randint(
                100, 3 * self.profile.session_timeout_ms)

    def _retention_fault(self) -> None:
        """Retention on one replica: whole batches from the start of its log, never past what it knows to be
        committed and holds fsynced (Kafka deletes segments below the high watermark only).

        Retention takes days, retries and reconciliation seconds, so only batches whose client has its
        acknowledgement, and only below where any other replica's log diverges from this one.  (Two gaps the
        real code shares with Kafka, which these limits keep out of the runs: a replica rebuilds producer state
        from its log, so a retry of a batch retention deleted would be appended again -- Kafka keeps producer
        snapshots for that; and a follower whose divergent history lies below the leader's log start is told
        its last epoch ends at that log start, so it keeps that history below it.)"""
        alive = [b for b in self.broker_ids if self.replicas[b].alive]
        if not alive:
            return
        replica = self.replicas[self._pick_victim(alive)]
        limit = min([replica.state.high_watermark, replica.durable_log_end_offset]
                    + [self._divergence_offset(replica, other) for other in self.replicas.values()])
        ends = []
        for batch in replica.batches:
            if batch.end_offset > limit or batch.payload_id not in self._acked_payloads:
                break
            ends.append(batch.end_offset)
        if ends:
            replica.delete_before(self.rng.choice(ends))

    @staticmethod
    def _divergence_offset(replica: SimReplica, other: SimReplica) -> int:
        """The first offset both logs hold differently (their ends when they agree)."""
        theirs = {batch.base_offset: batch for batch in other.batches}
        for batch in replica.batches:
            held = theirs.get(batch.base_offset)
            if held is None and other.log_start_offset <= batch.base_offset < other.log_end_offset:
                return batch.base_offset   # a batch boundary of ours falls inside one of theirs
            if held is not None and held != batch:
                return batch.base_offset
        return replica.log_end_offset

    def _cut_fault(self) -> None:
        nodes = (CONTROLLER_ID,) + self.broker_ids
        a, c = self.rng.sample(nodes, 2)
        links = {(a, c)} if self.rng.random() < 0.3 else {(a, c), (c, a)}
        self._cut_links |= links

        def heal() -> None:
            self._cut_links -= links
        self._schedule(self.now_ms + self.rng.randint(200, 4000), None, heal)

    # == invariants ===========================================================================================
    def _after_step(self) -> None:
        for replica in self.replicas.values():
            if replica.alive and replica.leader is not None:
                replica.leader.check_invariants()
                replica.high_watermark = max(replica.high_watermark, replica.leader.high_watermark)
                self._check_leader_hw(replica)
                self._complete_produces(replica)
            if replica.log_end_offset < replica.high_watermark and replica.alive:
                raise SimViolation("truncate-below-hw", f"broker {replica.broker_id} log end "
                                                        f"{replica.log_end_offset} below its high watermark "
                                                        f"{replica.high_watermark}")

    def _check_leader_hw(self, replica: SimReplica) -> None:
        state = replica.leader
        key = (replica.broker_id, state.leader_epoch)
        seen = self._hw_seen.get(key, -1)
        if state.high_watermark < seen:
            raise SimViolation("hw-monotonic", f"leader {replica.broker_id} epoch {state.leader_epoch}: high "
                                               f"watermark went from {seen} to {state.high_watermark}")
        self._hw_seen[key] = state.high_watermark

    def _check_acked_present(self, replica: SimReplica, who: str) -> None:
        for base, batch in self.acked.items():
            if base < replica.log_start_offset:
                continue   # deleted by retention, which only deletes committed data
            if base >= replica.log_end_offset:
                raise SimViolation("acked-lost", f"{who}: acknowledged {batch} beyond its log end "
                                                 f"{replica.log_end_offset}")
            held = replica.batch_at(base)
            if held is None or held.payload_id != batch.payload_id or held.count != batch.count:
                raise SimViolation("acked-lost", f"{who}: acknowledged {batch} but its log holds {held} there")

    def _check_no_payload_twice(self, replica: SimReplica) -> None:
        """No committed write duplicated for the idempotent producer: each client batch is in the log once."""
        where: dict[int, int] = {}
        for batch in replica.batches:
            if batch.base_offset >= replica.high_watermark:
                break
            first = where.setdefault(batch.payload_id, batch.base_offset)
            if first != batch.base_offset:
                raise SimViolation("idempotent-duplicate", f"broker {replica.broker_id}: records {batch.payload_id} "
                                                           f"committed at offsets {first} and {batch.base_offset}")

    # == healing and convergence ==============================================================================
    def _heal_and_quiesce(self) -> None:
        self._healing = True
        self._cut_links.clear()
        self._end_controller_pause()
        for replica in self.replicas.values():
            replica.known_controller_epoch = self.controller_epoch
        for b in self.broker_ids:
            replica = self.replicas[b]
            replica.paused_until_ms = min(replica.paused_until_ms, self.now_ms)
            if not replica.alive:
                self._restart(b)
        deadline = self.now_ms + self.liveness_bound_ms
        next_check = self.now_ms
        while self._queue:
            if self._queue[0][0] >= next_check:
                if self._converged():
                    return
                next_check = self._queue[0][0] + LIVENESS_CHECK_MS
            if self.now_ms > deadline:
                break
            self._step()
        logs = {b: (r.log_end_offset, r.high_watermark, r.leader is not None) for b, r in self.replicas.items()}
        raise SimViolation("no-convergence", f"replicas did not converge within {self.liveness_bound_ms} ms "
                                             f"after healing: (log end, hw, leads) = {logs}; "
                                             f"partition {self._current_partition()}")

    def _current_partition(self) -> PartitionRegistration:
        return self.controller.image.topics.by_id[self.topic_id].partitions[0]

    def _converged(self) -> bool:
        p = self._current_partition()
        if p.leader == NO_LEADER or len(p.isr) != len(p.replicas):
            return False
        leader = self.replicas[p.leader]
        if leader.leader is None or leader.leader.leader_epoch != p.leader_epoch:
            return False
        # Retention may have deleted different prefixes: the logs must agree from the latest log start on.
        start = max(r.log_start_offset for r in self.replicas.values())
        reference = [batch for batch in leader.batches if batch.base_offset >= start]
        if any([batch for batch in r.batches if batch.base_offset >= start] != reference
               or r.log_end_offset != leader.log_end_offset for r in self.replicas.values()):
            return False
        self._check_no_payload_twice(leader)
        if leader.leader.high_watermark != leader.log_end_offset:
            return False
        self._check_acked_present(leader, "converged log")
        return True


# == command line ================================================================================================
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m cluster.testing.replication_sim",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=100, help="how many seeds to run")
    parser.add_argument("--start", type=int, default=0, help="first seed")
    parser.add_argument("--replicas", type=int, default=3, help="replication factor")
    parser.add_argument("--steps", type=int, default=DEFAULT_STEPS, help="chaos events per seed before healing")
    parser.add_argument("--broken", choices=BrokenVariant.ALL, default=None, help="switch on a deliberate bug")
    parser.add_argument("--keep-going", action="store_true", help="run every seed even after a failure")
    return parser.parse_args(argv)


def replay_command(args: argparse.Namespace, seed: int) -> str:
    parts = ["python -m cluster.testing.replication_sim", "--seeds 1", f"--start {seed}",
             f"--replicas {args.replicas}", f"--steps {args.steps}"]
    if args.broken:
        parts.append(f"--broken {args.broken}")
    return " ".join(parts)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.perf_counter()
    failures, steps, acked, ran = [], 0, 0, 0
    for seed in range(args.start, args.start + args.seeds):
        result = ReplicationSim(seed, replicas=args.replicas, broken=args.broken).run(args.steps)
        ran, steps, acked = ran + 1, steps + result.steps, acked + result.acked_batches
        if not result.ok:
            print(f"\nFAILED seed {seed} after {result.steps} steps at t={result.sim_time_ms} ms: {result.violation}")
            print(result.traceback_text.rstrip())
            print(f"replay: {replay_command(args, seed)}", flush=True)
            failures.append(seed)
            if not args.keep_going:
                break
    elapsed_s = max(time.perf_counter() - started, 1e-9)
    print(f"{ran} seeds run ({args.replicas} replicas, {args.steps} steps) in {elapsed_s:.1f} s: "
          f"{steps / elapsed_s:.0f} steps/s, {acked} batches acknowledged, {len(failures)} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
