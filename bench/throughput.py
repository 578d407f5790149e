"""Produce and consume throughput of a fresh kraftpy broker, next to a raw loopback reference.

Machines here are noisy, so absolute numbers mean little on their own (../shared/DESIGN.md, Performance
principles): each run also measures, in the same run, how fast the same bytes move over loopback
through a minimal asyncio BufferedProtocol server in its own process, and prints the broker/reference
ratio.  The client is confluent-kafka with the settings of performance.md §2 (linger 5 ms, 1 MB
batches, assign() not groups, consume(n, 0) then poll(timeout), a large queued.min.messages and a
5 ms fetch.queue.backoff.ms).

Output: one JSON line per run and phase, then per configuration a JSON line and a human line ("# ")
for the median run.  Slowness never fails:
the exit status is non-zero only if the broker lost or refused records, or died.

    .venv/bin/python bench/throughput.py [--size-mib 256] [--configs all:1,all:6,1:1]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "helpers"))

from broker_process import BrokerProcess  # noqa: E402

MB = 1_000_000  # MB/s counts 10^6 bytes of record values (performance.md conventions)
TARGET_PRODUCE_MB_S = 150.0
TARGET_CONSUME_MB_S = 300.0
TARGET_PEAK_RSS_MB = 300.0
REFERENCE_FRAME_BYTES = 1024 * 1024  # ~ one producer batch (batch.size 1 MB)
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


# ------------------------------------------------------------------------------------------------
# process accounting
# ------------------------------------------------------------------------------------------------

def process_cpu_seconds(pid: int) -> float:
    """utime + stime of a process (all its threads) from /proc/<pid>/stat."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # fields 14 and 15 of stat(5)


def process_memory_mb(pid: int) -> tuple[float, float]:
    """(VmRSS, VmHWM) in MB: current and peak resident set size."""
    values = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(("VmRSS:", "VmHWM:")):
                key, amount, _unit = line.split()
                values[key[:-1]] = int(amount) * 1024 / MB
    return values.get("VmRSS", 0.0), values.get("VmHWM", 0.0)


def own_cpu_seconds() -> float:
    times = os.times()  # includes librdkafka's threads
    return times.user + times.system


class CpuMeter:
    """CPU % (100 = one core) of the broker and of this client process over a timed section."""

    def __init__(self, broker_pid: int | None) -> None:
        self.broker_pid = broker_pid

    def __enter__(self) -> CpuMeter:
        self.wall_start = time.perf_counter()
        self.client_start = own_cpu_seconds()
        self.broker_start = process_cpu_seconds(self.broker_pid) if self.broker_pid else 0.0
        return self

    def __exit__(self, *exc) -> None:
        self.seconds = time.perf_counter() - self.wall_start
        self.client_pct = 100 * (own_cpu_seconds() - self.client_start) / self.seconds
        self.broker_pct = (100 * (process_cpu_seconds(self.broker_pid) - self.broker_start) / self.seconds
                           if self.broker_pid else 0.0)


# ------------------------------------------------------------------------------------------------
# reference: raw loopback through an asyncio BufferedProtocol server in its own process
# ------------------------------------------------------------------------------------------------

class ReferenceProtocol(asyncio.BufferedProtocol):
    """Sink ('S') reads [int32 len][payload] frames into a preallocated buffer and acks the total;
    source ('F') writes frames of one preallocated payload until the total is sent."""

    def __init__(self) -> None:
        self.buffer = bytearray(4 * 1024 * 1024)
        self.view = memoryview(self.buffer)
        self.used = 0
        self.mode = None
        self.remaining = 0
        self.can_write = asyncio.Event()
        self.can_write.set()

    def connection_made(self, transport) -> None:
        self.transport = transport

    def get_buffer(self, sizehint: int) -> memoryview:
        return self.view[self.used:]

    def buffer_updated(self, nbytes: int) -> None:
        self.used += nbytes
        if self.mode is None:
            if self.used < 13:
                return
            self.mode = bytes(self.buffer[0:1])
            self.remaining, frame_bytes = struct.unpack_from(">qi", self.buffer, 1)
            if frame_bytes + 4 > len(self.buffer):
                self.transport.close()  # frames must fit the preallocated buffer
                return
            leftover = self.used - 13
            self.buffer[0:leftover] = self.buffer[13:self.used]
            self.used = leftover
            if self.mode == b"F":
                asyncio.get_running_loop().create_task(self._send(self.remaining, frame_bytes))
                return
        self._consume_frames()

    def _consume_frames(self) -> None:
        position = 0
        while self.used - position >= 4:
            (size,) = struct.unpack_from(">i", self.buffer, position)
            if self.used - position < 4 + size:
                break
            self.remaining -= size
            position += 4 + size
        if position:
            leftover = self.used - position
            self.buffer[0:leftover] = self.buffer[position:self.used]
            self.used = leftover
        if self.remaining <= 0 and self.mode == b"S":
            self.transport.write(b"K")

    async def _send(self, total: int, frame_bytes: int) -> None:
        payload = random.randbytes(frame_bytes)
        header = struct.pack(">i", frame_bytes)
        sent = 0
        while sent < total:
            await self.can_write.wait()
            self.transport.write(header)
            self.transport.write(payload)
            sent += frame_bytes

    def pause_writing(self) -> None:
        self.can_write.clear()

    def resume_writing(self) -> None:
        self.can_write.set()


