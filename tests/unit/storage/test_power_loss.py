"""The power-loss test hook (cluster/storage/power_loss.py): after a crash, bytes that were fsynced survive
and bytes that were only written disappear; with the hook off nothing changes."""

from __future__ import annotations

import os

from storage_testlib import NOW_MS, append_many, read_all, segment_files

from cluster.raft.log import LogEntry, SnapshotId
from cluster.storage import LogConfig, PartitionLog, power_loss
from cluster.storage.fs import LOCAL_FS, FileSystem
from cluster.storage.raft_store import RaftStore

CONFIG = {"segment_bytes": 1_000, "index_interval_bytes": 150}


def open_log(path, fs: FileSystem) -> PartitionLog:
    return PartitionLog.open(str(path), LogConfig(**CONFIG), NOW_MS, fs=fs)


def crash_and_restart(data_dir, *, hook: bool) -> tuple[FileSystem, list]:
    """What a restarted broker does before opening logs: a fresh seam, the hook installed if on."""
    fs = FileSystem()
    cut = power_loss.install(fs, str(data_dir)) if hook else []
    return fs, cut


def write_synced_then_unsynced(data_dir, fs: FileSystem) -> tuple[list[bytes], list[bytes]]:
    log = open_log(data_dir / "t-0", fs)
    synced = append_many(log, 8, records=2, value_bytes=60, epoch=1)   # spans several 1 kB segments
    log.flush()
    unsynced = append_many(log, 3, records=2, value_bytes=60, epoch=1)
    log.abandon()   # kill -9: no clean shutdown, no flush
    return synced, unsynced


def test_fsynced_bytes_survive_and_written_bytes_vanish(tmp_path):
    fs, _ = crash_and_restart(tmp_path, hook=True)
    synced, unsynced = write_synced_then_unsynced(tmp_path, fs)
    assert (tmp_path / power_loss.JOURNAL_NAME).exists()

    fs2, cut = crash_and_restart(tmp_path, hook=True)
    assert cut, "the unsynced tail must have been cut"
    log = open_log(tmp_path / "t-0", fs2)
    assert log.log_end_offset == 2 * len(synced)
    assert read_all(log) == b"".join(synced)
    log.close()


def test_hook_off_keeps_unsynced_bytes_as_a_plain_kill_does(tmp_path):
    fs, _ = crash_and_restart(tmp_path, hook=False)
    synced, unsynced = write_synced_then_unsynced(tmp_path, fs)
    assert not (tmp_path / power_loss.JOURNAL_NAME).exists()
    fs2, cut = crash_and_restart(tmp_path, hook=False)
    log = open_log(tmp_path / "t-0", fs2)
    assert read_all(log) == b"".join(synced + unsynced)
    log.close()


def test_off_by_default_and_start_up_without_the_flag_installs_nothing(tmp_path):
    assert LOCAL_FS.sync_journal is None and FileSystem.sync_journal is None
    power_loss.start_up(str(tmp_path), False)
    assert LOCAL_FS.sync_journal is None
    assert not (tmp_path / power_loss.JOURNAL_NAME).exists()


def test_start_up_with_the_flag_installs_on_the_real_seam(tmp_path):
    try:
        power_loss.start_up(str(tmp_path), True)
        assert isinstance(LOCAL_FS.sync_journal, power_loss.SyncJournal)
    finally:
        power_loss.uninstall(LOCAL_FS)
    assert LOCAL_FS.sync_journal is None


def test_a_file_never_synced_loses_everything(tmp_path):
    fs, _ = crash_and_restart(tmp_path, hook=True)
    log = open_log(tmp_path / "t-0", fs)
    append_many(log, 3, records=2, value_bytes=60, epoch=1)
    log.abandon()
    data_path = tmp_path / "t-0" / segment_files(tmp_path / "t-0")[0]
    assert data_path.stat().st_size > 0
    fs2, cut = crash_and_restart(tmp_path, hook=True)
    assert data_path.stat().st_size == 0
    log = open_log(tmp_path / "t-0", fs2)
    assert log.log_end_offset == 0 and read_all(log) == b""
    log.close()


def test_repeated_crashes_keep_every_synced_byte(tmp_path):
    expected: list[bytes] = []
    for _round in range(3):
        fs, _ = crash_and_restart(tmp_path, hook=True)
        log = open_log(tmp_path / "t-0", fs)
        assert read_all(log) == b"".join(expected)
        expected += append_many(log, 2, records=2, value_bytes=60, epoch=1)
        log.flush()
        append_many(log, 2, records=2, value_bytes=60, epoch=1)   # lost at the next restart
        log.abandon()
    fs, _ = crash_and_restart(tmp_path, hook=True)
    log = open_log(tmp_path / "t-0", fs)
    assert read_all(log) == b"".join(expected)
    log.close()


