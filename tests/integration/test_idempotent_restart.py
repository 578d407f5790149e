"""Idempotent producer state survives a broker crash: a retried batch gets its original offsets back.

The producer state (last five batches per producer id) is rebuilt from the batch headers in the log on
restart; without that, a client that retries a batch whose acknowledgement was lost in the crash would
append it twice.
"""

from __future__ import annotations

import uuid

import pytest
from test_bad_input import RawConnection, create_topic, fetch_all, produce

from cluster.core.errors import ErrorCode
from cluster.wire import records
from cluster.wire.messages import init_producer_id_request as ipq

pytestmark = pytest.mark.timeout(120)


def idempotent_batch(producer_id: int, epoch: int, sequence: int, values: list[bytes]) -> bytes:
    return records.build_batch([(None, value, [], 1_700_000_000_000) for value in values],
                               producer_id=producer_id, producer_epoch=epoch, base_sequence=sequence)


def test_retry_after_kill_9_returns_original_offsets(broker_factory):
    broker = broker_factory("idempotent-restart")
    topic = f"idem-{uuid.uuid4().hex[:8]}"
    conn = RawConnection(broker.bootstrap)
    try:
        assert create_topic(conn, topic) == 0
        init = conn.request(22, 4, ipq.InitProducerIdRequest(transactional_id=None, transaction_timeout_ms=60000))
        assert init.error_code == 0
        producer_id, epoch = init.producer_id, init.producer_epoch
        first = idempotent_batch(producer_id, epoch, 0, [b"a", b"b"])
        second = idempotent_batch(producer_id, epoch, 2, [b"c"])
        assert produce(conn, topic, first).base_offset == 0
        assert produce(conn, topic, second).base_offset == 2
    finally:
        conn.close()

    broker.restart(crash=True)

    conn = RawConnection(broker.bootstrap)
    try:
        retried = produce(conn, topic, second)
        assert (retried.error_code, retried.base_offset) == (0, 2), "duplicate must return its original offset"
        gap = produce(conn, topic, idempotent_batch(producer_id, epoch, 9, [b"x"]))
        assert gap.error_code == ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER
        assert produce(conn, topic, idempotent_batch(producer_id, epoch, 3, [b"d"])).base_offset == 3
        assert [record.value for record in fetch_all(conn, topic)] == [b"a", b"b", b"c", b"d"]
        second_init = conn.request(22, 4, ipq.InitProducerIdRequest(transactional_id=None,
                                                                    transaction_timeout_ms=60000))
        assert second_init.producer_id != producer_id, "producer ids are never reused across restarts"
    finally:
        conn.close()


def test_older_epoch_is_fenced(broker):
    topic = f"fence-{uuid.uuid4().hex[:8]}"
    conn = RawConnection(broker.bootstrap)
    try:
        assert create_topic(conn, topic) == 0
        assert produce(conn, topic, idempotent_batch(4242, 3, 0, [b"new"])).error_code == 0
        stale = produce(conn, topic, idempotent_batch(4242, 2, 1, [b"old"]))
        assert stale.error_code == ErrorCode.INVALID_PRODUCER_EPOCH
        bumped = produce(conn, topic, idempotent_batch(4242, 4, 5, [b"bad-start"]))
        assert bumped.error_code == ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER
    finally:
        conn.close()
