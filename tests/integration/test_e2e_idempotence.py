"""Idempotent producers of all three Python clients: no duplicates, no gaps, real producer ids.

Each client produces a few thousand numbered records over three partitions with idempotence on; a
consumer must see each number exactly once, per partition in the order sent.  The segment files must
show that idempotence was really negotiated (producer id >= 0 on every batch, sequences contiguous per
producer), since a client that silently fell back to a plain producer would pass the first check too.
"""

from __future__ import annotations

import pytest
from client_adapters import CLIENTS, Msg, consume, create_topic, produce, unique_topic
from log_segments import read_batch_headers

pytestmark = [pytest.mark.timeout(120)]

PARTITIONS = 3
COUNT = 3000


def _assert_idempotent_batches(broker, topic: str) -> None:
    for partition in range(PARTITIONS):
        headers = [h for h in read_batch_headers(broker.partition_dir(topic, partition)) if not h.is_control]
        assert headers, f"partition {partition}: no batches on disk"
        next_sequence: dict[tuple[int, int], int] = {}  # (producer_id, epoch) -> next
        for h in headers:
            assert h.producer_id >= 0 and h.producer_epoch >= 0 and h.base_sequence >= 0, (
                f"partition {partition} batch at {h.base_offset}: producer_id={h.producer_id} "
                f"epoch={h.producer_epoch} base_sequence={h.base_sequence}: not an idempotent batch")
            expected = next_sequence.get((h.producer_id, h.producer_epoch), 0)
            assert h.base_sequence == expected, (
                f"partition {partition} batch at {h.base_offset}: base_sequence {h.base_sequence}, "
                f"expected {expected} (duplicate or gap in the producer's sequence)")
            next_sequence[(h.producer_id, h.producer_epoch)] = h.base_sequence + h.records_count


@pytest.mark.parametrize("client", CLIENTS)
def test_idempotent_producer_no_duplicates_no_gaps(broker, client):
    topic = unique_topic(f"idem-{client}")
    create_topic(broker.bootstrap, topic, PARTITIONS)
    sent = [Msg(f"k{i}".encode(), f"seq-{i:07d}".encode(), partition=i % PARTITIONS) for i in range(COUNT)]
    delivered = produce(client, broker.bootstrap, topic, sent, codec="lz4", idempotent=True)

    consumed = consume("confluent", broker.bootstrap, topic, range(PARTITIONS), COUNT, timeout_s=45)
    values = [r.value for r in consumed.records]
    assert len(values) == len(set(values)), f"{len(values) - len(set(values))} duplicates"
    missing = {m.value for m in sent} - set(values)
    assert not missing, f"{len(missing)} acknowledged records missing, e.g. {sorted(missing)[:5]}"
    assert len(values) == COUNT
    for partition in range(PARTITIONS):
        recs = sorted((r for r in consumed.records if r.partition == partition), key=lambda r: r.offset)
        assert [r.offset for r in recs] == list(range(len(recs))), f"partition {partition}: offset gap"
        expected = [m.value for m in sent if m.partition == partition]
        assert [r.value for r in recs] == expected, f"partition {partition}: order differs from send order"
    for d in delivered:
        assert sent[d.index].partition == d.partition
    _assert_idempotent_batches(broker, topic)