def serve_reference() -> None:
    async def main() -> None:
        server = await asyncio.get_running_loop().create_server(ReferenceProtocol, "127.0.0.1", 0)
        print(server.sockets[0].getsockname()[1], flush=True)
        await server.serve_forever()

    asyncio.run(main())


def run_reference(total_bytes: int, frame_bytes: int = REFERENCE_FRAME_BYTES, repeats: int = 3) -> dict:
    """Median MB/s of client->server (like produce) and server->client (like consume) over loopback."""
    server = subprocess.Popen([sys.executable, __file__, "--serve-reference"], stdout=subprocess.PIPE, text=True)
    try:
        port = int(server.stdout.readline())
        frames = max(1, total_bytes // frame_bytes)
        total = frames * frame_bytes
        frame = struct.pack(">i", frame_bytes) + random.randbytes(frame_bytes)
        sink, source = [], []
        for _ in range(repeats):
            with socket.create_connection(("127.0.0.1", port)) as sock, CpuMeter(server.pid) as meter:
                sock.sendall(b"S" + struct.pack(">qi", total, frame_bytes))
                for _ in range(frames):
                    sock.sendall(frame)
                assert sock.recv(1) == b"K"
            sink.append((total / MB / meter.seconds, meter.broker_pct))
            with socket.create_connection(("127.0.0.1", port)) as sock, CpuMeter(server.pid) as meter:
                sock.sendall(b"F" + struct.pack(">qi", total, frame_bytes))
                buffer = bytearray(frame_bytes)
                view = memoryview(buffer)
                received, wanted = 0, frames * (frame_bytes + 4)
                while received < wanted:
                    n = sock.recv_into(view)
                    if not n:
                        raise ConnectionError("reference server closed early")
                    received += n
            source.append((total / MB / meter.seconds, meter.broker_pct))
        sink.sort()
        source.sort()
        return {"produce_mb_s": sink[len(sink) // 2][0], "produce_server_cpu_pct": sink[len(sink) // 2][1],
                "consume_mb_s": source[len(source) // 2][0],
                "consume_server_cpu_pct": source[len(source) // 2][1],
                "total_bytes": total, "frame_bytes": frame_bytes, "repeats": repeats}
    finally:
        server.terminate()
        server.wait(10)


# ------------------------------------------------------------------------------------------------
# broker runs
# ------------------------------------------------------------------------------------------------

@dataclass
class Result:
    phase: str
    acks: str
    partitions: int
    messages: int
    value_bytes: int
    seconds: float
    broker_cpu_pct: float
    client_cpu_pct: float
    broker_rss_mb: float
    broker_peak_rss_mb: float
    errors: int
    truncated: bool

    @property
    def mb_s(self) -> float:
        return self.value_bytes / MB / self.seconds if self.seconds else 0.0

    @property
    def msgs_s(self) -> float:
        return self.messages / self.seconds if self.seconds else 0.0


def create_topic(bootstrap: str, topic: str, partitions: int) -> None:
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(topic, partitions, 1)], operation_timeout=20)[topic].result(30)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        md = admin.list_topics(topic, timeout=5).topics.get(topic)
        if md is not None and md.error is None and len(md.partitions) == partitions:
            return
        time.sleep(0.1)
    raise RuntimeError(f"topic {topic} not ready")


def throughput_producer_config(bootstrap: str, acks: str, max_seconds: float, on_error) -> dict:
    """The confluent-kafka producer every throughput benchmark uses: 1 MB batches, 5 ms linger, no compression,
    a deep queue, and a delivery callback for failures only (a Python callback per record would measure Python,
    not the brokers)."""
    return {
        "bootstrap.servers": bootstrap,
        "acks": acks,
        "linger.ms": 5,
        "batch.size": 1_000_000,
        "compression.type": "none",
        "queue.buffering.max.kbytes": 256 * 1024,
        "queue.buffering.max.messages": 1_000_000,
        "delivery.report.only.error": True,
        "on_delivery": lambda err, msg: on_error(err),
        "message.timeout.ms": int(max_seconds * 1000) + 60_000,
    }


def run_produce(broker: BrokerProcess, topic: str, acks: str, partitions: int, count: int, msg_size: int,
                max_seconds: float) -> Result:
    from confluent_kafka import Producer

    errors = []
    producer = Producer(throughput_producer_config(broker.bootstrap, acks, max_seconds, errors.append))
    payloads = [random.randbytes(msg_size) for _ in range(1024)]
    producer.list_topics(topic, timeout=10)
    truncated = False
    sent = 0
    with CpuMeter(broker.pid) as meter:
        deadline = time.perf_counter() + max_seconds
        produce = producer.produce
        while sent < count:
            try:
                produce(topic, payloads[sent & 1023])
                sent += 1
            except BufferError:
                producer.poll(0.005)
                if time.perf_counter() > deadline:
                    truncated = True
                    break
                continue
            if sent & 1023 == 0:
                producer.poll(0)
                if time.perf_counter() > deadline:
                    truncated = True
                    break
        remaining = producer.flush(120)
    rss, peak = process_memory_mb(broker.pid)
    return Result("produce", acks, partitions, sent, sent * msg_size, meter.seconds, meter.broker_pct,
                  meter.client_pct, rss, peak, len(errors) + remaining, truncated)


def run_consume(broker: BrokerProcess, topic: str, acks: str, partitions: int, count: int, msg_size: int,
                max_seconds: float) -> Result:
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    consumer = Consumer({
        "bootstrap.servers": broker.bootstrap,
        "group.id": "kraftpy-bench-unused",  # required by the binding; assign() never joins it
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
        "queued.min.messages": 1_000_000,   # performance.md §2 trap 3
        "fetch.queue.backoff.ms": 5,
        "fetch.max.bytes": 50 * 1024 * 1024,
        "max.partition.fetch.bytes": 8 * 1024 * 1024,
        "receive.message.max.bytes": 64 * 1024 * 1024,
    })
    consumer.list_topics(topic, timeout=10)  # trap 2: metadata before assign()
    received = value_bytes = errors = 0
    truncated = False
    with CpuMeter(broker.pid) as meter:
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)])
        deadline = time.perf_counter() + max_seconds
        while received < count:
            batch = consumer.consume(10_000, 0)  # trap 1: never block in consume(n, timeout)
            if not batch:
                one = consumer.poll(0.1)
                batch = [one] if one is not None else []
                if time.perf_counter() > deadline:
                    truncated = True
                    break
            for msg in batch:
                if msg.error() is None:
                    received += 1
                    value_bytes += len(msg.value())
                else:
                    errors += 1
    consumer.close()
    rss, peak = process_memory_mb(broker.pid)
    return Result("consume", acks, partitions, received, value_bytes, meter.seconds, meter.broker_pct,
                  meter.client_pct, rss, peak, errors + (count - received), truncated)


