"""Idempotent producer sequence rules (Kafka's ProducerStateManager semantics)."""

import pytest

from cluster.core.errors import ErrorCode, KafkaError
from cluster.replication.producer_state import INT32_MAX, MAX_RETAINED_BATCHES, ProducerStateTable


def append(table, pid, epoch, seq, count, base_offset, ts=0):
    duplicate = table.check_append(pid, epoch, seq, count - 1)
    if duplicate is None:
        table.replay(pid, epoch, seq, count - 1, base_offset, ts)
    return duplicate


def test_non_idempotent_batches_are_never_checked():
    table = ProducerStateTable()
    assert table.check_append(-1, -1, -1, 9) is None
    table.replay(-1, -1, -1, 9, 0, 0)
    assert len(table) == 0


def test_in_sequence_batches_are_accepted_and_a_retry_returns_original_offsets():
    table = ProducerStateTable()
    assert append(table, 7, 0, 0, 10, base_offset=100) is None
    assert append(table, 7, 0, 10, 5, base_offset=110) is None
    duplicate = table.check_append(7, 0, 0, 9)
    assert (duplicate.base_offset, duplicate.last_offset) == (100, 109)
    duplicate = table.check_append(7, 0, 10, 4)
    assert (duplicate.base_offset, duplicate.last_offset) == (110, 114)


def test_gap_in_sequence_is_out_of_order():
    table = ProducerStateTable()
    append(table, 7, 0, 0, 10, base_offset=0)
    with pytest.raises(KafkaError) as raised:
        table.check_append(7, 0, 11, 0)
    assert raised.value.error_code == ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER


def test_only_the_last_five_batches_are_recognised_as_duplicates():
    table = ProducerStateTable()
    for index in range(MAX_RETAINED_BATCHES + 1):
        append(table, 1, 0, index, 1, base_offset=index)
    # Batch 0 has been forgotten: its retry is now out of order, not a silent duplicate.
    with pytest.raises(KafkaError) as raised:
        table.check_append(1, 0, 0, 0)
    assert raised.value.error_code == ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER
    assert table.check_append(1, 0, 1, 0).base_offset == 1


def test_older_epoch_is_fenced_and_newer_epoch_must_start_at_zero():
    table = ProducerStateTable()
    append(table, 3, 2, 0, 1, base_offset=0)
    with pytest.raises(KafkaError) as raised:
        table.check_append(3, 1, 1, 0)
    assert raised.value.error_code == ErrorCode.INVALID_PRODUCER_EPOCH
    with pytest.raises(KafkaError) as raised:
        table.check_append(3, 3, 5, 0)
    assert raised.value.error_code == ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER
    assert table.check_append(3, 3, 0, 0) is None


def test_unknown_producer_may_start_anywhere_and_sequences_wrap():
    table = ProducerStateTable()
    append(table, 9, 0, INT32_MAX - 1, 2, base_offset=0)  # sequences INT32_MAX-1 .. INT32_MAX
    assert table.check_append(9, 0, 0, 0) is None  # wraps to 0


def test_expiry_forgets_idle_producers():
    table = ProducerStateTable()
    append(table, 1, 0, 0, 1, base_offset=0, ts=1_000)
    append(table, 2, 0, 0, 1, base_offset=1, ts=5_000)
    assert table.expire(now_ms=6_000, expiration_ms=2_000) == 1
    assert table.entry(1) is None and table.entry(2) is not None
