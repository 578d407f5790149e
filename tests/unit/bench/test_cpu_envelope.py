"""bench/cpu_envelope.py: a process in an envelope of N CPUs really gets at most N CPUs, its group goes away
on close, and a machine where no envelope can be made says why instead of running unconstrained."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from bench_modules import load_bench_module

_cpu_envelope = load_bench_module("cpu_envelope")
CpuEnvelope = _cpu_envelope.CpuEnvelope
EnvelopeError = _cpu_envelope.EnvelopeError
detect_root = _cpu_envelope.detect_root

BUSY = "while True:\n    pass\n"
TICKS_PER_S = os.sysconf("SC_CLK_TCK")


def _real_cgroup_or_skip() -> None:
    if os.geteuid() != 0:
        pytest.skip(f"cpu cgroups need root here (uid {os.geteuid()})")
    try:
        detect_root()
    except EnvelopeError as exc:
        pytest.skip(f"no cpu cgroup controller on this machine: {exc}")


def _cpu_seconds(pid: int) -> float:
    """utime + stime of every thread of ``pid`` (fields 14 and 15 of /proc/<pid>/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS_PER_S


@pytest.fixture
def busy_process():
    process = subprocess.Popen([sys.executable, "-c", BUSY])
    yield process
    process.kill()
    process.wait()


def test_busy_process_is_held_to_its_quota_and_group_removed_on_close(busy_process):
    _real_cgroup_or_skip()
    envelope = CpuEnvelope(0.2, [7])
    try:
        group = envelope.group(7)
        envelope.add(7, busy_process.pid)
        assert envelope.contains(7, busy_process.pid)
        assert str(busy_process.pid) in (group / "cgroup.procs").read_text().split()
        time.sleep(0.3)                                    # let the first quota period pass
        before_cpu, before_wall = _cpu_seconds(busy_process.pid), time.monotonic()
        stat_before = envelope.snapshot()
        time.sleep(1.5)
        used = (_cpu_seconds(busy_process.pid) - before_cpu) / (time.monotonic() - before_wall)
        throttling = envelope.throttling_since(stat_before, envelope.snapshot())[7]
    finally:
        busy_process.kill()
        busy_process.wait()
        leftovers = envelope.close()
    assert used <= 0.3, f"busy loop used {used:.2f} CPU in a 0.2 CPU envelope"
    assert used >= 0.05, f"busy loop used only {used:.2f} CPU: was it running at all?"
    assert throttling["nr_throttled"] > 0 and throttling["throttled_ms"] > 0
    assert leftovers == []
    assert not group.exists()
    assert not [p for p in group.parent.iterdir() if p.name.startswith(envelope.prefix)]


def test_close_evicts_a_process_still_inside(busy_process):
    _real_cgroup_or_skip()
    with CpuEnvelope(0.5, [1, 2]) as envelope:
        groups = list(envelope.groups.values())
        envelope.add(2, busy_process.pid)
        assert envelope.contains(2, busy_process.pid) and not envelope.contains(1, busy_process.pid)
    assert envelope.groups == {}
    assert all(not group.exists() for group in groups)
    assert busy_process.poll() is None                    # evicted, not killed


def test_threads_started_later_land_in_the_group():
    _real_cgroup_or_skip()
    code = ("import threading, time\n"
            "threading.Thread(target=time.sleep, args=(30,), daemon=True).start()\n"
            "time.sleep(0.6)\n"
            "threading.Thread(target=time.sleep, args=(30,), daemon=True).start()\n"
            "time.sleep(30)\n")
    process = subprocess.Popen([sys.executable, "-c", code])
    try:
        with CpuEnvelope(0.5, [1]) as envelope:
            time.sleep(0.3)                                # one thread exists before the move
            envelope.add(1, process.pid)
            time.sleep(0.6)                                # the second is started after it
            threads = set(os.listdir(f"/proc/{process.pid}/task"))
            assert len(threads) == 3
            assert threads == set((envelope.group(1) / "tasks").read_text().split())
            process.kill()
            process.wait()
    finally:
        process.kill()
        process.wait()


def test_nonexistent_root_raises_a_clear_error(tmp_path):
    with pytest.raises(EnvelopeError, match="does not exist"):
        CpuEnvelope(0.5, [1], root=tmp_path / "no-such-cgroup")


def test_directory_that_is_not_a_cgroup_raises_a_clear_error(tmp_path):
    with pytest.raises(EnvelopeError, match="not a cpu cgroup hierarchy"):
        CpuEnvelope(0.5, [1], root=tmp_path)


def test_unwritable_v1_root_raises_a_clear_error(tmp_path):
    """A v1-looking root where mkdir fails (a read-only bind of the real thing would behave the same)."""
    (tmp_path / "cpu.cfs_quota_us").write_text("-1\n")
    blocker = tmp_path / f"kraftpy-bench-{os.getpid()}-n1"
    blocker.write_text("")                                 # a file where the group directory should go
    with pytest.raises(EnvelopeError, match="cannot create cgroup"):
        CpuEnvelope(0.5, [1], root=tmp_path)


def test_v2_root_without_cpu_controller_says_so(tmp_path):
    (tmp_path / "cgroup.controllers").write_text("memory pids\n")
    with pytest.raises(EnvelopeError, match="cpu controller is not available"):
        CpuEnvelope(0.5, [1], root=tmp_path)


def test_quota_must_be_positive():
    with pytest.raises(EnvelopeError, match="positive"):
        CpuEnvelope(0.0)