# ------------------------------------------------------------------------------------------------
# report
# ------------------------------------------------------------------------------------------------

def report(result: Result, reference: dict, run: int | str, human: bool = True) -> None:
    target = TARGET_PRODUCE_MB_S if result.phase == "produce" else TARGET_CONSUME_MB_S
    ref_mb_s = reference[f"{result.phase}_mb_s"]
    line = {
        "bench": "throughput", "run": run, "phase": result.phase, "acks": result.acks,
        "partitions": result.partitions,
        "msg_bytes": result.value_bytes // max(result.messages, 1), "messages": result.messages,
        "seconds": round(result.seconds, 3), "msgs_per_s": round(result.msgs_s), "mb_per_s": round(result.mb_s, 1),
        "broker_cpu_pct": round(result.broker_cpu_pct, 1), "client_cpu_pct": round(result.client_cpu_pct, 1),
        "broker_rss_mb": round(result.broker_rss_mb, 1), "broker_peak_rss_mb": round(result.broker_peak_rss_mb, 1),
        "target_mb_per_s": target, "meets_target": result.mb_s >= target,
        "target_peak_rss_mb": TARGET_PEAK_RSS_MB, "meets_rss_target": result.broker_peak_rss_mb <= TARGET_PEAK_RSS_MB,
        "reference_mb_per_s": round(ref_mb_s, 1), "ratio_to_reference": round(result.mb_s / ref_mb_s, 4),
        "errors": result.errors, "truncated": result.truncated,
    }
    print(json.dumps(line), flush=True)
    if not human:
        return
    verdict = "ok" if result.mb_s >= target else "BELOW TARGET"
    print(f"# {run} {result.phase:7s} acks={result.acks:3s} {result.partitions}p: {result.msgs_s:>10,.0f} msg/s "
          f"{result.mb_s:7.1f} MB/s (target >= {target:.0f}: {verdict}) | broker CPU {result.broker_cpu_pct:5.1f}% "
          f"client CPU {result.client_cpu_pct:5.1f}% | broker peak RSS {result.broker_peak_rss_mb:.0f} MB "
          f"(target <= {TARGET_PEAK_RSS_MB:.0f}) | reference {ref_mb_s:,.0f} MB/s, ratio {result.mb_s / ref_mb_s:.3f}"
          + (f" | ERRORS {result.errors}" if result.errors else "") + (" | TRUNCATED (time budget)" if result.truncated else ""),
          flush=True)


