"""Three real quorum processes (cluster.broker.raft_driver) on loopback: kill -9 the leader, elect, rejoin.

Each process proposes a payload every 100 ms while it leads and prints JSON lines (leader changes, acked
proposals, committed entries), which is all this test looks at.  It checks: a new leader is elected after the
leader is killed; every acknowledged payload is committed at the same offset on every survivor; the killed
node restarts from its own disk, follows the new leader and catches up to the same committed log.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CLUSTER_ID = "raft-it-cluster"
# Kafka's defaults: fetch timeout 2 s, election timeout 1 s.  The issue asks for a new leader within 3 s of
# the kill, in every run.  The survivors fetched together, so with a fixed fetch timeout they used to campaign
# in the same millisecond and split the vote (3.0-3.6 s).  The core now jitters the fetch timeout to
# [2 s, 2.5 s] and backs off briefly after a split, so the election ends by about 2.5 s plus a few hops.
ELECTION_BOUND_S = 3.0


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


class Member:
    def __init__(self, node_id: int, voters: str, work: Path) -> None:
        self.node_id = node_id
        self.voters = voters
        self.work = work
        self.proc: subprocess.Popen | None = None
        self.runs = 0
        self.out_path: Path | None = None

    def start(self) -> None:
        self.runs += 1
        self.out_path = self.work / f"node{self.node_id}-run{self.runs}.jsonl"
        err = open(self.work / f"node{self.node_id}-run{self.runs}.err", "wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "cluster.broker.raft_driver", "--node-id", str(self.node_id), "--voters",
             self.voters, "--dir", str(self.work / f"raft{self.node_id}"), "--cluster-id", CLUSTER_ID],
            cwd=ROOT, stdout=open(self.out_path, "wb"), stderr=err)

    def events(self, run: int | None = None) -> list[dict]:
        path = self.out_path if run is None else self.work / f"node{self.node_id}-run{run}.jsonl"
        lines = path.read_text().splitlines()
        return [json.loads(line) for line in lines if line.endswith("}")]

    def all_events(self) -> list[dict]:
        return [e for run in range(1, self.runs + 1) for e in self.events(run)]

    def last_leader(self) -> dict | None:
        leaders = [e for e in self.events() if e["event"] == "leader"]
        return leaders[-1] if leaders else None

    def committed(self) -> dict[int, str]:
        return {e["offset"]: e["payload"] for e in self.events() if e["event"] == "commit"}

    def stop(self, sig=signal.SIGTERM) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def _wait(predicate, timeout_s: float, what: str):
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        result = predicate()
        if result:
            return result
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")


def _agreed_leader(members: list[Member], min_epoch: int = 0) -> tuple[int, int] | None:
    leaders = [m.last_leader() for m in members]
    if any(e is None or e["leader_id"] is None or e["epoch"] < min_epoch for e in leaders):
        return None
    keys = {(e["leader_id"], e["epoch"]) for e in leaders}
    return keys.pop() if len(keys) == 1 else None


def _acked(member: Member) -> dict[int, str]:
    return {e["offset"]: e["payload"] for e in member.all_events() if e["event"] == "acked"}


@pytest.fixture
def quorum(tmp_path):
    ports = _free_ports(3)
    voters = ",".join(f"{n}@127.0.0.1:{p}" for n, p in zip((1, 2, 3), ports, strict=True))
    members = [Member(n, voters, tmp_path) for n in (1, 2, 3)]
    for m in members:
        m.start()
    yield members
    for m in members:
        m.stop()


@pytest.mark.timeout(90)
def test_leader_kill_elects_a_new_leader_and_the_killed_node_rejoins(quorum):
    members = {m.node_id: m for m in quorum}
    leader_id, epoch = _wait(lambda: _agreed_leader(quorum), 15, "a leader all three agree on")
    leader = members[leader_id]
    _wait(lambda: len(_acked(leader)) >= 10, 10, "10 acknowledged proposals")

    killed_at = time.time()
    os.kill(leader.proc.pid, signal.SIGKILL)
    leader.proc.wait(5)
    survivors = [m for m in quorum if m is not leader]
    new_leader_id, new_epoch = _wait(lambda: _agreed_leader(survivors, epoch + 1), 10, "a new leader")
    new_leader = members[new_leader_id]
    elected_at = min(e["t"] for e in new_leader.events()
                     if e["event"] == "leader" and e["leader_id"] == new_leader_id and e["epoch"] == new_epoch)
    election_s = elected_at - killed_at
    print(f"\nelection after kill -9 of node {leader_id}: {election_s:.3f}s (epoch {epoch} -> {new_epoch})")
    assert new_leader_id != leader_id
    assert election_s < ELECTION_BOUND_S, f"new leader after {election_s:.3f}s (epoch {epoch} -> {new_epoch})"

    _wait(lambda: sum(1 for p in _acked(new_leader).values() if f"-e{new_epoch}-" in p) >= 5, 10,
          "proposals acknowledged by the new leader")
    acked = {**_acked(leader), **_acked(new_leader)}
    _wait(lambda: all(max(acked) in m.committed() for m in survivors), 10, "survivors to commit every ack")
    for m in survivors:
        committed = m.committed()
        lost = {o: p for o, p in acked.items() if committed.get(o) != p}
        assert not lost, f"node {m.node_id} lost or changed acknowledged entries: {lost}"
    reference = survivors[0].committed()
    for offset, payload in survivors[1].committed().items():
        assert reference.get(offset, payload) == payload, f"survivors disagree at offset {offset}"

    leader.start()   # same raft directory: it recovers its log and rejoins as a follower
    target = max(new_leader.committed())
    _wait(lambda: (leader.last_leader() or {}).get("leader_id") == new_leader_id, 10,
          "the restarted node to follow the new leader")
    _wait(lambda: max(leader.committed(), default=-1) >= target, 15, "the restarted node to catch up")
    rejoined = leader.committed()
    current = new_leader.committed()
    mismatched = [o for o in rejoined if o in current and current[o] != rejoined[o]]
    assert not mismatched, f"restarted node disagrees at offsets {mismatched[:10]}"
    # Control records (LeaderChange) are not reported to on_commit, so compare against what the leader reports.
    missing = sorted(o for o in current if o <= target and o not in rejoined)
    assert not missing, f"the restarted node is missing committed offsets {missing[:10]}"
    started = [e for e in leader.events() if e["event"] == "started"]
    assert started and started[0]["log_end_offset"] > 0, "the restarted node did not recover its log from disk"


# == edge checks of one in-process driver (real gRPC on loopback) ====================================================
def _driver(tmp_path, port: int):
    from cluster.broker.raft_driver import RaftDriver, parse_voters
    from cluster.storage.raft_store import RaftStore

    voters = parse_voters(f"1@127.0.0.1:{port},2@127.0.0.1:1,3@127.0.0.1:2")
    store = RaftStore(tmp_path / "raft1", cluster_id=CLUSTER_ID, node_id=1)
    return RaftDriver(1, voters, store, cluster_id=CLUSTER_ID, on_commit=lambda entries, hw: None,
                      take_snapshot=lambda _id: b"", load_snapshot=lambda _id, _data: None)


@pytest.mark.timeout(30)
def test_a_message_with_another_cluster_id_is_refused(tmp_path, caplog):
    import asyncio

    import grpc

    from cluster.core.errors import ErrorCode
    from cluster.raft.messages import FetchRequest
    from cluster.transport._generated.cluster.v1 import raft_pb2_grpc
    from cluster.transport.raft_grpc import to_envelope

    (port,) = _free_ports(1)

    async def scenario():
        driver = _driver(tmp_path, port)
        await driver.start()
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                stub = raft_pb2_grpc.RaftServiceStub(channel)
                message = FetchRequest(2, 1, 0, 0, 0, 0)
                foreign = await stub.Send(to_envelope(message, cluster_id="other", directory_id="d2"), timeout=5)
                wrong_node = await stub.Send(to_envelope(FetchRequest(2, 7, 0, 0, 0, 0), cluster_id=CLUSTER_ID,
                                                         directory_id="d2"), timeout=5)
                ours = await stub.Send(to_envelope(message, cluster_id=CLUSTER_ID, directory_id="d2"), timeout=5)
            return foreign.error_code, wrong_node.error_code, ours.error_code
        finally:
            await driver.stop()

    foreign, wrong_node, ours = asyncio.run(scenario())
    assert foreign == ErrorCode.INCONSISTENT_CLUSTER_ID
    assert wrong_node == ErrorCode.NOT_LEADER_OR_FOLLOWER
    assert ours == ErrorCode.NONE
    assert "cluster id 'other'" in caplog.text


@pytest.mark.timeout(30)
def test_votes_of_a_voter_whose_disk_was_wiped_are_ignored(tmp_path, caplog):
    import asyncio

    from cluster.core.errors import ErrorCode
    from cluster.raft.messages import FetchRequest, VoteResponse
    from cluster.storage.raft_store import RaftStore

    (port,) = _free_ports(1)
    vote = VoteResponse(2, 1, ErrorCode.NONE, 1, None, True, 1, False)

    async def scenario():
        driver = _driver(tmp_path, port)
        driver._on_inbound(vote, "first-directory")
        driver._on_inbound(vote, "wiped-directory")                       # same voter, new raft directory
        driver._on_inbound(FetchRequest(2, 1, 0, 0, 0, 0), "wiped-directory")   # it may still fetch
        inbox = list(driver._inbox)
        ignored = driver.ignored_wiped_votes
        await driver.stop(resign=False)
        return inbox, ignored

    inbox, ignored = asyncio.run(scenario())
    assert inbox == [vote, FetchRequest(2, 1, 0, 0, 0, 0)]
    assert ignored == 1
    assert "disk wiped" in caplog.text
    # The directory id first seen is durable: a restarted driver still refuses the wiped voter.
    store = RaftStore(tmp_path / "raft1", cluster_id=CLUSTER_ID, node_id=1)
    assert store.read_peer_directory_ids() == {2: "first-directory"}
