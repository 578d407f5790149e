"""Idempotent appends on a partition leader across leadership changes (issue 16).

The duplicates seen after a paused controller came from the order of the leader's checks: with the ISR below
``min.insync.replicas``, a retried batch whose predecessor the new leader lacked was answered
OUT_OF_ORDER_SEQUENCE_NUMBER, on which librdkafka bumps its producer epoch and re-sends every unacknowledged
record under a new producer id, so a copy still in another replica's log was written again.  Kafka checks min
ISR before anything else (Partition.appendRecordsToLeader), which these tests pin down, along with the other
candidates the issue named: a new leader knows the batches it holds above its high watermark, also as a former
follower, and keeps them across role changes.
"""

from __future__ import annotations

import uuid

import pytest

from cluster.broker.partition import Partition
from cluster.core.errors import ErrorCode, KafkaError
from cluster.storage import LogConfig, PartitionLog
from cluster.wire.records import build_batch

NOW_MS = 1_700_000_000_000
PRODUCER_ID, PRODUCER_EPOCH = 4000, 0
PRODUCE_VERSION = 9


def batch(first_sequence: int, records: int = 3) -> bytes:
    return build_batch([(None, b"v%d" % (first_sequence + i), [], NOW_MS) for i in range(records)],
                       producer_id=PRODUCER_ID, producer_epoch=PRODUCER_EPOCH, base_sequence=first_sequence)


def make_partition(tmp_path, name: str = "p") -> Partition:
    log = PartitionLog.open(str(tmp_path / f"{name}-0"), LogConfig(), NOW_MS)
    return Partition(name, 0, uuid.uuid4(), log, LogConfig(), local_broker_id=1,
                     on_dirty=lambda _partition: None)


def lead(partition: Partition, leader_epoch: int, isr: tuple[int, ...], min_isr: int = 2) -> None:
    partition.become_leader(leader_epoch, leader_epoch, (1, 2, 3), isr, NOW_MS, replica_lag_time_max_ms=30_000,
                            min_insync_replicas=min_isr)


def test_under_min_isr_a_sequence_gap_is_not_enough_replicas_not_out_of_order(tmp_path):
    partition = make_partition(tmp_path)
    lead(partition, 0, isr=(1, 2, 3))
    assert partition.append_records(batch(0), NOW_MS, PRODUCE_VERSION, required_acks=-1)[:2] == (0, 2)
    lead(partition, 1, isr=(1,))   # the ISR shrank under min.insync.replicas=2
    # The client retries seq 3.. (not taken: NOT_ENOUGH_REPLICAS) and, pipelined behind it, seq 6..: the second
    # must get the same retriable answer, never OUT_OF_ORDER_SEQUENCE_NUMBER (librdkafka bumps its epoch on it).
    for first_sequence in (3, 6):
        with pytest.raises(KafkaError) as raised:
            partition.append_records(batch(first_sequence), NOW_MS, PRODUCE_VERSION, required_acks=-1)
        assert raised.value.error_code == ErrorCode.NOT_ENOUGH_REPLICAS
    assert partition.log_end_offset == 3


def test_a_former_follower_recognises_a_retry_of_a_batch_above_its_high_watermark(tmp_path):
    leader, follower = make_partition(tmp_path, "leader"), make_partition(tmp_path, "follower")
    lead(leader, 0, isr=(1, 2, 3))
    leader.append_records(batch(0), NOW_MS, PRODUCE_VERSION, required_acks=-1)
    leader.append_records(batch(3), NOW_MS, PRODUCE_VERSION, required_acks=-1)
    follower.become_follower(2, 0, (1, 2, 3), (1, 2, 3), NOW_MS, fetch_backoff_ms=100)
    stored = leader.log.read(0, 1 << 20, leader.log_end_offset)
    follower.append_as_follower(stored, NOW_MS)   # above its high watermark (still 0)
    assert follower.high_watermark == 0
    lead(follower, 1, isr=(1, 2, 3))
    assert follower.append_records(batch(3), NOW_MS, PRODUCE_VERSION, required_acks=-1)[:2] == (3, 5)
    assert follower.log_end_offset == 6


def test_a_leader_keeps_its_producers_across_losing_and_regaining_leadership(tmp_path):
    partition = make_partition(tmp_path)
    lead(partition, 0, isr=(1, 2, 3))
    partition.append_records(batch(0), NOW_MS, PRODUCE_VERSION, required_acks=-1)
    partition.become_follower(-1, 1, (1, 2, 3), (1,), NOW_MS, fetch_backoff_ms=100)   # fenced: no leader
    lead(partition, 2, isr=(1, 2))
    assert partition.append_records(batch(0), NOW_MS, PRODUCE_VERSION, required_acks=-1)[:2] == (0, 2)
    assert partition.log_end_offset == 3
