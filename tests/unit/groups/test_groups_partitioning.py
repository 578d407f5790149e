"""The coordinator partition must match Kafka's exactly, or clients and tools disagree on the coordinator."""

from __future__ import annotations

import pytest

from cluster.groups.partitioning import INT32_MIN, java_string_hash_code, java_utils_abs, partition_for

# Values printed by Java's String.hashCode() (well-known ones; "polygenelubricants" and
# "DESIGNING WORKHOUSES" hash to Integer.MIN_VALUE).
JAVA_HASH_CODES = {
    "": 0,
    "a": 97,
    "abc": 96354,
    "Aa": 2112,
    "BB": 2112,
    "hello": 99162322,
    "Hello": 69609650,
    "hello world": 1794106052,
    "polygenelubricants": INT32_MIN,
    "DESIGNING WORKHOUSES": INT32_MIN,
}


@pytest.mark.parametrize("text,expected", sorted(JAVA_HASH_CODES.items()))
def test_java_string_hash_code_matches_java(text, expected):
    assert java_string_hash_code(text) == expected


def test_hash_counts_utf16_code_units():
    # U+00E9 is one UTF-16 unit (0xE9 = 233); U+1F600 is the surrogate pair D83D DE00.
    assert java_string_hash_code("\u00e9") == 233
    assert java_string_hash_code("\U0001F600") == 0xD83D * 31 + 0xDE00
    assert java_string_hash_code("x\U0001F600") == (ord("x") * 31 * 31 + 0xD83D * 31 + 0xDE00)


def test_hash_wraps_to_signed_32_bits():
    long_text = "consumer-group-" * 40
    value = java_string_hash_code(long_text)
    assert -(2**31) <= value < 2**31
    reference = 0
    for char in long_text:  # all BMP: one unit per character
        reference = (reference * 31 + ord(char)) % 2**32
    assert value == (reference - 2**32 if reference >= 2**31 else reference)


def test_utils_abs_maps_min_value_to_zero():
    assert java_utils_abs(INT32_MIN) == 0
    assert java_utils_abs(-5) == 5
    assert java_utils_abs(7) == 7


def test_partition_for_uses_utils_abs_and_modulo():
    assert partition_for("polygenelubricants", 50) == 0
    assert partition_for("hello", 50) == 99162322 % 50 == 22
    assert partition_for("hello world", 50) == 1794106052 % 50
    negative = "Hello world!"  # hashCode -52966915 in Java
    assert java_string_hash_code(negative) == -52966915
    assert partition_for(negative, 50) == 52966915 % 50
    assert all(0 <= partition_for(f"group-{i}", 7) < 7 for i in range(200))


def test_partition_for_rejects_no_partitions():
    with pytest.raises(ValueError):
        partition_for("g", 0)
