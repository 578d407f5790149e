"""A hand-driven harness for RaftNode unit tests: explicit delivery, a clock per node, an in-memory shell.

Each node has its own clock (timeouts are local), so a test can expire one node's election timer while the
others see only the few milliseconds that message delivery takes.  The shell follows ready.py exactly:
persist, send (into ``inflight``), apply, snapshot, advance.
"""

from __future__ import annotations

import dataclasses
import json
import random
from collections.abc import Callable, Iterable

from cluster.raft import (
    ElectionState,
    LogEntry,
    MemoryRaftLog,
    RaftConfig,
    RaftMessage,
    RaftNode,
    Ready,
    Role,
    UnsafeFlags,
    VoteRequest,
    VoteResponse,
)

CONFIG = RaftConfig(election_timeout_ms=1000, fetch_timeout_ms=2000, fetch_max_wait_ms=500,
                    request_timeout_ms=2000, retry_backoff_ms=20, election_backoff_max_ms=1000)


def snapshot_bytes(entries: list[LogEntry]) -> bytes:
    return json.dumps([[e.offset, e.epoch, e.payload.hex(), e.is_control] for e in entries]).encode()


def entries_from_snapshot(data: bytes) -> list[LogEntry]:
    return [LogEntry(o, e, bytes.fromhex(p), c) for o, e, p, c in json.loads(data)]


@dataclasses.dataclass
class Shell:
    """The durable state of one node plus its state machine (a list of applied entries)."""

    log: MemoryRaftLog = dataclasses.field(default_factory=MemoryRaftLog)
    state: ElectionState = dataclasses.field(default_factory=ElectionState)
    applied: list[LogEntry] = dataclasses.field(default_factory=list)
    readies: list[Ready] = dataclasses.field(default_factory=list)


