"""What the offset index and the time index share: an append-only file opened on first write.

Both indexes keep their entries in memory and append each new entry to their file, so a segment that is
only read never holds an index descriptor open, and the flusher can fsync the descriptor of a segment that
was written to (``fd``).
"""

from __future__ import annotations

from cluster.storage.fs import FileSystem


class AppendOnlyIndexFile:
    __slots__ = ("_fs", "path", "base_offset", "_fd")

    def __init__(self, fs: FileSystem, path: str, base_offset: int) -> None:
        self._fs = fs
        self.path = path
        self.base_offset = base_offset
        self._fd: int | None = None

    def _writable_fd(self) -> int:
        if self._fd is None:
            self._fd = self._fs.open_append(self.path)
        return self._fd

    @property
    def fd(self) -> int | None:
        """The open descriptor, if the file has been written since the last ``close``."""
        return self._fd

    def close(self) -> None:
        if self._fd is not None:
            self._fs.close(self._fd)
            self._fd = None
