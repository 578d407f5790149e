"""bench/replication_floor.py: the follower-copy floor is a real transfer through our ReplicaFetchService (every
byte arrives, both processes' CPU is counted) and the ceiling it implies is the arithmetic its docstring states."""

from __future__ import annotations

import pytest
from bench_modules import load_bench_module

_floor = load_bench_module("replication_floor")


def _single(mb_s: float, client_pct: float, broker_pct: float) -> dict:
    return {"mb_s": mb_s, "client_cpu_pct": client_pct, "broker_cpu_pct": {1: broker_pct}}


def test_shared_cores_ceiling_is_cores_over_single_cost_plus_two_copies():
    # single node: client 2.5 ms/MB, broker 1.5 ms/MB; a follower copy 2 ms/MB -> RF 3 >= 2.5 + 1.5 + 4 = 8 ms/MB
    bound = _floor.ceiling(_single(400.0, 100.0, 60.0), 0.002, cores=2, node_cpus=None)
    assert bound["rf3_floor_ms_per_mb"] == pytest.approx(8.0)
    assert bound["ceiling_mb_s"] == pytest.approx(250.0)
    assert bound["ceiling_ratio"] == pytest.approx(0.625)


def test_envelope_ceiling_is_the_lower_of_the_machine_and_three_brokers_quotas():
    single = _single(400.0, 100.0, 60.0)
    # 0.5 CPU per broker: 1.5 CPU / 5.5 ms/MB = 272.7 MB/s, above the machine's 250: the machine bounds it
    assert _floor.ceiling(single, 0.002, cores=2, node_cpus=0.5)["ceiling_mb_s"] == pytest.approx(250.0)
    # 0.3 CPU per broker: 0.9 CPU / 5.5 ms/MB = 163.6 MB/s
    bound = _floor.ceiling(single, 0.002, cores=2, node_cpus=0.3)
    assert bound["ceiling_mb_s"] == pytest.approx(163.6, abs=0.1)
    assert bound["ceiling_ratio"] == pytest.approx(0.409, abs=0.001)


def test_floor_moves_every_byte_through_the_service_and_counts_both_ends():
    result = _floor.measure(total_mib=32, records_size=1024 * 1024)
    assert result["calls"] == 32
    assert result["records_bytes_per_call"] == 1024 * 1024
    # Both processes did real work.  CPU is counted in 10 ms clock ticks; 32 MiB costs each end ~30 ms here.
    assert result["leader_cpu_s_per_mib"] > 0
    assert result["follower_cpu_s_per_mib"] > 0
    assert result["cpu_s_per_mib"] == pytest.approx(result["leader_cpu_s_per_mib"] + result["follower_cpu_s_per_mib"],
                                                    abs=2e-5)


def test_disk_measurement_writes_fsynced_chunks_and_removes_its_file(tmp_path):
    result = _floor.sustained_fsync_write(tmp_path, seconds=1.5, chunk_size=64 * 1024)
    assert result["bytes"] > 0 and result["bytes"] % (64 * 1024) == 0
    assert result["first_second_mb_s"] > 0 and result["sustained_mb_s"] > 0
    assert list(tmp_path.iterdir()) == []


def test_disk_measurement_removes_its_file_when_a_write_fails(tmp_path, monkeypatch):
    def full_disk(_fd, _data):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(_floor.os, "write", full_disk)
    with pytest.raises(OSError):
        _floor.sustained_fsync_write(tmp_path, seconds=1.0)
    assert list(tmp_path.iterdir()) == []
