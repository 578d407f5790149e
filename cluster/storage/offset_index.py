"""The sparse offset index of one segment (Kafka's ``.index`` file).

Fetch must find the batch containing an offset without scanning a gigabyte segment, so every
``index_interval_bytes`` of log the segment records (relative offset, file position) of the batch
it is appending.  A lookup is a binary search for the last entry at or below the target, then a
short forward scan of batch headers.  The file is Kafka's format (big-endian int32 relative
offset, int32 position, 8 bytes per entry) but it is appended to, not preallocated, so a torn
tail can only lose entries, which costs nothing but a longer scan.

The entries live in memory as two ``array('i')`` columns (8 bytes per entry, same as the file)
and load lazily: an old segment that is never read costs no memory.  ``validate`` is the
sanity check run when a file is loaded (Kafka's OffsetIndex.sanityCheck, stricter): a file that
fails it is rebuilt from the log by the segment.

Entries here point at a batch's *base* offset and start position.  Callers only rely on "the
batch at ``position`` starts at or before the entry's offset", which holds for Kafka's own
files too.
"""

from __future__ import annotations

import sys
from array import array
from bisect import bisect_right

from cluster.storage.fs import FileSystem
from cluster.storage.index_file import AppendOnlyIndexFile

__all__ = ["OffsetIndex", "OFFSET_INDEX_ENTRY_SIZE"]

OFFSET_INDEX_ENTRY_SIZE = 8
_SWAP = sys.byteorder == "little"


class OffsetIndex(AppendOnlyIndexFile):
    __slots__ = ("max_entries", "_relative_offsets", "_positions")

    entry_size = OFFSET_INDEX_ENTRY_SIZE

    def __init__(self, fs: FileSystem, path: str, base_offset: int, max_entries: int) -> None:
        super().__init__(fs, path, base_offset)
        self.max_entries = max_entries
        self._relative_offsets = array("i")
        self._positions = array("i")

    # -- loading -------------------------------------------------------------------------------
    def load(self, data: bytes, segment_size: int, segment_next_offset: int) -> str | None:
        """Adopts the entries of ``data`` (file content); returns None or why they are invalid."""
        if len(data) % OFFSET_INDEX_ENTRY_SIZE:
            return f"size {len(data)} is not a multiple of {OFFSET_INDEX_ENTRY_SIZE}"
        pairs = array("i")
        pairs.frombytes(data)
        if _SWAP:
            pairs.byteswap()
        relative_offsets = pairs[0::2]
        positions = pairs[1::2]
        reason = _check_entries(
            relative_offsets, positions, segment_size, segment_next_offset - self.base_offset
        )
        if reason is None:
            self._relative_offsets = relative_offsets
            self._positions = positions
            self.written_count = len(positions)
        return reason

    def clear(self) -> None:
        """Forgets all entries in memory (the file is rewritten by ``rewrite_file``)."""
        self._relative_offsets = array("i")
        self._positions = array("i")
        self.written_count = 0

    # -- writing -------------------------------------------------------------------------------
    def append(self, offset: int, position: int) -> None:
        """In memory only: the entry reaches the file with the next flush (see index_file.py)."""
        self._relative_offsets.append(offset - self.base_offset)
        self._positions.append(position)

    def truncate_to_offset(self, offset: int) -> None:
        """Drops entries for offsets >= ``offset`` (in memory and in the file)."""
        keep = bisect_right(self._relative_offsets, offset - self.base_offset - 1)
        if keep == len(self._positions):
            return
        del self._relative_offsets[keep:]
        del self._positions[keep:]
        self._truncate_file(keep)

    def _encode(self, start: int) -> bytes:
        pairs = array("i", bytes(8 * (len(self._positions) - start)))
        pairs[0::2] = self._relative_offsets[start:]
        pairs[1::2] = self._positions[start:]
        if _SWAP:
            pairs.byteswap()
        return pairs.tobytes()

    # -- lookups -------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._positions)

    @property
    def is_full(self) -> bool:
        return len(self._positions) >= self.max_entries

    def last_entry(self) -> tuple[int, int] | None:
        if not self._positions:
            return None
        return self.base_offset + self._relative_offsets[-1], self._positions[-1]

    def lookup(self, offset: int) -> int:
        """Position of the last indexed batch starting at or before ``offset`` (0 if none)."""
        i = bisect_right(self._relative_offsets, offset - self.base_offset) - 1
        return self._positions[i] if i >= 0 else 0

    def floor_position(self, position: int) -> int:
        """The largest indexed batch start <= ``position`` (0 if none)."""
        i = bisect_right(self._positions, position) - 1
        return self._positions[i] if i >= 0 else 0


def _check_entries(relative_offsets, positions, segment_size: int, max_relative_offset: int) -> str | None:
    previous_offset = -1
    previous_position = -1
    for relative_offset, position in zip(relative_offsets, positions, strict=True):
        if relative_offset <= previous_offset or position <= previous_position:
            return f"entry ({relative_offset}, {position}) does not increase"
        if relative_offset < 0 or position < 0:
            return f"entry ({relative_offset}, {position}) is negative"
        previous_offset = relative_offset
        previous_position = position
    if positions and positions[-1] >= segment_size:
        return f"last position {positions[-1]} is beyond the segment's {segment_size} bytes"
    if relative_offsets and relative_offsets[-1] >= max_relative_offset:
        return f"last offset {relative_offsets[-1]} is beyond the segment's end"
    return None
