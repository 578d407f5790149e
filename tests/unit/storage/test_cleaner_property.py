"""Property: compaction never changes what a consumer materialises (the latest value per key), never
moves an offset, and leaves at most one record per key below the active segment."""

from __future__ import annotations

import tempfile

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from storage_testlib import NOW_MS, read_all
from test_cleaner import compacted_log, put, records_of

from cluster.storage.cleaner import clean_now

KEYS = [b"a", b"b", b"c", b"d", b"e"]
record = st.tuples(st.sampled_from(KEYS), st.one_of(st.none(), st.binary(min_size=0, max_size=30)))
batches = st.lists(st.lists(record, min_size=1, max_size=4), min_size=1, max_size=40)


def materialise(records) -> dict[bytes, bytes | None]:
    view: dict[bytes, bytes | None] = {}
    for _, key, value in records:
        view[key] = value
    return view


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batches=batches, passes=st.integers(min_value=1, max_value=3))
def test_compaction_preserves_the_latest_value_per_key(batches, passes) -> None:
    with tempfile.TemporaryDirectory() as directory:
        log = compacted_log(f"{directory}/t-0", segment_bytes=200)
        for pairs in batches:
            put(log, pairs)
        log.flush()
        before = records_of(read_all(log))
        for _ in range(passes):
            clean_now(log, NOW_MS, force=True)  # within delete.retention.ms: tombstones stay
        after = records_of(read_all(log))
        assert set(after) <= set(before)
        assert [r[0] for r in after] == sorted({r[0] for r in after})
        assert materialise(after) == materialise(before)
        active_base = log.active_segment.base_offset
        cleaned_keys = [key for offset, key, _ in after if offset < active_base]
        assert len(cleaned_keys) == len(set(cleaned_keys))
        assert log.log_end_offset == before[-1][0] + 1
        log.close()
