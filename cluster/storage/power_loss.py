"""Test-only power-loss model: bytes a log file had not fsynced when the process died vanish at restart.

A kill -9 alone loses nothing the broker wrote: the page cache survives the process.  A power failure also
loses every byte the disk was never told to make durable, and that is the fault that shows whether an
acknowledgement really waited for fsync.  Real power cuts cannot be injected here (no device-mapper, see
reference/fault-injection.md §2(f)), so the storage seam (``fs.FileSystem``) keeps a *sync journal* while
``kraftpy.test.lose.unsynced.on.crash`` is on: after each successful fsync/fdatasync of a file it opened for
writing, the journal records the file's inode and the length that fsync covered (the size taken *before*
the call, so bytes appended concurrently are never counted), and the journal line is itself fsynced before
the fsync call returns, so before anything can be acknowledged.  At the next start, before any log is
opened, ``restore_synced_lengths`` cuts every journaled file back to its recorded length; a file created
through the seam and never synced is cut to nothing.  Files the seam never wrote (checkpoints replaced by
an atomic rename, files renamed into place by the cleaner: their inode differs from the journal's) are left
alone, as a rename+fsync is already durable.  Truncations are assumed durable at once (a gentler model than
a real disk, which might resurrect truncated bytes).  The Raft metadata log (raft_store.py) writes its
``raft.log`` through the seam too, so a power loss also takes the metadata entries a node never fsynced; its
other files (quorum-state, meta.json, snapshots) are written atomically.

Journal format, one record per line (the path last, so it may contain spaces):
``S <inode> <synced_length> <path>`` a file's synced length; ``F 0 0 <path>`` forget a deleted file;
``T 0 0 <dir>`` forget every file under a deleted directory.  A torn last line is ignored.

Off by default; a normal run never creates the journal, and ``FileSystem`` pays one attribute test per call.
"""

from __future__ import annotations

import logging
import os
import threading
import time

__all__ = ["JOURNAL_NAME", "SyncJournal", "install", "restore_synced_lengths", "start_test_hooks", "start_up",
           "uninstall"]

log = logging.getLogger("cluster.storage.power_loss")

JOURNAL_NAME = ".kraftpy-synced-lengths"


