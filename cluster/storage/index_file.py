"""What the offset index and the time index share: an index file that holds no descriptor.

A broker hosts thousands of partition replicas and the process has a hard descriptor limit, so
the indexes never keep their file open.  Entries live in memory; the file holds a prefix of them
(``written_count`` entries).  New entries reach the file in bulk: a flush ticket takes the
pending ones (``pending``) on the loop thread, writes them at their position and fsyncs on the
worker thread (``write_at``), and the loop records the result (``mark_written``) only after the
ticket succeeded, so a failed or voided ticket simply leaves them for the next one.  Positional
writes make that retry idempotent.  Truncation, rebuilds and clean shutdown open, change and
close the file synchronously.  The files are derived data: recovery rebuilds any index beyond the
recovery point, and the recovery point never passes a segment whose index is not synced.
"""

from __future__ import annotations

from cluster.storage.fs import FileSystem


class AppendOnlyIndexFile:
    __slots__ = ("_fs", "path", "base_offset", "written_count")

    entry_size = 0  # bytes per entry in the file, set by subclasses

    def __init__(self, fs: FileSystem, path: str, base_offset: int) -> None:
        self._fs = fs
        self.path = path
        self.base_offset = base_offset
        # How many of the in-memory entries the file is known to hold (maybe not yet fsynced).
        self.written_count = 0

    def __len__(self) -> int:  # pragma: no cover - overridden
        raise NotImplementedError

    def _encode(self, start: int) -> bytes:  # pragma: no cover - overridden
        raise NotImplementedError

    # -- bulk writes (flush tickets) -----------------------------------------------------------
    def pending(self) -> tuple[int, int, bytes]:
        """Loop thread: (first entry, entry count, bytes) of the entries not yet in the file."""
        start = min(self.written_count, len(self))
        return start, len(self) - start, self._encode(start)

    def write_at(self, start: int, data: bytes) -> bool:
        """Any thread: writes ``data`` at entry ``start`` of the existing file and fsyncs it.
        Returns False when the file is gone (its segment was deleted meanwhile)."""
        try:
            self._write_and_sync(start, data, create=False)
        except FileNotFoundError:
            return False
        return True

    def mark_written(self, start: int, count: int) -> None:
        """Loop thread, after a successful ``write_at`` of ``count`` entries from ``start``."""
        if start <= self.written_count:
            self.written_count = min(max(self.written_count, start + count), len(self))

    def sync(self) -> None:
        """Loop thread, blocking: writes the pending entries and fsyncs the file."""
        start, count, data = self.pending()
        self._write_and_sync(start, data, create=True)
        self.written_count = start + count

    def _write_and_sync(self, start: int, data: bytes, *, create: bool) -> None:
        """Writes ``data`` at entry ``start`` and fdatasyncs; the descriptor is closed again at once."""
        fd = self._fs.open_write(self.path, create=create)
        try:
            if data:
                self._fs.pwrite(fd, data, start * self.entry_size)
            self._fs.fdatasync(fd)
        finally:
            self._fs.close(fd)

    # -- synchronous whole-file changes --------------------------------------------------------
    def rewrite_file(self) -> None:
        """Replaces the file content with all in-memory entries (no fsync)."""
        fd = self._fs.open_write(self.path, create=True)
        try:
            self._fs.truncate(fd, 0)
            self._fs.pwrite(fd, self._encode(0), 0)
        finally:
            self._fs.close(fd)
        self.written_count = len(self)

    def _truncate_file(self, keep: int) -> None:
        """After dropping in-memory entries from ``keep`` on: the file keeps only what it held
        of the first ``keep`` entries."""
        self.written_count = min(self.written_count, keep)
        fd = self._fs.open_write(self.path, create=True)
        try:
            self._fs.truncate(fd, self.written_count * self.entry_size)
        finally:
            self._fs.close(fd)
