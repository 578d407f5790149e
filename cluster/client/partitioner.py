"""Choosing a partition for a record: Kafka's default partitioner, bit for bit.

A keyed record must land where every other producer of the same key puts it, or per-key ordering
breaks as soon as two producers share a topic.  The reference is the Java client (and Kafka Streams,
Connect, kcat with ``-X partitioner=murmur2_random``): ``toPositive(murmur2(key_bytes)) % num_partitions``
with Kafka's own MurmurHash2 variant (seed 0x9747b28c, Utils.murmur2).  librdkafka's ``murmur2`` and
``murmur2_random`` partitioners compute the same function.

Beware: librdkafka (so confluent-kafka-python and kcat) defaults to ``consistent_random``, a CRC-32 of
the key, which places the same key in a different partition than Java does.  We follow Java; to have a
librdkafka producer agree with us, configure it with ``partitioner=murmur2_random``.

Records without a key have no placement constraint; like Java's sticky partitioner (KIP-480) we keep
them on one partition for a whole batch and move to the next partition (round-robin) for the next one,
so batches stay large.
"""

from __future__ import annotations

import random
import struct

__all__ = ["StickyPartitioner", "keyed_partition", "murmur2", "to_positive"]

_MASK32 = 0xFFFFFFFF
_SEED = 0x9747B28C
_M = 0x5BD1E995
_R = 24


def murmur2(data: bytes) -> int:
    """Kafka's Utils.murmur2: a signed 32-bit int, exactly as the Java method returns it."""
    length = len(data)
    h = (_SEED ^ length) & _MASK32
    whole_words = length // 4
    for (k,) in struct.iter_unpack("<I", data[: whole_words * 4]):
        k = (k * _M) & _MASK32
        k ^= k >> _R
        k = (k * _M) & _MASK32
        h = ((h * _M) & _MASK32) ^ k
    tail = length & 3
    base = whole_words * 4
    # The Java switch falls through from case 3 to case 1; bytes are taken unsigned (& 0xff).
    if tail == 3:
        h ^= data[base + 2] << 16
    if tail >= 2:
        h ^= data[base + 1] << 8
    if tail >= 1:
        h ^= data[base]
        h = (h * _M) & _MASK32
    h ^= h >> 13
    h = (h * _M) & _MASK32
    h ^= h >> 15
    return h - (1 << 32) if h & 0x80000000 else h


def to_positive(number: int) -> int:
    """Kafka's Utils.toPositive: clears the sign bit (not abs(), which differs for INT_MIN)."""
    return number & 0x7FFFFFFF


def keyed_partition(key: bytes, num_partitions: int) -> int:
    """The partition Kafka's default partitioner picks for a non-null key."""
    if num_partitions <= 0:
        raise ValueError(f"num_partitions must be positive, got {num_partitions}")
    return to_positive(murmur2(key)) % num_partitions


class StickyPartitioner:
    """Keyed records by murmur2; unkeyed records stick to one partition until ``next_batch()``."""

    def __init__(self, rng: random.Random | None = None) -> None:
        self._rng = rng or random.Random()
        self._sticky: dict[str, int] = {}

    def partition(self, topic: str, key: bytes | None, num_partitions: int) -> int:
        if key is not None:
            return keyed_partition(key, num_partitions)
        current = self._sticky.get(topic)
        if current is None or current >= num_partitions:
            current = self._rng.randrange(num_partitions)
            self._sticky[topic] = current
        return current

    def next_batch(self, topic: str, num_partitions: int) -> None:
        """A batch of unkeyed records was sent: the next ones go to the following partition."""
        current = self._sticky.get(topic)
        if current is not None and num_partitions > 0:
            self._sticky[topic] = (current + 1) % num_partitions
