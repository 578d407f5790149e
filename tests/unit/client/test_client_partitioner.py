"""Kafka's murmur2 and default partitioner: the placement every Java producer agrees on."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cluster.client.partitioner import StickyPartitioner, keyed_partition, murmur2, to_positive

# kafka-python (used as an independent oracle below) emits DeprecationWarnings on import.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

# Apache Kafka, clients/src/test/java/org/apache/kafka/common/utils/UtilsTest.java, testMurmur2.
KAFKA_MURMUR2_VECTORS = [
    (b"21", -973932308),
    (b"foobar", -790332482),
    (b"a-little-bit-long-string", -985981536),
    (b"a-little-bit-longer-string", -1486304829),
    (b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971),
    (b"abc", 479470107),
]


@pytest.mark.parametrize(("data", "expected"), KAFKA_MURMUR2_VECTORS)
def test_murmur2_matches_kafka_utils_test(data, expected):
    assert murmur2(data) == expected


def test_murmur2_of_empty_input_is_the_mixed_seed():
    # h = seed ^ 0 followed by the final avalanche only; kafka-python's port gives the same value.
    assert murmur2(b"") == 275646681


@given(st.binary(max_size=67))
def test_murmur2_agrees_with_kafka_pythons_independent_port(data):
    # kafka-python's DefaultPartitioner.murmur2 is a separate port of the same Java method, returning
    # the unsigned value; agreeing on arbitrary bytes covers every tail length (the usual porting bug)
    # and bytes >= 0x80 (which Java must mask with 0xff).
    from kafka.partitioner.default import murmur2 as kafka_python_murmur2

    assert murmur2(data) & 0xFFFFFFFF == kafka_python_murmur2(data)


def test_murmur2_tail_bytes_are_unsigned():
    from kafka.partitioner.default import murmur2 as kafka_python_murmur2

    for data in (b"\xff", b"\xff\xfe", b"\x80\x81\x82", b"\xff\xff\xff\xff\xff"):
        assert murmur2(data) & 0xFFFFFFFF == kafka_python_murmur2(data)


@given(st.binary(max_size=64))
def test_murmur2_is_a_signed_32_bit_int(data):
    value = murmur2(data)
    assert -(1 << 31) <= value < (1 << 31)


def test_to_positive_clears_the_sign_bit_like_kafka():
    assert to_positive(-973932308) == -973932308 & 0x7FFFFFFF
    assert to_positive(-(1 << 31)) == 0  # not abs(): Integer.MIN_VALUE maps to 0
    assert to_positive(5) == 5


def test_keyed_partition_is_java_default_partitioner():
    # Utils.toPositive(Utils.murmur2(key)) % numPartitions, computed by hand from the vectors.
    assert keyed_partition(b"21", 4) == (-973932308 & 0x7FFFFFFF) % 4
    assert keyed_partition(b"foobar", 7) == (-790332482 & 0x7FFFFFFF) % 7
    assert keyed_partition(b"abc", 1) == 0


def test_keyed_partition_rejects_zero_partitions():
    with pytest.raises(ValueError, match="num_partitions"):
        keyed_partition(b"k", 0)


def test_sticky_partitioner_keeps_unkeyed_records_together_until_next_batch():
    partitioner = StickyPartitioner(random.Random(7))
    first = {partitioner.partition("t", None, 3) for _ in range(20)}
    assert len(first) == 1
    partitioner.next_batch("t", 3)
    second = partitioner.partition("t", None, 3)
    assert second == (first.pop() + 1) % 3


def test_sticky_partitioner_round_robins_across_batches():
    partitioner = StickyPartitioner(random.Random(1))
    seen = []
    for _ in range(6):
        seen.append(partitioner.partition("t", None, 3))
        partitioner.next_batch("t", 3)
    assert sorted(seen) == [0, 0, 1, 1, 2, 2]


def test_sticky_partitioner_routes_keys_by_murmur2_regardless_of_stickiness():
    partitioner = StickyPartitioner(random.Random(3))
    assert partitioner.partition("t", b"21", 4) == keyed_partition(b"21", 4)
    partitioner.next_batch("t", 4)
    assert partitioner.partition("t", b"21", 4) == keyed_partition(b"21", 4)
    # An empty key is a key (murmur2 of b""), not "no key".
    assert partitioner.partition("t", b"", 4) == to_positive(murmur2(b"")) % 4


def test_sticky_partitioner_repicks_when_partition_count_shrinks_below_sticky():
    partitioner = StickyPartitioner(random.Random(0))
    for _ in range(5):
        partitioner.partition("t", None, 10)
        partitioner.next_batch("t", 10)
    assert 0 <= partitioner.partition("t", None, 1) < 1
