"""The file-system seam of the storage layer.

Every file operation of the log goes through a ``FileSystem`` object instead of calling ``os``
directly, so that a simulator or a fault-injection test can substitute a disk that fails an
fsync, fills up, or forgets unsynced writes, without touching the log's logic.  ``LOCAL_FS`` is
the real thing: plain POSIX calls, nothing buffered in Python, and atomic small-file writes done
the way crash-safe software does them (write a temporary file, fsync it, rename it over the old
one, fsync the directory).

Test-only: while ``sync_journal`` is set (``power_loss.install``, off by default) every open for writing,
dup, close, fsync, truncate and delete is reported to it, so a restart can drop exactly the bytes that
were never fsynced (power_loss.py).  With it unset each of those calls costs one attribute test.
"""

from __future__ import annotations

import os
import shutil

__all__ = ["FileSystem", "LOCAL_FS"]

_LOG_FLAGS = os.O_RDWR | os.O_CREAT | os.O_APPEND | getattr(os, "O_CLOEXEC", 0)
_WRITE_FLAGS = os.O_WRONLY | getattr(os, "O_CLOEXEC", 0)
_READ_FLAGS = os.O_RDONLY | getattr(os, "O_CLOEXEC", 0)
_DIR_FLAGS = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_CLOEXEC", 0)
_TMP_SUFFIX = ".tmp"


class FileSystem:
    """POSIX file operations used by segments, indexes and checkpoints."""

    tmp_suffix = _TMP_SUFFIX
    sync_journal = None   # power_loss.SyncJournal while the test hook is on

    # -- descriptors ---------------------------------------------------------------------------
    def open_append(self, path: str) -> int:
        """Opens (creating if needed) a file whose writes always go to its end."""
        fd = os.open(path, _LOG_FLAGS, 0o644)
        if self.sync_journal is not None:
            self.sync_journal.opened(fd, path)
        return fd

    def open_write(self, path: str, *, create: bool = False) -> int:
        """Opens a file for positional writes; without ``create`` a missing file raises
        FileNotFoundError instead of coming back to life."""
        fd = os.open(path, _WRITE_FLAGS | (os.O_CREAT if create else 0), 0o644)
        if self.sync_journal is not None:
            self.sync_journal.opened(fd, path)
        return fd

    def open_dir(self, path: str) -> int:
        return os.open(path, _DIR_FLAGS)

    def close(self, fd: int) -> None:
        if self.sync_journal is not None:
            self.sync_journal.closed(fd)
        os.close(fd)

    def dup(self, fd: int) -> int:
        new_fd = os.dup(fd)
        if self.sync_journal is not None:
            self.sync_journal.duplicated(fd, new_fd)
        return new_fd

    def write(self, fd: int, data) -> None:
        """Writes all of ``data``; os.write may write less than asked on a full disk or a signal."""
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            view = view[written:]

    def pwrite(self, fd: int, data, position: int) -> None:
        """Writes all of ``data`` at ``position`` (the descriptor must not be O_APPEND)."""
        view = memoryview(data)
        while view:
            written = os.pwrite(fd, view, position)
            view = view[written:]
            position += written

    def pread(self, fd: int, size: int, position: int) -> bytes:
        return os.pread(fd, size, position)

    def file_size(self, fd: int) -> int:
        return os.fstat(fd).st_size

    def truncate(self, fd: int, size: int) -> None:
        os.ftruncate(fd, size)
        if self.sync_journal is not None:
            self.sync_journal.truncated(fd, size)

    def fdatasync(self, fd: int) -> None:
        if self.sync_journal is not None:
            self.sync_journal.sync(fd, os.fdatasync)
            return
        os.fdatasync(fd)

    def fsync(self, fd: int) -> None:
        if self.sync_journal is not None:
            self.sync_journal.sync(fd, os.fsync)
            return
        os.fsync(fd)

    # -- paths ---------------------------------------------------------------------------------
    def listdir(self, path: str) -> list[str]:
        return os.listdir(path)

    def exists(self, path: str) -> bool:
        return os.path.exists(path)

    def makedirs(self, path: str) -> bool:
        """Creates ``path`` (and parents); returns True when it did not exist before."""
        if os.path.isdir(path):
            return False
        os.makedirs(path, exist_ok=True)
        return True

    def unlink(self, path: str) -> None:
        if self.sync_journal is not None:
            self.sync_journal.removed(path)
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass

    def rmtree(self, path: str) -> None:
        if self.sync_journal is not None:
            self.sync_journal.removed_tree(path)
        shutil.rmtree(path, ignore_errors=True)

    def path_size(self, path: str) -> int:
        """Size of the file at ``path``; -1 when it does not exist."""
        try:
            return os.stat(path).st_size
        except FileNotFoundError:
            return -1

    def read_range(self, path: str, position: int, size: int) -> bytes:
        """Up to ``size`` bytes of ``path`` from ``position`` (b"" when the file does not exist)."""
        try:
            fd = os.open(path, _READ_FLAGS)
        except FileNotFoundError:
            return b""
        try:
            return os.pread(fd, size, position)
        finally:
            os.close(fd)

    def mtime_ms(self, path: str) -> int:
        return int(os.stat(path).st_mtime * 1000)

    def fsync_dir(self, path: str) -> None:
        """Makes file creations, renames and deletions in ``path`` durable."""
        fd = self.open_dir(path)
        try:
            self.fsync(fd)
        finally:
            self.close(fd)

    def read_file(self, path: str) -> bytes | None:
        """Whole content of a small file, or None when it does not exist."""
        try:
            with open(path, "rb") as f:
                return f.read()
        except FileNotFoundError:
            return None

    def write_file_atomically(self, path: str, data: bytes) -> None:
        """Replaces ``path`` so that after a crash it holds either the old or the new content."""
        tmp_path = path + _TMP_SUFFIX
        fd = os.open(tmp_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_CLOEXEC", 0), 0o644)
        try:
            self.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp_path, path)
        self.fsync_dir(os.path.dirname(path) or ".")


LOCAL_FS = FileSystem()
