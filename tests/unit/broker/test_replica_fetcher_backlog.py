"""The replica fetcher fetches ahead of its fsync only when the leader said it holds more than the answer carried.

A caught-up follower that fetched ahead after every large batch made its fsync report (the fetch that moves the
leader's high watermark, and so acks=all) wait behind an empty round trip; a backlogged one that did not would
leave the transfer of the next batch waiting behind the fsync."""

from __future__ import annotations

import asyncio
import uuid
from types import SimpleNamespace

import pytest

from cluster.broker.replica_fetcher import ReplicaFetcher
from cluster.replication import FollowerFetchState
from cluster.transport.replica_fetch_grpc import PartitionFetchResult

TOPIC_ID = uuid.UUID("6f1c2b1e-0000-4000-8000-000000000002")
BATCH_BYTES = 1_000_000                      # a full-size batch: the old rule fetched ahead on size alone


class FakePartition:
    """Appends move the log end offset by the offsets the test says the records hold; nothing is fsynced."""

    def __init__(self, log_end_offset: int) -> None:
        self.log_start_offset = 0
        self.log_end_offset = log_end_offset
        self.durable_log_end_offset = log_end_offset
        self.latest_epoch = 0
        self.appended: list[int] = []

    def end_offset_for_epoch(self, leader_epoch: int) -> tuple[int, int]:
        return 0, self.log_end_offset

    def append_as_follower(self, records, now_ms: int) -> None:
        self.appended.append(len(records))
        self.log_end_offset += 100


def _fetcher() -> ReplicaFetcher:
    """The fetcher without its gRPC channel and task: only the answer handling is under test."""
    fetcher = ReplicaFetcher.__new__(ReplicaFetcher)
    fetcher.manager = SimpleNamespace(_config={"replica.fetch.max.bytes": 1_048_576})
    fetcher.leader_id = 2
    fetcher.partitions = {}
    fetcher.wakeup = asyncio.Event()
    return fetcher


def _answer(leader_log_end_offset: int, size: int) -> PartitionFetchResult:
    return PartitionFetchResult(TOPIC_ID, 0, high_watermark=0, log_start_offset=0, records=b"r" * size,
                                log_end_offset=leader_log_end_offset)


def _handle(fetcher: ReplicaFetcher, partition: FakePartition, state: FollowerFetchState,
            answer: PartitionFetchResult) -> None:
    """Sends the fetch the state allows now and hands the fetcher ``answer`` to it."""
    position = state.next_fetch(0, partition)
    assert position is not None
    fetcher.wakeup.clear()
    fetcher._handle_partition(partition, state, position, answer, now_ms=0)


def _state() -> FollowerFetchState:
    return FollowerFetchState(TOPIC_ID, 0, local_broker_id=1, leader_id=2, leader_epoch=0)


@pytest.mark.parametrize("size", [BATCH_BYTES, 1_000])
def test_caught_up_after_the_append_means_no_fetch_ahead(size):
    fetcher, partition, state = _fetcher(), FakePartition(log_end_offset=0), _state()
    _handle(fetcher, partition, state, _answer(100, size))
    assert partition.appended == [size]
    assert not state.fetch_ahead
    assert not fetcher.wakeup.is_set()       # the next fetch waits for the fsync, and reports it
    assert state.next_fetch(0, partition) is None


@pytest.mark.parametrize("size", [BATCH_BYTES, 1_000])
def test_leader_holding_more_means_fetch_ahead(size):
    fetcher, partition, state = _fetcher(), FakePartition(log_end_offset=0), _state()
    _handle(fetcher, partition, state, _answer(250, size))
    assert state.fetch_ahead
    assert fetcher.wakeup.is_set()           # the next fetch goes out while this append is being fsynced
    position = state.next_fetch(0, partition)
    assert position is not None and position.durable_log_end_offset < position.fetch_offset


def test_backlog_ends_once_caught_up():
    fetcher, partition, state = _fetcher(), FakePartition(log_end_offset=0), _state()
    _handle(fetcher, partition, state, _answer(250, 1_000))
    _handle(fetcher, partition, state, _answer(250, 1_000))
    assert state.fetch_ahead
    _handle(fetcher, partition, state, _answer(300, 1_000))
    assert not state.fetch_ahead
