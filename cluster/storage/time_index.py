"""The sparse time index of one segment (Kafka's ``.timeindex`` file).

ListOffsets by timestamp needs the first record with timestamp >= T.  Timestamps in a log are
not monotonic (CreateTime comes from clients), so the index records the *running maximum*:
an entry (T, o) means "every batch up to and including the one at offset o has timestamp <= T".
An entry is added when the running maximum grows, at the same moments as offset-index entries,
plus a final one when the segment rolls.  A lookup for T takes the last entry with timestamp
strictly below T: every record before its batch is below T and can be skipped.  Entries hold
the base offset of the batch that set the maximum, so ``max_timestamp_and_offset`` can find
that batch again.

Format: big-endian int64 timestamp + int32 relative offset, 12 bytes per entry, appended (a torn
tail loses entries, never correctness).  Entries load lazily, like the offset index.
"""

from __future__ import annotations

import struct
from array import array
from bisect import bisect_left, bisect_right

from cluster.storage.fs import FileSystem
from cluster.storage.index_file import AppendOnlyIndexFile

__all__ = ["TimeIndex", "TIME_INDEX_ENTRY_SIZE"]

TIME_INDEX_ENTRY_SIZE = 12
_ENTRY = struct.Struct(">qi")


class TimeIndex(AppendOnlyIndexFile):
    __slots__ = ("_timestamps", "_relative_offsets")

    entry_size = TIME_INDEX_ENTRY_SIZE

    def __init__(self, fs: FileSystem, path: str, base_offset: int) -> None:
        super().__init__(fs, path, base_offset)
        self._timestamps = array("q")
        self._relative_offsets = array("i")

    def load(self, data: bytes, segment_next_offset: int) -> str | None:
        """Adopts the entries of ``data``; returns None or why they are invalid."""
        if len(data) % TIME_INDEX_ENTRY_SIZE:
            return f"size {len(data)} is not a multiple of {TIME_INDEX_ENTRY_SIZE}"
        timestamps = array("q")
        relative_offsets = array("i")
        previous_timestamp = None
        previous_offset = -1
        max_relative_offset = segment_next_offset - self.base_offset
        for timestamp, relative_offset in _ENTRY.iter_unpack(data):
            if previous_timestamp is not None and timestamp <= previous_timestamp:
                return f"timestamp {timestamp} does not increase"
            if relative_offset < previous_offset or relative_offset < 0:
                return f"offset {relative_offset} decreases or is negative"
            if relative_offset >= max_relative_offset:
                return f"offset {relative_offset} is beyond the segment's end"
            timestamps.append(timestamp)
            relative_offsets.append(relative_offset)
            previous_timestamp = timestamp
            previous_offset = relative_offset
        self._timestamps = timestamps
        self._relative_offsets = relative_offsets
        self.written_count = len(timestamps)
        return None

    def clear(self) -> None:
        self._timestamps = array("q")
        self._relative_offsets = array("i")
        self.written_count = 0

    def _encode(self, start: int) -> bytes:
        return b"".join(
            _ENTRY.pack(t, o)
            for t, o in zip(self._timestamps[start:], self._relative_offsets[start:], strict=True)
        )

    def maybe_append(self, timestamp: int, offset: int) -> None:
        """Adds (timestamp, offset) in memory if it raises the indexed maximum (the file gets it
        with the next flush)."""
        if timestamp < 0 or (self._timestamps and timestamp <= self._timestamps[-1]):
            return
        self._timestamps.append(timestamp)
        self._relative_offsets.append(offset - self.base_offset)

    def truncate_to_offset(self, offset: int) -> None:
        """Drops entries for offsets >= ``offset``."""
        keep = bisect_right(self._relative_offsets, offset - self.base_offset - 1)
        if keep == len(self._timestamps):
            return
        del self._timestamps[keep:]
        del self._relative_offsets[keep:]
        self._truncate_file(keep)

    def __len__(self) -> int:
        return len(self._timestamps)

    def last_entry(self) -> tuple[int, int] | None:
        if not self._timestamps:
            return None
        return self._timestamps[-1], self.base_offset + self._relative_offsets[-1]

    def lookup_below(self, timestamp: int) -> int | None:
        """Offset of the last entry whose timestamp is < ``timestamp``; None if there is none."""
        i = bisect_left(self._timestamps, timestamp) - 1
        return self.base_offset + self._relative_offsets[i] if i >= 0 else None


def decode_last_entry(data: bytes) -> tuple[int, int] | None:
    """(timestamp, relative offset) of the last complete entry in raw file bytes."""
    usable = len(data) - len(data) % TIME_INDEX_ENTRY_SIZE
    if usable == 0:
        return None
    return _ENTRY.unpack_from(data, usable - TIME_INDEX_ENTRY_SIZE)