class Harness:
    def __init__(self, voters: Iterable[int] = (1, 2, 3), observers: Iterable[int] = (),
                 config: RaftConfig = CONFIG, seed: int = 0, unsafe: UnsafeFlags | None = None) -> None:
        self.voters = tuple(voters)
        self.observers = tuple(observers)
        self.config = config
        self.unsafe = unsafe or UnsafeFlags()
        self._rng = random.Random(seed)
        self.shells = {i: Shell() for i in self.voters + self.observers}
        self.clock = dict.fromkeys(self.shells, 0)
        self.nodes: dict[int, RaftNode] = {}
        self.inflight: list[RaftMessage] = []
        self.cut: set[tuple[int, int]] = set()
        self.down: set[int] = set()
        for node_id in self.shells:
            self.start(node_id)

    # -- node lifecycle ----------------------------------------------------------------------------------------
    def start(self, node_id: int) -> RaftNode:
        shell = self.shells[node_id]
        node = RaftNode(node_id, self.voters, rng=random.Random(self._rng.getrandbits(32)), config=self.config,
                        persisted_state=shell.state, log_view=shell.log, now_ms=self.clock[node_id],
                        observers=self.observers, unsafe=self.unsafe)
        self.nodes[node_id] = node
        self.down.discard(node_id)
        shell.applied = []
        self.pump(node_id)
        return node

    def crash(self, node_id: int) -> None:
        """Stop the node; its shell kept everything (the harness shell fsyncs every write)."""
        self.down.add(node_id)
        self.inflight = [m for m in self.inflight if m.destination_id != node_id]

    # -- the shell ---------------------------------------------------------------------------------------------
    def pump(self, node_id: int) -> list[Ready]:
        node, produced = self.nodes[node_id], []
        while True:
            ready = node.poll(self.clock[node_id])
            self.carry_out(node_id, ready)
            node.advance(ready)
            produced.append(ready)
            if not node.has_ready():
                return produced

    def carry_out(self, node_id: int, ready: Ready) -> None:
        shell = self.shells[node_id]
        shell.readies.append(ready)
        if ready.persist_election_state is not None:
            shell.state = ready.persist_election_state
        if ready.install_snapshot is not None:
            shell.log.install_snapshot(ready.install_snapshot.snapshot_id, ready.install_snapshot.data)
        if ready.truncate_to is not None:
            shell.log.truncate_to(ready.truncate_to)
        shell.log.append(ready.append_entries)
        self.inflight.extend(ready.outbox)
        if ready.load_snapshot is not None:
            shell.applied = entries_from_snapshot(shell.log.snapshot_data())
        shell.applied.extend(ready.committed_entries)
        if ready.create_snapshot is not None:
            covered = [e for e in shell.applied if e.offset < ready.create_snapshot.end_offset]
            shell.log.compact_to_snapshot(ready.create_snapshot, snapshot_bytes(covered))

    # -- network -----------------------------------------------------------------------------------------------
    def take(self, predicate: Callable[[RaftMessage], bool] = lambda m: True) -> list[RaftMessage]:
        """Removes and returns in-flight messages matching ``predicate`` (to inspect or drop them)."""
        taken = [m for m in self.inflight if predicate(m)]
        self.inflight = [m for m in self.inflight if not predicate(m)]
        return taken

    def deliver(self, message: RaftMessage) -> None:
        destination = message.destination_id
        if destination in self.down or (message.source_id, destination) in self.cut:
            return
        self.clock[destination] += 1
        self.nodes[destination].step(message, self.clock[destination])
        self.pump(destination)

    def deliver_where(self, predicate: Callable[[RaftMessage], bool]) -> int:
        messages = self.take(predicate)
        for message in messages:
            self.deliver(message)
        return len(messages)

    def settle(self, max_messages: int = 10_000) -> int:
        delivered = 0
        while self.inflight:
            self.deliver(self.inflight.pop(0))
            delivered += 1
            assert delivered < max_messages, "messages keep flowing: no quiescence"
        return delivered

    def isolate(self, node_id: int) -> None:
        for other in self.shells:
            if other != node_id:
                self.cut |= {(node_id, other), (other, node_id)}

    def heal(self) -> None:
        self.cut.clear()

    # -- time --------------------------------------------------------------------------------------------------
    def advance(self, ms: int, node_ids: Iterable[int] | None = None) -> None:
        for node_id in (self.shells if node_ids is None else node_ids):
            if node_id in self.down:
                continue
            self.clock[node_id] += ms
            self.pump(node_id)

    # -- scenarios ---------------------------------------------------------------------------------------------
    @property
    def max_fetch_timeout_ms(self) -> int:
        """The latest a follower's fetch timer can fire after its last re-arm (the timeout is jittered)."""
        return self.config.fetch_timeout_ms + self.config.fetch_timeout_ms // 4

    @property
    def max_timer_ms(self) -> int:
        """Long enough for any election or fetch timer to fire, whatever the node's random draws were."""
        return max(2 * self.config.election_timeout_ms, self.max_fetch_timeout_ms)

    def elect(self, node_id: int) -> RaftNode:
        """Expire ``node_id``'s election (or fetch) timer only, and let the election and first fetches run."""
        self.advance(self.max_timer_ms, [node_id])
        self.settle()
        assert self.nodes[node_id].role is Role.LEADER, self.nodes[node_id].role
        return self.nodes[node_id]

    def forget_leader(self, node_ids: Iterable[int]) -> None:
        """Let followers notice their leader is gone (fetch timeout, a lost pre-vote round), dropping
        whatever they send meanwhile.  Afterwards they grant pre-votes again."""
        for node_id in node_ids:
            def sent_by_it(message: RaftMessage, node_id: int = node_id) -> bool:
                return message.source_id == node_id
            self.advance(self.max_fetch_timeout_ms, [node_id])
            self.take(sent_by_it)
            self.advance(2 * self.config.election_timeout_ms, [node_id])
            self.take(sent_by_it)

    def campaign(self, node_id: int, rounds: int = 6) -> RaftNode:
        """Expire ``node_id``'s timer and deliver only election messages until it leads."""
        def is_vote(message: RaftMessage) -> bool:
            return isinstance(message, (VoteRequest, VoteResponse))
        for _ in range(rounds):
            self.advance(self.max_timer_ms, [node_id])
            while self.deliver_where(is_vote):
                pass
            if self.nodes[node_id].role is Role.LEADER:
                return self.nodes[node_id]
        raise AssertionError(f"node {node_id} did not win: {self.nodes[node_id].role}")

    def propose(self, node_id: int, payload: bytes):
        node = self.nodes[node_id]
        self.clock[node_id] += 1
        result = node.propose(payload, self.clock[node_id])
        self.pump(node_id)
        return result

    def leader_ids(self) -> list[int]:
        return [i for i, n in self.nodes.items() if i not in self.down and n.role is Role.LEADER]

    def payloads(self, node_id: int) -> list[bytes]:
        return [e.payload for e in self.shells[node_id].applied if not e.is_control]
