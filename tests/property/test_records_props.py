"""Properties of the RecordBatch v2 codec: round trips, CRC coverage, timestamp search, framing."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cluster.core.errors import CorruptRecordError
from cluster.wire.records import (
    Record,
    build_batch,
    decode_records,
    find_first_record_at_or_after,
    iter_batch_headers,
    stamp_batch,
    validate_batch,
)

nullable_bytes = st.none() | st.binary(max_size=200)
headers = st.lists(st.tuples(st.text(max_size=12), nullable_bytes), max_size=4)
timestamps = st.integers(min_value=0, max_value=2**45)
record = st.tuples(nullable_bytes, nullable_bytes, headers, timestamps)
records = st.lists(record, min_size=1, max_size=25)
codecs = st.sampled_from([0, 1, 2, 3, 4])
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(
    records=records,
    codec=codecs,
    base_offset=st.integers(0, 2**40),
    producer=st.tuples(st.integers(-1, 2**40), st.integers(-1, 2**15 - 1), st.integers(-1, 2**31 - 1)),
    transactional=st.booleans(),
)
def test_build_decode_round_trip(records, codec, base_offset, producer, transactional) -> None:
    producer_id, producer_epoch, base_sequence = producer
    batch = build_batch(
        records,
        base_offset=base_offset,
        compression=codec,
        producer_id=producer_id,
        producer_epoch=producer_epoch,
        base_sequence=base_sequence,
        is_transactional=transactional,
    )
    header = validate_batch(batch)
    assert header.records_count == len(records)
    assert header.last_offset == base_offset + len(records) - 1
    assert header.max_timestamp == max(r[3] for r in records)
    assert (header.producer_id, header.producer_epoch, header.base_sequence) == producer
    assert header.is_transactional == transactional and header.compression_type == codec
    assert decode_records(batch) == [
        Record(base_offset + i, ts, key, value, list(hdrs))
        for i, (key, value, hdrs, ts) in enumerate(records)
    ]


@SETTINGS
@given(records=records, codec=codecs, data=st.data())
def test_any_byte_flip_under_the_crc_is_detected(records, codec, data) -> None:
    batch = bytearray(build_batch(records, compression=codec))
    position = data.draw(st.integers(21, len(batch) - 1))
    flip = data.draw(st.integers(1, 255))
    batch[position] ^= flip
    try:
        validate_batch(batch)
    except CorruptRecordError:
        return
    raise AssertionError(f"flip {flip:#x} at {position} went unnoticed")


@SETTINGS
@given(records=records, codec=codecs, base_offset=st.integers(0, 2**50), epoch=st.integers(-1, 2**31 - 1))
def test_stamping_keeps_the_batch_valid(records, codec, base_offset, epoch) -> None:
    batch = bytearray(build_batch(records, compression=codec))
    stamp_batch(batch, base_offset, epoch)
    header = validate_batch(batch)
    assert (header.base_offset, header.partition_leader_epoch) == (base_offset, epoch)
    assert [r.offset for r in decode_records(batch)] == list(range(base_offset, base_offset + len(records)))


@SETTINGS
@given(records=records, codec=codecs, target=timestamps, min_offset=st.integers(0, 30))
def test_timestamp_search_matches_brute_force(records, codec, target, min_offset) -> None:
    batch = build_batch(records, compression=codec)
    expected = next(
        (
            (r.offset, r.timestamp)
            for r in decode_records(batch)
            if r.timestamp >= target and r.offset >= min_offset
        ),
        None,
    )
    assert find_first_record_at_or_after(batch, target, min_offset=min_offset) == expected


@SETTINGS
@given(batches=st.lists(records, min_size=1, max_size=5), data=st.data())
def test_iter_batch_headers_yields_the_complete_prefix(batches, data) -> None:
    encoded = [build_batch(r, base_offset=100 * i) for i, r in enumerate(batches)]
    joined = b"".join(encoded)
    cut = data.draw(st.integers(0, len(joined)))
    complete = 0
    end = 0
    for batch in encoded:
        if end + len(batch) > cut:
            break
        end += len(batch)
        complete += 1
    assert [h.base_offset for _, h in iter_batch_headers(joined[:cut])] == [100 * i for i in range(complete)]
