"""``RaftDriver``: runs a ``RaftNode`` for real -- asyncio loop, file-backed store, gRPC transport.

Why it exists: the Raft core is sans-I/O (cluster/raft); this is its production shell, the real-I/O twin of
the simulator's ``SimNode`` (cluster/testing/sim_node.py).  One task owns the node and carries out every
``Ready`` in the order ready.py mandates: persist (election state atomically, snapshot install, truncation,
appends, then one fsync -- all in a worker thread so the event loop never blocks on the disk), then send the
outbox (fire-and-forget per peer), then apply committed entries (``on_commit``), then write a snapshot if
asked, then ``advance``.  Inbound messages and proposals wait in queues while a Ready is in flight, because
the node forbids any input between ``poll`` and ``advance``.

Wiped-disk guard: every envelope carries the sender's raft directory id (a random id given to the
directory when it is formatted).  The driver remembers, durably, the first directory id it saw for each
voter; if a voter later shows up with a different one its disk was wiped, so it may have voted or been
counted with a log it no longer has.  Its vote responses are then ignored (logged as an error) until an
operator deletes ``peers.json`` -- the safe default, since a wiped voter granting votes with an empty log
could elect a leader missing committed entries.  It may still fetch and catch up.

Run ``python -m cluster.broker.raft_driver --node-id 1 --voters 1@127.0.0.1:P1,... --dir D --cluster-id X``
for a standalone quorum member that proposes a payload every 100 ms while leader and prints JSON lines
(used by tests/integration/test_raft_quorum_processes.py).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import logging
import random
import sys
import time
from collections import deque
from collections.abc import Callable

from cluster.broker.waits import stop_tasks, wait_event
from cluster.core.errors import ErrorCode, KafkaError
from cluster.raft.config import RaftConfig
from cluster.raft.log import LogEntry, SnapshotId
from cluster.raft.messages import RaftMessage, VoteResponse
from cluster.raft.node import RaftNode
from cluster.raft.ready import NotLeader, Proposed, Ready
from cluster.raft.state import Role
from cluster.storage.raft_store import RaftStore
from cluster.transport.raft_grpc import FaultFilter, RaftGrpcServer, RaftPeerClient

log = logging.getLogger(__name__)

_INBOX_MAX = 10_000
# stop(): how long the loop may take to finish the Ready in flight (an fsync) before it is cancelled, and how long
# a cancelled loop may take to end before it is abandoned (the process exits soon after either way).
STOP_DRAIN_S = 1.0
STOP_CANCEL_S = 1.0


class NotLeaderError(KafkaError):
    """``propose`` failed: this node is not the leader, or lost the entry to a newer leader."""

    def __init__(self, leader_id: int | None, epoch: int, message: str = "not the metadata quorum leader") -> None:
        super().__init__(ErrorCode.NOT_LEADER_OR_FOLLOWER, f"{message} (leader {leader_id}, epoch {epoch})")
        self.leader_id = leader_id
        self.epoch = epoch


@dataclasses.dataclass(frozen=True, slots=True)
class Voter:
    node_id: int
    host: str
    port: int

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


def parse_voters(text: str) -> dict[int, Voter]:
    """``controller.quorum.voters`` syntax: ``1@host:port,2@host:port``."""
    voters = {}
    for item in text.split(","):
        node, _, address = item.strip().partition("@")
        host, _, port = address.rpartition(":")
        voters[int(node)] = Voter(int(node), host, int(port))
    return voters


# (committed entries without control records, high watermark)
CommitCallback = Callable[[list[LogEntry], int], None]


class RaftDriver:
    """One quorum member on a real clock, disk and network (see module docstring)."""

    def __init__(self, node_id: int, voters: dict[int, Voter], store: RaftStore, *, cluster_id: str,
                 on_commit: CommitCallback, config: RaftConfig | None = None,
                 take_snapshot: Callable[[SnapshotId], bytes],
                 load_snapshot: Callable[[SnapshotId, bytes], None],
                 on_leader_change: Callable[[int | None, int], None] | None = None,
                 listen_host: str | None = None, fault: FaultFilter | None = None) -> None:
        self.node_id = node_id
        self.voters = voters
        self.store = store
        self.cluster_id = cluster_id
        self.config = config or RaftConfig()
        self._on_commit = on_commit
        # Required: a snapshot replaces the log below it, so a state machine that cannot describe itself
        # in one would lose committed entries when the log is compacted.
        self._take_snapshot = take_snapshot
        self._load_snapshot = load_snapshot
        self._on_leader_change = on_leader_change
        self._t0 = time.monotonic()
        self.node = RaftNode(node_id, voters.keys(), rng=random.Random(), config=self.config,
                             persisted_state=store.election_state, log_view=store, now_ms=self._now_ms())
        me = voters[node_id]
        fault = fault or FaultFilter()   # test-only link cutter; off without a fault file
        self._server = RaftGrpcServer(node_id, cluster_id, self._on_inbound, listen_host or me.host, me.port,
                                      fault=fault)
        self._peers = {v.node_id: RaftPeerClient(v.node_id, v.address, cluster_id=cluster_id,
                                                 directory_id=store.directory_id, fault=fault)
                       for v in voters.values() if v.node_id != node_id}
        self._inbox: deque[RaftMessage] = deque()
        self._proposals: deque[tuple[bytes, asyncio.Future[int]]] = deque()
        self._pending: dict[int, tuple[int, asyncio.Future[int]]] = {}   # offset -> (epoch, future)
        self._resign_requested = False
        self._shutdown_requested = False
        self._stopping = False
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._peer_directory_ids = store.read_peer_directory_ids()
        self._reported_directory_ids: set[tuple[int, str]] = set()   # (voter, unknown directory id) logged once
        self._last_leader: tuple[int | None, int] = (None, -1)
        self.role = self.node.role
        self.epoch = self.node.epoch
        self.leader_id: int | None = None
        self.high_watermark = 0
        self.inbox_dropped = 0
        self.ignored_wiped_votes = 0

    def _now_ms(self) -> int:
        return int((time.monotonic() - self._t0) * 1000)

    @property
    def listen_port(self) -> int:
        """The port the inter-node server bound (the configured one, or the free one chosen for port 0)."""
        return self._server.port

    # == lifecycle ==================================================================================================
    def add_generic_rpc_handlers(self, handlers) -> None:
        """Registers more gRPC services on the quorum's server; call before ``start``."""
        self._server.add_generic_rpc_handlers(handlers)

    async def start(self) -> None:
        await self._server.start()
        for peer in self._peers.values():
            peer.start()
        self._task = asyncio.get_running_loop().create_task(self._run(), name=f"raft-driver-{self.node_id}")

    async def stop(self, *, resign: bool = True, resign_wait_s: float = 0.3) -> None:
        """Begins the shutdown (a leader resigns, so others elect at once), then stops serving.  Bounded: the
        loop is told to end by a flag, cancelled if it has not after ``STOP_DRAIN_S``, abandoned after that."""
        # A leader with peers resigns so that they elect at once; a sole voter has nobody to hand over to.
        if resign and self._peers and self.node.role is Role.LEADER:
            self.begin_shutdown()
            await asyncio.sleep(resign_wait_s)   # let EndQuorumEpoch leave
        self._stopping = True
        self._wake.set()
        if self._task is not None and not await stop_tasks([self._task], STOP_DRAIN_S, cancel=False):
            await stop_tasks([self._task], STOP_CANCEL_S)
        for _epoch, future in list(self._pending.values()):
            if not future.done():
                future.set_exception(NotLeaderError(None, self.epoch, "quorum member stopped"))
        self._pending.clear()
        await self._server.stop()
        for peer in self._peers.values():
            await peer.close()
        await asyncio.to_thread(self.store.close)

    # == public API =================================================================================================
    async def propose(self, payload: bytes, timeout_ms: int = 5000) -> int:
        """Appends ``payload``; returns its offset once committed.  Raises NotLeaderError or TimeoutError."""
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._proposals.append((bytes(payload), future))
        self._wake.set()
        return await asyncio.wait_for(future, timeout_ms / 1000)

    def resign(self) -> None:
        """Asks the node to resign leadership at its next turn (hands over to the most caught-up voter)."""
        self._resign_requested = True
        self._wake.set()

    def begin_shutdown(self) -> None:
        """From the next turn on this member resigns if leader and never campaigns, votes or leads again
        (``RaftNode.begin_shutdown``); it keeps answering until ``stop``."""
        self._shutdown_requested = True
        self._wake.set()

    def quorum_info(self):
        """``QuorumInfo`` (leader's view of each replica's end offset) or None when not the leader."""
        return self.node.quorum_info()

    # == inbound ====================================================================================================
    def _on_inbound(self, message: RaftMessage, directory_id: str) -> None:
        if not self._check_directory_id(message, directory_id):
            return
        if len(self._inbox) >= _INBOX_MAX:
            self.inbox_dropped += 1
            return
        self._inbox.append(message)
        self._wake.set()

    def _check_directory_id(self, message: RaftMessage, directory_id: str) -> bool:
        """False for a vote from a voter whose raft directory changed (wiped disk); see module docstring."""
        source = message.source_id
        if source not in self.voters or not directory_id:
            return True
        known = self._peer_directory_ids.get(source)
        if known is None:
            self._peer_directory_ids[source] = directory_id
            self.store.write_peer_directory_ids(self._peer_directory_ids)   # small, rare (once per voter)
            return True
        if known == directory_id:
            return True
        if (source, directory_id) not in self._reported_directory_ids:
            self._reported_directory_ids.add((source, directory_id))
            log.error("voter %d now speaks from raft directory id %s, we knew %s: its disk was wiped or two "
                      "nodes share node.id=%d; its votes are not counted (it may still fetch)",
                      source, directory_id, known, source)
        if not isinstance(message, VoteResponse):
            return True
        self.ignored_wiped_votes += 1
        log.error("ignoring vote of voter %d: its raft directory id is %s, we knew %s (disk wiped?); "
                  "delete peers.json after checking the voter to accept it again", source, directory_id, known)
        return False

    # == the loop ===================================================================================================
    async def _run(self) -> None:
        node = self.node
        while not self._stopping:
            now_ms = self._now_ms()
            self._feed(now_ms)
            ready = node.poll(now_ms)
            await self._carry_out(ready)
            node.advance(ready)
            self._observe(ready)
            if node.has_ready() or self._inbox or self._proposals:
                continue
            delay_s = max(0, ready.next_deadline_ms - self._now_ms()) / 1000
            self._wake.clear()
            await wait_event(self._wake, delay_s)   # not wait_for: see cluster/broker/waits.py

    def _feed(self, now_ms: int) -> None:
        node = self.node
        while self._inbox:
            node.step(self._inbox.popleft(), now_ms)
        if self._shutdown_requested and not node.shutting_down:
            node.begin_shutdown(now_ms)
        if self._resign_requested:
            self._resign_requested = False
            node.resign(now_ms)
        while self._proposals:
            payload, future = self._proposals.popleft()
            if future.done():
                continue   # timed out while queued
            result = node.propose(payload, now_ms)
            if isinstance(result, NotLeader):
                future.set_exception(NotLeaderError(result.leader_id, result.epoch))
            else:
                assert isinstance(result, Proposed)
                self._pending[result.offset] = (result.epoch, future)

    async def _carry_out(self, ready: Ready) -> None:
        if ready.needs_persist():
            await asyncio.to_thread(self._persist, ready)
        for message in ready.outbox:
            peer = self._peers.get(message.destination_id)
            if peer is not None:
                peer.send(message)
        if ready.load_snapshot is not None:
            self._load_snapshot(ready.load_snapshot, await asyncio.to_thread(self.store.snapshot_data))
        if ready.committed_entries:
            self._apply(ready.committed_entries, ready.high_watermark)
        if ready.create_snapshot is not None:
            data = self._take_snapshot(ready.create_snapshot)
            await asyncio.to_thread(self.store.compact_to_snapshot, ready.create_snapshot, data)

    def _persist(self, ready: Ready) -> None:
        """Worker thread: the durable part of a Ready, in order, then one fsync of the log."""
        store = self.store
        if ready.persist_election_state is not None:
            store.write_election_state(ready.persist_election_state)
        if ready.install_snapshot is not None:
            store.install_snapshot(ready.install_snapshot.snapshot_id, ready.install_snapshot.data)
        if ready.truncate_to is not None:
            store.truncate_to(ready.truncate_to)
        if ready.append_entries:
            store.append(ready.append_entries)
        store.sync()

    def _apply(self, entries: tuple[LogEntry, ...], high_watermark: int) -> None:
        for entry in entries:
            pending = self._pending.pop(entry.offset, None)
            if pending is None:
                continue
            epoch, future = pending
            if future.done():
                continue
            if epoch == entry.epoch:
                future.set_result(entry.offset)
            else:   # a newer leader overwrote our uncommitted entry
                future.set_exception(NotLeaderError(self.node.leader_id, self.node.epoch, "proposal was truncated"))
        self._on_commit([e for e in entries if not e.is_control], high_watermark)

    def _observe(self, ready: Ready) -> None:
        self.role, self.epoch, self.leader_id = ready.role, ready.epoch, ready.leader_id
        self.high_watermark = ready.high_watermark
        leader = (ready.leader_id, ready.epoch)
        if leader != self._last_leader:
            self._last_leader = leader
            if self._on_leader_change is not None:
                self._on_leader_change(ready.leader_id, ready.epoch)