def median_result(results: list[Result]) -> Result:
    """The run with the median MB/s (its CPU and memory figures belong to that same run)."""
    return sorted(results, key=lambda r: r.mb_s)[len(results) // 2]


def parse_configs(text: str) -> list[tuple[str, int]]:
    configs = []
    for item in text.split(","):
        acks, partitions = item.split(":")
        if acks not in ("0", "1", "all", "-1"):
            raise argparse.ArgumentTypeError(f"acks must be 0, 1, all or -1: {item}")
        configs.append((acks, int(partitions)))
    return configs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mib", type=float, default=256, help="MiB of record values per run (default 256)")
    parser.add_argument("--msg-size", type=int, default=1024, help="bytes per record value (default 1024)")
    parser.add_argument("--configs", type=parse_configs, default=parse_configs("all:1,all:6,1:1"),
                        help="comma-separated acks:partitions runs (default all:1,all:6,1:1)")
    parser.add_argument("--repeats", type=int, default=3,
                        help="runs per configuration; the human lines show the median run (default 3)")
    parser.add_argument("--max-seconds", type=float, default=25.0,
                        help="time budget per produce or consume phase; the run is cut short and marked (default 25)")
    parser.add_argument("--override", action="append", default=[], metavar="KEY=VALUE",
                        help="broker config override (repeatable)")
    parser.add_argument("--keep", action="store_true", help="keep the broker's data directory")
    parser.add_argument("--serve-reference", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve_reference:
        serve_reference()
        return 0

    total_bytes = int(args.size_mib * 1024 * 1024)
    count = max(1, total_bytes // args.msg_size)
    reference = run_reference(count * args.msg_size)
    print(json.dumps({"bench": "reference", **{k: round(v, 1) if isinstance(v, float) else v
                                                for k, v in reference.items()}}), flush=True)
    print(f"# reference (asyncio BufferedProtocol over loopback, {REFERENCE_FRAME_BYTES >> 20} MiB frames): "
          f"client->server {reference['produce_mb_s']:,.0f} MB/s, server->client {reference['consume_mb_s']:,.0f} MB/s",
          flush=True)

    overrides = dict(item.split("=", 1) for item in args.override)
    work_dir = Path(tempfile.mkdtemp(prefix="kraftpy-bench-"))
    broker = BrokerProcess(work_dir, overrides=overrides, name="bench-broker")
    failed = False
    try:
        broker.start()
        for acks, partitions in args.configs:
            runs: dict[str, list[Result]] = {"produce": [], "consume": []}
            for run in range(1, args.repeats + 1):
                topic = f"bench-acks{acks}-p{partitions}-r{run}-{int(time.time())}"
                create_topic(broker.bootstrap, topic, partitions)
                produced = run_produce(broker, topic, acks, partitions, count, args.msg_size, args.max_seconds)
                consumed = run_consume(broker, topic, acks, partitions, produced.messages, args.msg_size,
                                       args.max_seconds)
                for result in (produced, consumed):
                    runs[result.phase].append(result)
                    report(result, reference, run, human=False)
                failed |= bool(produced.errors or consumed.errors) or not broker.is_alive()
            for phase_runs in runs.values():
                report(median_result(phase_runs), reference, f"median of {len(phase_runs)}")
    except Exception as exc:  # report and fail on broker errors, never on slowness
        print(f"# benchmark aborted: {exc!r}", flush=True)
        failed = True
    finally:
        if broker.is_alive():
            _, peak = process_memory_mb(broker.pid)
            print(f"# broker peak RSS over the whole run: {peak:.0f} MB (target <= {TARGET_PEAK_RSS_MB:.0f})")
        broker.stop()
        if failed or args.keep:
            print(f"# broker data and log kept in {work_dir} (log: {broker.log_path})")
        else:
            shutil.rmtree(work_dir, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
