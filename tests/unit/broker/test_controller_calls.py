"""Controller calls from a broker follow a new quorum leader at once (issue 16).

A frozen controller never answers: a heartbeat sent to it must be abandoned as soon as this node's Raft names
another leader, and sent there, instead of waiting for its deadline while the new controller's session clock
runs.  The ``ControllerChannel`` is driven here with its network replaced by fakes (no gRPC, no broker).
"""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import grpc
import pytest

from cluster.broker.controller_channel import ControllerChannel, ControllerMovedError
from cluster.metadata.controller_api import BrokerHeartbeatRequest
from cluster.transport.raft_grpc import FaultFilter

HEARTBEAT = BrokerHeartbeatRequest(1, 5, 0)


def channel_with_fake_network(answers: dict[int, float]) -> tuple[ControllerChannel, list[int]]:
    """A ControllerChannel whose remote calls to leader L answer after ``answers[L]`` seconds (inf: never)."""
    raft = SimpleNamespace(leader_id=2)
    channel = ControllerChannel(1, {1: None, 2: None, 3: None}, "cid", None, lambda: raft.leader_id, FaultFilter(None))
    channel.raft = raft
    called: list[int] = []

    async def remote_call(leader, method, request, timeout_s):
        called.append(leader)
        await asyncio.sleep(min(answers[leader], timeout_s))
        if answers[leader] > timeout_s:   # what a gRPC call past its deadline raises
            raise grpc.aio.AioRpcError(grpc.StatusCode.DEADLINE_EXCEEDED, grpc.aio.Metadata(), grpc.aio.Metadata())
        return {"answered_by": leader}

    channel._remote_call = remote_call
    return channel, called


def move_leader(channel: ControllerChannel, leader_id: int) -> None:
    """What ``_on_leader_change`` does for the calls under way."""
    channel.raft.leader_id = leader_id
    channel.on_controller_moved()


def test_a_call_to_a_frozen_controller_moves_to_the_new_leader_at_once():
    async def scenario():
        channel, called = channel_with_fake_network({2: float("inf"), 3: 0.01})
        call = asyncio.create_task(channel.broker_heartbeat(HEARTBEAT, timeout_ms=10_000))
        await asyncio.sleep(0.1)
        started = asyncio.get_running_loop().time()
        move_leader(channel, 3)
        reply = await call
        return reply, called, asyncio.get_running_loop().time() - started

    reply, called, took_s = asyncio.run(scenario())
    assert reply == {"answered_by": 3}
    assert called == [2, 3]
    assert took_s < 0.5, f"the call stayed with the frozen controller for {took_s:.2f} s"


def test_an_abandoned_call_raises_controller_moved_not_an_asyncio_state_error():
    async def scenario():
        channel, _called = channel_with_fake_network({2: float("inf")})
        call = asyncio.create_task(channel._call_until_controller_moves(2, "broker_heartbeat", HEARTBEAT, 10.0))
        await asyncio.sleep(0.05)
        move_leader(channel, None)
        with pytest.raises(ControllerMovedError):
            await call

    asyncio.run(scenario())


def test_an_attempt_timeout_bounds_each_call_to_an_unresponsive_controller():
    async def scenario():
        channel, called = channel_with_fake_network({2: float("inf")})
        with pytest.raises(Exception) as raised:
            await channel.broker_heartbeat(HEARTBEAT, timeout_ms=700, attempt_timeout_ms=200)
        return called, raised.value

    called, error = asyncio.run(scenario())
    assert len(called) >= 3, f"only {len(called)} attempts in 0.7 s with 0.2 s attempts"
    assert "no active controller answered broker_heartbeat" in str(error)