# == standalone quorum process (for tests) ============================================================================
class _PrintingMember:
    """State machine of the standalone process: counts committed payloads and prints them as JSON lines."""

    def __init__(self, node_id: int) -> None:
        self.node_id = node_id
        self.applied = 0

    def emit(self, **fields) -> None:
        fields.setdefault("node", self.node_id)
        fields.setdefault("t", time.time())
        sys.stdout.write(json.dumps(fields) + "\n")
        sys.stdout.flush()

    def on_commit(self, entries: list[LogEntry], high_watermark: int) -> None:
        for entry in entries:
            self.applied += 1
            self.emit(event="commit", offset=entry.offset, epoch=entry.epoch, payload=entry.payload.decode(),
                      hw=high_watermark)

    def take_snapshot(self, _snapshot_id: SnapshotId) -> bytes:
        return json.dumps({"applied": self.applied}).encode()

    def load_snapshot(self, snapshot_id: SnapshotId, data: bytes) -> None:
        self.applied = json.loads(data)["applied"] if data else 0
        self.emit(event="snapshot_loaded", end_offset=snapshot_id.end_offset)


async def _run_member(args: argparse.Namespace) -> None:
    voters = parse_voters(args.voters)
    member = _PrintingMember(args.node_id)
    store = RaftStore(args.dir, cluster_id=args.cluster_id, node_id=args.node_id)
    driver = RaftDriver(args.node_id, voters, store, cluster_id=args.cluster_id, on_commit=member.on_commit,
                        take_snapshot=member.take_snapshot, load_snapshot=member.load_snapshot,
                        on_leader_change=lambda leader, epoch: member.emit(event="leader", leader_id=leader,
                                                                          epoch=epoch))
    await driver.start()
    member.emit(event="started", directory_id=store.directory_id, log_end_offset=store.log_end_offset)
    sequence = 0
    in_flight: set[asyncio.Task] = set()

    async def propose(payload: str) -> None:
        try:
            offset = await driver.propose(payload.encode(), timeout_ms=args.propose_timeout_ms)
            member.emit(event="acked", offset=offset, payload=payload)
        except (NotLeaderError, TimeoutError):
            pass

    try:
        while True:
            await asyncio.sleep(args.propose_interval_ms / 1000)
            if driver.role is Role.LEADER:
                sequence += 1
                task = asyncio.create_task(propose(f"n{args.node_id}-e{driver.epoch}-{sequence}"))
                in_flight.add(task)
                task.add_done_callback(in_flight.discard)
    finally:
        await driver.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="standalone metadata quorum member (driver test harness)")
    parser.add_argument("--node-id", type=int, required=True)
    parser.add_argument("--voters", required=True, help="1@host:port,2@host:port,...")
    parser.add_argument("--dir", required=True)
    parser.add_argument("--cluster-id", required=True)
    parser.add_argument("--propose-interval-ms", type=int, default=100)
    parser.add_argument("--propose-timeout-ms", type=int, default=5000)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        asyncio.run(_run_member(args))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
