"""``kraftpy cluster describe-quorum`` follows the leader a follower names in its NOT_CONTROLLER reply, keeps asking
while the quorum elects, and does not let two stale followers send it to and fro (voters faked in-process)."""

from __future__ import annotations

import asyncio

import grpc
import pytest

import cluster.transport.controller_grpc as controller_grpc
from cluster.cli.quorum import describe_quorum
from cluster.core.errors import ErrorCode
from cluster.transport.controller_grpc import ControllerReply

VOTERS = "1@h:1,2@h:2,3@h:3"
QUORUM = {"leader_id": 3, "leader_epoch": 4, "high_watermark": 9, "voters": [], "observers": []}


class _Channel:
    def __init__(self, address: str) -> None:
        self.address = address

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc_info) -> None:
        return None


def _fake_voters(monkeypatch, answer) -> list[str]:
    """Each call of voter ``address`` returns ``answer(address, calls_so_far)``; returns the addresses asked."""
    asked: list[str] = []

    class FakeClient:
        def __init__(self, channel: _Channel) -> None:
            self.address = channel.address

        async def call(self, op, args, *, cluster_id, source_id, timeout_s):
            asked.append(self.address)
            reply = answer(self.address, len(asked))
            if isinstance(reply, Exception):
                raise reply
            return reply

    monkeypatch.setattr(grpc.aio, "insecure_channel", _Channel)
    monkeypatch.setattr(controller_grpc, "ControllerClient", FakeClient)
    return asked


def _not_controller(leader_id: int | None) -> ControllerReply:
    return ControllerReply(int(ErrorCode.NOT_CONTROLLER), f"not the active controller (leader {leader_id})", leader_id)


def _unavailable() -> grpc.aio.AioRpcError:
    return grpc.aio.AioRpcError(grpc.StatusCode.UNAVAILABLE, grpc.aio.Metadata(), grpc.aio.Metadata(), "down")


def test_the_leader_a_follower_names_is_asked_next(monkeypatch):
    replies = {"h:1": _not_controller(3), "h:2": _unavailable(), "h:3": ControllerReply(0, result=QUORUM)}
    asked = _fake_voters(monkeypatch, lambda address, _n: replies[address])
    assert asyncio.run(describe_quorum(VOTERS, 2.0)) == QUORUM
    assert asked == ["h:1", "h:3"]


def test_keeps_asking_while_the_followers_still_name_a_dead_leader(monkeypatch):
    def answer(address: str, calls: int):
        if address == "h:2":
            return _unavailable()   # the old leader, killed
        if calls < 8:
            return _not_controller(2)
        return ControllerReply(0, result=QUORUM) if address == "h:3" else _not_controller(3)

    asked = _fake_voters(monkeypatch, answer)
    assert asyncio.run(describe_quorum(VOTERS, 5.0)) == QUORUM
    assert asked[-1] == "h:3"


def test_two_stale_followers_naming_each_other_do_not_spin(monkeypatch):
    names = {"h:1": 2, "h:2": 1, "h:3": None}
    asked = _fake_voters(monkeypatch, lambda address, _n: _not_controller(names[address]))
    with pytest.raises(RuntimeError, match="no active controller answered"):
        asyncio.run(describe_quorum(VOTERS, 0.5))
    assert len(asked) < 40   # a round of at most five calls per 100 ms backoff, not thousands