def test_a_file_renamed_into_place_is_left_alone(tmp_path):
    """The cleaner renames finished segments over old ones: rename + fsync is durable, the journal's
    inode no longer matches, and the new content must not be cut."""
    fs, _ = crash_and_restart(tmp_path, hook=True)
    path = str(tmp_path / "seg.log")
    fd = fs.open_append(path)
    fs.write(fd, b"a" * 10)
    fs.fdatasync(fd)
    fs.close(fd)
    replacement = tmp_path / "seg.log.new"
    replacement.write_bytes(b"b" * 50)
    os.replace(replacement, path)
    crash_and_restart(tmp_path, hook=True)
    assert open(path, "rb").read() == b"b" * 50


def test_truncation_then_unsynced_rewrite_is_cut_to_the_truncated_length(tmp_path):
    fs, _ = crash_and_restart(tmp_path, hook=True)
    path = str(tmp_path / "seg.log")
    fd = fs.open_append(path)
    fs.write(fd, b"a" * 100)
    fs.fdatasync(fd)
    fs.truncate(fd, 40)                 # e.g. follower truncation
    fs.write(fd, b"z" * 100)            # never synced
    crash_and_restart(tmp_path, hook=True)
    assert open(path, "rb").read() == b"a" * 40
    os.close(fd)


def test_a_torn_journal_record_is_ignored(tmp_path):
    fs, _ = crash_and_restart(tmp_path, hook=True)
    path = str(tmp_path / "seg.log")
    fd = fs.open_append(path)
    fs.write(fd, b"a" * 30)
    fs.fdatasync(fd)
    fs.write(fd, b"b" * 30)
    fs.close(fd)
    with open(tmp_path / power_loss.JOURNAL_NAME, "ab") as journal:
        journal.write(f"S 1 999 {path}".encode())      # no newline: the crash tore it
    crash_and_restart(tmp_path, hook=True)
    assert open(path, "rb").read() == b"a" * 30


# -- the Raft metadata log ---------------------------------------------------------------------------------------------
def _raft_entries(start: int, end: int, epoch: int = 1) -> list[LogEntry]:
    return [LogEntry(offset, epoch, f"record {offset}".encode()) for offset in range(start, end)]


def _kill(store: RaftStore) -> None:
    """kill -9: the descriptor goes away, nothing is synced (the process would not get to sync either)."""
    os.close(store._fd)


def test_raft_log_keeps_what_it_fsynced_and_loses_what_it_only_wrote(tmp_path):
    fs, _ = crash_and_restart(tmp_path, hook=True)
    store = RaftStore(tmp_path / "meta", cluster_id="c", node_id=1, fs=fs)
    store.append(_raft_entries(0, 4))
    store.sync()                                   # what the driver does before answering anyone
    store.append(_raft_entries(4, 7))              # written, never fsynced
    _kill(store)

    fs2, cut = crash_and_restart(tmp_path, hook=True)
    assert [path for path, _before, _after in cut] == [str(tmp_path / "meta" / "raft.log")]
    again = RaftStore(tmp_path / "meta", cluster_id="c", node_id=1, fs=fs2)
    assert again.log_end_offset == 4
    assert list(again.read_entries(0, 4)) == _raft_entries(0, 4)
    again.close()


def test_raft_log_truncation_and_compaction_stay_covered(tmp_path):
    """A truncated-and-rewritten tail and a log replaced by compaction (a rename: a new inode) are tracked
    afresh: their synced bytes survive, a later unsynced append does not."""
    fs, _ = crash_and_restart(tmp_path, hook=True)
    store = RaftStore(tmp_path / "meta", cluster_id="c", node_id=1, fs=fs)
    store.append(_raft_entries(0, 6))
    store.truncate_to(4)
    store.append(_raft_entries(4, 6, epoch=2))
    store.sync()
    store.compact_to_snapshot(SnapshotId(3, 1), b"state up to offset 3")
    store.append(_raft_entries(6, 8, epoch=2))
    store.sync()
    store.append(_raft_entries(8, 9, epoch=2))   # never fsynced
    _kill(store)

    fs2, cut = crash_and_restart(tmp_path, hook=True)
    assert cut, "the unsynced record must have been cut"
    again = RaftStore(tmp_path / "meta", cluster_id="c", node_id=1, fs=fs2)
    assert (again.log_start_offset, again.log_end_offset) == (3, 8)
    assert list(again.read_entries(3, 8)) == _raft_entries(3, 4) + _raft_entries(4, 8, epoch=2)
    again.close()
