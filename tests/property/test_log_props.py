"""Random sequences of appends, reopens, crashes, torn tails, truncations, rolls, flushes and
retention keep the partition log consistent with a simple model: offsets are contiguous, every
batch reads back byte for byte, and the leader-epoch cache agrees with the batches."""

from __future__ import annotations

import os
import tempfile

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from cluster.storage import LogConfig, PartitionLog
from cluster.wire.records import build_batch, iter_batch_headers, parse_batch_header, validate_batch

CONFIG = LogConfig(
    segment_bytes=400, index_interval_bytes=120, segment_ms=10_000, retention_ms=-1, retention_bytes=1_200
)
START_MS = 1_700_000_000_000

append_op = st.tuples(
    st.just("append"),
    st.integers(1, 4),  # records
    st.integers(0, 300),  # value bytes
    st.integers(-5_000, 5_000),  # timestamp jitter
    st.booleans(),  # new leader epoch
)
# Appends dominate, so that logs grow to several segments between the disruptive operations.
operations = st.one_of(
    *[append_op] * 8,
    st.tuples(st.just("reopen")),
    st.tuples(st.just("crash")),
    st.tuples(st.just("tear"), st.integers(1, 10_000)),
    st.tuples(st.just("truncate"), st.floats(0, 1)),
    st.tuples(st.just("roll")),
    st.tuples(st.just("flush")),
    st.tuples(st.just("retention")),
)


class Model:
    def __init__(self) -> None:
        self.batches: list[bytes] = []  # as stored, oldest first
        self.log_start_offset = 0
        self.empty_end = 0  # log end offset when no batch is left

    @property
    def log_end_offset(self) -> int:
        return parse_batch_header(self.batches[-1]).next_offset if self.batches else self.empty_end

    def drop_from(self, offset: int) -> None:
        while self.batches and parse_batch_header(self.batches[-1]).last_offset >= offset:
            self.empty_end = parse_batch_header(self.batches.pop()).base_offset
        if self.batches:
            self.empty_end = self.log_end_offset

    def drop_before(self, offset: int) -> None:
        while self.batches and parse_batch_header(self.batches[0]).last_offset < offset:
            self.batches.pop(0)
        self.log_start_offset = offset


def check(log: PartitionLog, model: Model) -> None:
    assert log.log_end_offset == model.log_end_offset
    assert log.log_start_offset == model.log_start_offset
    data = log.read(log.log_start_offset, 1 << 40, log.log_end_offset)
    assert data == b"".join(model.batches)
    for batch in model.batches[:: max(1, len(model.batches) // 5)]:
        header = parse_batch_header(batch)
        assert log.read(header.last_offset, 1, log.log_end_offset) == batch
    bases = log.segment_base_offsets
    assert bases == sorted(set(bases)) and bases[-1] <= log.log_end_offset
    entries = log.epoch_entries
    assert [e for e, _ in entries] == sorted({e for e, _ in entries})
    assert [o for _, o in entries] == sorted({o for _, o in entries})
    for batch in model.batches:
        header = parse_batch_header(batch)
        epoch, end = log.end_offset_for_epoch(header.partition_leader_epoch)
        assert epoch == header.partition_leader_epoch and end > header.last_offset
    assert log.recovery_point <= log.log_end_offset


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=st.lists(operations, min_size=5, max_size=40))
def test_random_operations_keep_the_log_consistent(ops) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "t-0")
        now_ms = START_MS
        log = PartitionLog.open(path, CONFIG, now_ms)
        model = Model()
        epoch = 0
        for op in ops:
            kind = op[0]
            if kind == "append":
                _, records, value_bytes, jitter, bump = op
                epoch += bump
                now_ms += 10
                batch = bytearray(
                    build_batch([(b"k", b"v" * value_bytes, [], now_ms + jitter + i) for i in range(records)])
                )
                base, last = log.append(batch, validate_batch(batch), epoch, now_ms)
                assert base == model.log_end_offset and last == base + records - 1
                model.batches.append(bytes(batch))
            elif kind == "reopen":
                log.close()
                log = PartitionLog.open(path, CONFIG, now_ms)
            elif kind == "crash":
                log.abandon()
                log = PartitionLog.open(path, CONFIG, now_ms)
            elif kind == "tear":
                # Power loss tore the end of the last batch (it was never fsynced).
                if model.batches and log.active_segment.size > 0 and log.recovery_point < log.log_end_offset:
                    last = model.batches[-1]
                    cut = op[1] % len(last) + 1
                    segment_path = log.active_segment.log_path
                    log.abandon()
                    os.truncate(segment_path, os.path.getsize(segment_path) - cut)
                    model.drop_from(parse_batch_header(last).base_offset)
                    log = PartitionLog.open(path, CONFIG, now_ms)
                    event("torn tail recovered")
            elif kind == "truncate":
                span = log.log_end_offset - log.log_start_offset
                offset = log.log_start_offset + int(op[1] * span)
                if offset < log.log_end_offset:
                    event("truncated")
                log.truncate_to(offset)
                model.drop_from(offset)
            elif kind == "roll":
                now_ms += CONFIG.segment_ms + 1
                log.maybe_roll(now_ms)
            elif kind == "flush":
                log.flush()
                assert log.recovery_point == log.log_end_offset
            elif kind == "retention":
                log.flush()
                if log.delete_old_segments(now_ms):
                    event("retention deleted segments")
                    assert log.log_start_offset in [parse_batch_header(b).base_offset for b in model.batches]
                    model.drop_before(log.log_start_offset)
            check(log, model)
        event(f"segments at end: {min(log.segment_count, 5)}")
        log.close()
        log = PartitionLog.open(path, CONFIG, now_ms)
        check(log, model)
        assert [h.base_offset for h in log.iter_batch_headers(log.log_start_offset)] == [
            h.base_offset for _, h in iter_batch_headers(b"".join(model.batches))
        ]
        log.close()
