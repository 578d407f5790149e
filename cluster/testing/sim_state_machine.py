"""The replicated state machine used by the simulator: a running digest of every applied entry.

Why a digest rather than a list: it makes "every node applied exactly the committed sequence" and
"a snapshot holds exactly the committed prefix" O(1) comparisons per entry and per snapshot, and it gives
snapshots real bytes to transfer in chunks.  The snapshot format is ``MAGIC | end_offset (8 bytes) |
digest (16 bytes) | padding`` -- padded so that FetchSnapshot needs several chunks in the simulation.
"""

from __future__ import annotations

import hashlib
import struct

from cluster.core.errors import invariant
from cluster.raft.log import LogEntry

ZERO_DIGEST = bytes(16)
_MAGIC = b"SIMSNAP1"
_HEADER = struct.Struct(">8sq16s")
_PADDING = b"." * 40


def entry_digest(previous: bytes, entry: LogEntry) -> bytes:
    """Chains ``entry`` onto ``previous``: equal digests mean equal sequences (up to hash collisions)."""
    header = struct.pack(">qq?", entry.offset, entry.epoch, entry.is_control)
    return hashlib.blake2b(previous + header + entry.payload, digest_size=16).digest()


def encode_snapshot(end_offset: int, digest: bytes) -> bytes:
    return _HEADER.pack(_MAGIC, end_offset, digest) + _PADDING


def decode_snapshot(data: bytes) -> tuple[int, bytes]:
    invariant(len(data) == _HEADER.size + len(_PADDING), f"snapshot of {len(data)} bytes has the wrong size")
    magic, end_offset, digest = _HEADER.unpack_from(data)
    invariant(magic == _MAGIC, "snapshot magic is wrong")
    return end_offset, digest


class SimStateMachine:
    """Applies committed entries in offset order; ``next_offset`` is the first offset not applied."""

    __slots__ = ("next_offset", "digest", "applied_payloads")

    def __init__(self) -> None:
        self.next_offset = 0
        self.digest = ZERO_DIGEST
        self.applied_payloads = 0

    def apply(self, entry: LogEntry) -> None:
        if entry.offset != self.next_offset:
            invariant(False, f"applied offset {entry.offset}, expected {self.next_offset}")
        self.digest = entry_digest(self.digest, entry)
        self.next_offset += 1
        if not entry.is_control:
            self.applied_payloads += 1

    def load_snapshot(self, data: bytes) -> None:
        self.next_offset, self.digest = decode_snapshot(data)

    def snapshot(self) -> bytes:
        return encode_snapshot(self.next_offset, self.digest)
