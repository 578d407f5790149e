"""Which ``__consumer_offsets`` partition (and so which broker) coordinates a group.

Every Kafka client and tool agrees on the coordinator because the mapping is fixed by Kafka:
``Utils.abs(groupId.hashCode()) % offsets.topic.num.partitions``.  ``hashCode`` is Java's ``String.hashCode``:
``s[0]*31^(n-1) + ... + s[n-1]`` over UTF-16 code units (so a character outside the BMP counts as its two
surrogates), wrapping at 32 bits.  ``Utils.abs`` maps ``Integer.MIN_VALUE`` to 0 (``Math.abs`` would leave it
negative).  The same scheme places transactional ids on ``__transaction_state``.
"""

from __future__ import annotations

_MASK32 = 0xFFFFFFFF
INT32_MIN = -(2**31)


def java_string_hash_code(text: str) -> int:
    """Java's ``String.hashCode()``: a signed 32-bit int computed over UTF-16 code units."""
    units = text.encode("utf-16-be", "surrogatepass")
    value = 0
    for index in range(0, len(units), 2):
        value = (value * 31 + ((units[index] << 8) | units[index + 1])) & _MASK32
    return value - (1 << 32) if value & 0x80000000 else value


def java_utils_abs(value: int) -> int:
    """Kafka's ``Utils.abs``: absolute value, except ``Integer.MIN_VALUE`` becomes 0."""
    return 0 if value == INT32_MIN else abs(value)


def partition_for(key: str, num_partitions: int) -> int:
    """The coordinator partition of a group id (or transactional id) among ``num_partitions``."""
    if num_partitions <= 0:
        raise ValueError(f"num_partitions must be positive, got {num_partitions}")
    return java_utils_abs(java_string_hash_code(key)) % num_partitions
