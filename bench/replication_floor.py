"""The CPU one follower copy costs at the least: a replica fetch carried by our own gRPC service, nothing else.

Why it exists: bench/replication.py compares a 3-node RF 3 cluster with a single node on the same machine.  When
both runs use up the cores, the ratio is bounded by how much CPU a produced megabyte costs in each.  A megabyte
produced at RF 3 costs at least what it costs on the single node (the client's work and the leader's durable
append are the same) plus two follower copies, and each copy costs at least one replica fetch response of that
megabyte through the ReplicaFetchService (proto/cluster/v1/replication.proto), serialised by the leader's gRPC
stack and received by the follower's.  This script measures that transfer alone, with the project's own client
(ReplicaFetchClient) in this process and server handler (replica_fetch_rpc_handlers) in a child process, over
loopback, and adds the CPU of both.  No log is read or written and no protocol state is kept: it is a floor,
not a model of the broker.  bench/replication.py runs it in a fresh process after its throughput runs and
turns it, with ``ceiling`` below, into the ratio the machine allows at best.

With ``--disk-dir`` it also writes to that directory's disk for ``--disk-seconds``, an fdatasync per MiB, and
reports the rate the disk sustains: on a machine where all three brokers share one disk, RF 3 writes every byte
three times to it, so once the disk is the limit RF 3 gets at most a third of what a single node gets.

    .venv/bin/python bench/replication_floor.py [--mib 256] [--records-kib 1024] [--disk-dir DIR]

Prints one JSON line: CPU-seconds per MiB of each end and of both, MiB/s, calls (and the disk's rates).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))   # ahead of bench/, whose cluster.py would shadow the package

import grpc  # noqa: E402

from cluster.transport.replica_fetch_grpc import (  # noqa: E402
    PartitionFetch,
    PartitionFetchResult,
    ReplicaFetchClient,
    ReplicaFetchRequest,
    ReplicaFetchResponse,
    replica_fetch_rpc_handlers,
)

MIB = 1024 * 1024
WARM_UP_CALLS = 20
# What the broker uses (cluster/broker/replica_fetcher.py, cluster/transport/raft_grpc.py): large messages allowed.
CHANNEL_OPTIONS = [("grpc.max_receive_message_length", 256 * MIB), ("grpc.max_send_message_length", 256 * MIB)]
SERVER_OPTIONS = [("grpc.max_receive_message_length", 64 * MIB)]


# These two repeat bench/throughput.py's on purpose: importing that module (and the test helpers it pulls in)
# into the serving process raised its measured CPU per MiB from ~1.3 to ~2.4 ms here (allocator and heap layout
# effects), and a floor must not be inflated by its own harness.
def own_cpu_seconds() -> float:
    times = os.times()   # every thread of this process: the gRPC stack and the event loop
    return times.user + times.system


def process_cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# == the leader's end: a child process ================================================================================
async def serve(records_size: int) -> None:
    """Answers every fetch with ``records_size`` bytes of records; prints its port, stops when stdin closes."""
    records = os.urandom(records_size)

    async def answer(request: ReplicaFetchRequest, _context) -> ReplicaFetchResponse:
        fetch = request.partitions[0]
        return ReplicaFetchResponse(partitions=[PartitionFetchResult(
            fetch.topic_id, fetch.partition, high_watermark=fetch.fetch_offset, log_start_offset=0,
            records=records, log_end_offset=fetch.fetch_offset + 1)])

    server = grpc.aio.server(options=SERVER_OPTIONS)
    server.add_generic_rpc_handlers(replica_fetch_rpc_handlers(answer))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    print(port, flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)   # parent closed our stdin: done
    await server.stop(None)


# == the follower's end: this process =================================================================================
async def fetch_all(port: int, total_mib: float, records_size: int, leader_pid: int) -> dict:
    """Fetches until ``total_mib`` MiB of records have crossed; CPU per MiB of both processes."""
    topic_id = uuid.uuid4()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}", options=CHANNEL_OPTIONS)
    client = ReplicaFetchClient(channel)

    def request(offset: int) -> ReplicaFetchRequest:
        return ReplicaFetchRequest("floor", 2, 1, 0, 64 * MIB, [PartitionFetch(topic_id, 0, 1, offset, 1, 0, 64 * MIB,
                                                                        offset)])
    try:
        for call in range(WARM_UP_CALLS):
            await client.fetch(request(call), timeout_s=10)
        calls = max(1, round(total_mib * MIB / records_size))
        received = 0
        follower_before, leader_before = own_cpu_seconds(), process_cpu_seconds(leader_pid)
        started = time.perf_counter()
        for call in range(calls):
            response = await client.fetch(request(call), timeout_s=10)
            received += len(response.partitions[0].records)
        seconds = time.perf_counter() - started
        follower_cpu = own_cpu_seconds() - follower_before
        leader_cpu = process_cpu_seconds(leader_pid) - leader_before
    finally:
        await channel.close()
    if received != calls * records_size:
        raise RuntimeError(f"received {received} bytes of records, expected {calls * records_size}")
    mib = received / MIB
    return {"bench": "replica_fetch_floor", "calls": calls, "records_bytes_per_call": records_size,
            "mib_s": round(mib / seconds, 1), "leader_cpu_s_per_mib": round(leader_cpu / mib, 5),
            "follower_cpu_s_per_mib": round(follower_cpu / mib, 5),
            "cpu_s_per_mib": round((leader_cpu + follower_cpu) / mib, 5)}


def measure(total_mib: float, records_size: int) -> dict:
    """Starts the leader's end, fetches from it, stops it."""
    leader = subprocess.Popen([sys.executable, __file__, "--serve", "--records-kib", str(records_size // 1024)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        port_line = leader.stdout.readline()
        if not port_line.strip().isdigit():
            raise RuntimeError(f"the serving process did not report its port (got {port_line!r})")
        return asyncio.run(fetch_all(int(port_line), total_mib, records_size, leader.pid))
    finally:
        leader.stdin.close()
        try:
            leader.wait(timeout=10)
        except subprocess.TimeoutExpired:
            leader.kill()
            leader.wait()


# == the disk: what every replica's fsync shares here ================================================================
def sustained_fsync_write(directory: Path, seconds: float, chunk_size: int = MIB) -> dict:
    """Writes ``chunk_size`` chunks with an fdatasync after each (as a broker's group commit does at its
    busiest) for ``seconds``; MB/s over the first second and over the last third (virtual disks often run a
    short burst far above what they sustain).  The file is removed, also on failure."""
    path = directory / "replication-floor-disk.tmp"
    chunk = os.urandom(chunk_size)
    samples: list[tuple[float, int]] = []
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        written, started = 0, time.perf_counter()
        while (elapsed := time.perf_counter() - started) < seconds:
            written += os.write(fd, chunk)
            os.fdatasync(fd)
            samples.append((elapsed, written))
    finally:
        os.close(fd)
        path.unlink(missing_ok=True)

    def rate_between(since_s: float, until_s: float) -> float:
        window = [(t, b) for t, b in samples if since_s <= t <= until_s]
        if len(window) < 2:
            return 0.0
        return (window[-1][1] - window[0][1]) / 1e6 / (window[-1][0] - window[0][0])
    end_s = samples[-1][0] if samples else 0.0
    return {"bench": "disk_fsync_write", "seconds": round(end_s, 1), "bytes": samples[-1][1] if samples else 0,
            "first_second_mb_s": round(rate_between(0.0, 1.0), 1),
            "sustained_mb_s": round(rate_between(end_s * 2 / 3, end_s), 1)}


# == what it allows ===================================================================================================
def cpu_s_per_mb(result: dict) -> tuple[float, float]:
    """(client, all brokers) CPU-seconds per produced MB of one throughput result."""
    client = result["client_cpu_pct"] / 100 / result["mb_s"]
    brokers = sum(result["broker_cpu_pct"].values()) / 100 / result["mb_s"]
    return client, brokers


def ceiling(single: dict, floor_s_per_mb: float, cores: int, node_cpus: float | None) -> dict:
    """The most RF 3 acks=all could reach here if replication cost nothing beyond its floor.

    A produced MB at RF 3 costs at least the single node's client and broker CPU per MB (the client's work and
    the leader's durable append are the same) plus two follower copies at ``floor_s_per_mb`` each.  All of it
    runs on ``cores`` cores, so throughput <= cores / that sum.  With a CPU envelope the brokers' part is also
    split over three nodes of ``node_cpus`` each (evenly, at best).  The ratio is to the measured single node.
    """
    client, broker = cpu_s_per_mb(single)
    rf3_broker_s_per_mb = broker + 2 * floor_s_per_mb
    machine_mb_s = cores / (client + rf3_broker_s_per_mb)
    bound_mb_s = machine_mb_s
    if node_cpus is not None:
        bound_mb_s = min(machine_mb_s, 3 * node_cpus / rf3_broker_s_per_mb)
    return {"bench": "replication_ceiling", "cores": cores, "node_cpus": node_cpus,
            "single_client_ms_per_mb": round(client * 1000, 3), "single_broker_ms_per_mb": round(broker * 1000, 3),
            "follower_copy_floor_ms_per_mb": round(floor_s_per_mb * 1000, 3),
            "rf3_floor_ms_per_mb": round((client + rf3_broker_s_per_mb) * 1000, 3),
            "ceiling_mb_s": round(bound_mb_s, 1), "ceiling_ratio": round(bound_mb_s / single["mb_s"], 3)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mib", type=float, default=256.0, help="MiB of records to transfer (default 256)")
    parser.add_argument("--records-kib", type=int, default=1024,
                        help="records per fetch response in KiB (default 1024: one librdkafka batch)")
    parser.add_argument("--disk-dir", type=Path,
                        help="also measure the fsynced write rate this directory's disk sustains (writes ~GBs)")
    parser.add_argument("--disk-seconds", type=float, default=20.0, help="how long to write there (default 20)")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)   # the leader's end (internal)
    args = parser.parse_args(argv)
    if args.serve:
        asyncio.run(serve(args.records_kib * 1024))
    else:
        result = measure(args.mib, args.records_kib * 1024)
        if args.disk_dir is not None:
            result["disk"] = sustained_fsync_write(args.disk_dir, args.disk_seconds)
        print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