def _read_journal(journal_path: str) -> dict[str, tuple[int, int]]:
    """path -> (inode, synced_length) after replaying every complete record."""
    entries: dict[str, tuple[int, int]] = {}
    try:
        with open(journal_path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return entries
    for raw in data.split(b"\n")[:-1]:   # the part after the last newline is a torn record
        parts = raw.decode("utf-8", "surrogateescape").split(" ", 3)
        if len(parts) != 4 or not parts[1].isdigit() or not parts[2].isdigit():
            continue
        kind, inode, length, path = parts[0], int(parts[1]), int(parts[2]), parts[3]
        if kind == "S":
            entries[path] = (inode, length)
        elif kind == "F":
            entries.pop(path, None)
        elif kind == "T":
            prefix = path.rstrip(os.sep) + os.sep
            for known in [p for p in entries if p.startswith(prefix)]:
                del entries[known]
    return entries


def _write_compacted(journal_path: str, entries: dict[str, tuple[int, int]]) -> None:
    from cluster.storage.fs import LOCAL_FS

    body = "".join(f"S {inode} {length} {path}\n" for path, (inode, length) in sorted(entries.items()))
    LOCAL_FS.write_file_atomically(journal_path, body.encode("utf-8", "surrogateescape"))


def restore_synced_lengths(journal_path: str) -> list[tuple[str, int, int]]:
    """Cuts every journaled file back to its last synced length; returns (path, size_before, size_after)
    for each file that lost bytes.  Rewrites the journal compacted (the cut files' lengths are now synced)."""
    entries = _read_journal(journal_path)
    cut: list[tuple[str, int, int]] = []
    kept: dict[str, tuple[int, int]] = {}
    for path, (inode, synced_length) in entries.items():
        try:
            st = os.stat(path)
        except FileNotFoundError:
            continue
        if st.st_ino != inode:
            continue   # replaced by an atomic rename: durable as it is, and no longer ours to track
        if st.st_size > synced_length:
            fd = os.open(path, os.O_WRONLY)
            try:
                os.ftruncate(fd, synced_length)
                os.fsync(fd)
            finally:
                os.close(fd)
            cut.append((path, st.st_size, synced_length))
        kept[path] = (inode, min(st.st_size, synced_length))
    _write_compacted(journal_path, kept)
    return cut


class SyncJournal:
    """What the seam calls while the hook is on.  Thread-safe: the flusher fsyncs on a worker thread."""

    def __init__(self, journal_path: str, *, fsync_delay_ms: int = 0) -> None:
        self.journal_path = journal_path
        self.fsync_delay_s = fsync_delay_ms / 1000.0
        self._lock = threading.Lock()
        self._entries = _read_journal(journal_path)
        self._fd_paths: dict[int, str] = {}
        self._journal_fd = os.open(journal_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o644)

    def close(self) -> None:
        with self._lock:
            if self._journal_fd >= 0:
                os.close(self._journal_fd)
                self._journal_fd = -1

    def _append(self, kind: str, inode: int, length: int, path: str, *, durable: bool) -> None:
        line = f"{kind} {inode} {length} {path}\n".encode("utf-8", "surrogateescape")
        os.write(self._journal_fd, line)
        if durable:
            os.fsync(self._journal_fd)

    # -- descriptors -------------------------------------------------------------------------------
    def opened(self, fd: int, path: str) -> None:
        """A file opened for writing: a new file (or one renamed into place) starts at its current size."""
        path = os.path.abspath(path)
        st = os.fstat(fd)
        with self._lock:
            self._fd_paths[fd] = path
            known = self._entries.get(path)
            if known is None or known[0] != st.st_ino:
                self._entries[path] = (st.st_ino, st.st_size)
                self._append("S", st.st_ino, st.st_size, path, durable=False)

    def duplicated(self, fd: int, new_fd: int) -> None:
        with self._lock:
            path = self._fd_paths.get(fd)
            if path is not None:
                self._fd_paths[new_fd] = path

    def closed(self, fd: int) -> None:
        with self._lock:
            self._fd_paths.pop(fd, None)

    # -- fsync ---------------------------------------------------------------------------------------
    def sync(self, fd: int, sync_call) -> None:
        """Runs ``sync_call(fd)`` and, if it succeeds, durably records the length it covered."""
        with self._lock:
            path = self._fd_paths.get(fd)
        if path is None:          # a directory, or a file opened outside the seam's write paths
            sync_call(fd)
            return
        st = os.fstat(fd)         # before the call: only bytes written before it are covered
        with self._lock:
            known = self._entries.get(path)
        has_new_bytes = known is None or known[0] != st.st_ino or known[1] < st.st_size
        if self.fsync_delay_s and has_new_bytes:
            # A slow disk writing out dirty data (an fsync with nothing new stays fast, so recovery at start-up
            # is not slowed): widens the window between a write and its durability.
            time.sleep(self.fsync_delay_s)
        sync_call(fd)
        with self._lock:
            known = self._entries.get(path)
            if known is not None and known[0] == st.st_ino and known[1] >= st.st_size:
                return
            self._entries[path] = (st.st_ino, st.st_size)
            self._append("S", st.st_ino, st.st_size, path, durable=True)

    def truncated(self, fd: int, size: int) -> None:
        with self._lock:
            path = self._fd_paths.get(fd)
            known = self._entries.get(path) if path is not None else None
            if known is not None and known[1] > size:
                self._entries[path] = (known[0], size)
                self._append("S", known[0], size, path, durable=True)

    # -- paths ---------------------------------------------------------------------------------------
    def removed(self, path: str) -> None:
        path = os.path.abspath(path)
        with self._lock:
            if self._entries.pop(path, None) is not None:
                self._append("F", 0, 0, path, durable=False)

    def removed_tree(self, path: str) -> None:
        prefix = os.path.abspath(path).rstrip(os.sep) + os.sep
        with self._lock:
            gone = [p for p in self._entries if p.startswith(prefix)]
            for p in gone:
                del self._entries[p]
            if gone:
                self._append("T", 0, 0, prefix.rstrip(os.sep), durable=False)


def install(fs, log_dir: str, *, fsync_delay_ms: int = 0) -> list[tuple[str, int, int]]:
    """Applies the power loss of the previous run (cuts files back), then journals this run's fsyncs
    through ``fs``.  Returns what was cut."""
    os.makedirs(log_dir, exist_ok=True)
    journal_path = os.path.join(os.path.abspath(log_dir), JOURNAL_NAME)
    cut = restore_synced_lengths(journal_path)
    uninstall(fs)
    fs.sync_journal = SyncJournal(journal_path, fsync_delay_ms=fsync_delay_ms)
    return cut


def uninstall(fs) -> None:
    journal = getattr(fs, "sync_journal", None)
    fs.sync_journal = None
    if journal is not None:
        journal.close()


def start_up(log_dir: str, lose_unsynced_on_crash: bool, fsync_delay_ms: int = 0) -> None:
    """The broker's one call, before any partition log is opened (Broker.start).  Does nothing unless
    ``kraftpy.test.lose.unsynced.on.crash`` is true; the fsync delay applies only together with it."""
    if not lose_unsynced_on_crash:
        return
    from cluster.storage.fs import LOCAL_FS

    cut = install(LOCAL_FS, log_dir, fsync_delay_ms=fsync_delay_ms)
    log.warning("TEST HOOK kraftpy.test.lose.unsynced.on.crash is on (fsync delay %d ms): unsynced bytes of "
                "the previous run were dropped from %d file(s)%s", fsync_delay_ms, len(cut),
                "".join(f"; {path}: {before} -> {after}" for path, before, after in cut[:20]))


def start_test_hooks(config) -> None:
    """Broker.start's one line, before any log is opened: the power-loss hook and the clock offset file,
    both off unless their ``kraftpy.test.*`` key is set.  ``config`` is a BrokerConfig (``log_dir``, ``get``)."""
    from cluster.core import clock

    clock.use_offset_file(config.get("kraftpy.test.clock.offset.file") or None)
    start_up(config.log_dir, bool(config.get("kraftpy.test.lose.unsynced.on.crash")),
             int(config.get("kraftpy.test.fsync.delay.ms") or 0))
