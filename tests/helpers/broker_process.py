"""Run a kraftpy broker as a real OS process, the way a user would.

End-to-end tests and the benchmark must exercise the broker exactly as shipped: a separate process
started from the command line with a `server.properties` file, talked to over TCP by unmodified Kafka
clients, and killed with real signals.  This module owns that lifecycle (free port, config file, data
directory, stderr capture, readiness probe, SIGTERM/SIGKILL, restart on the same directory and port)
so that no test has to deal with processes directly.  It imports nothing from `cluster`.
"""

from __future__ import annotations

import os
import signal
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]

# The readiness probe is an ApiVersions v0 request; every Kafka client's first request is some
# ApiVersions version, so "answers ApiVersions v0" is the least a broker must do to be usable.
API_VERSIONS_KEY = 18
_PROBE_CORRELATION_ID = 0x6B7270  # "krp"
_PROBE_CLIENT_ID = b"kraftpy-it-probe"


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now (the kernel picks it; a small race remains)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def free_port_block(offsets, host: str = "127.0.0.1", low: int = 20000, high: int = 32000) -> int:
    """A base port such that base + each offset is free, taken below the kernel's ephemeral range (32768+), where
    outgoing client and gRPC connections would otherwise take base + 1 between our check and the bind."""
    import random

    rng = random.Random()
    for _ in range(200):
        base = rng.randrange(low, high - max(offsets))
        sockets = []
        try:
            for offset in offsets:
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                sockets.append(sock)
                sock.bind((host, base + offset))
            return base
        except OSError:
            continue
        finally:
            for sock in sockets:
                sock.close()
    raise RuntimeError(f"no free block of ports {list(offsets)} in [{low}, {high})")


def api_versions_v0_request(correlation_id: int = _PROBE_CORRELATION_ID,
                            client_id: bytes = _PROBE_CLIENT_ID) -> bytes:
    """Size-prefixed ApiVersions v0 request (request header v1: key, version, correlation id, client id)."""
    header = struct.pack(">hhih", API_VERSIONS_KEY, 0, correlation_id, len(client_id)) + client_id
    return struct.pack(">i", len(header)) + header  # v0 has an empty body


def parse_api_versions_v0_response(frame: bytes) -> tuple[int, int, dict[int, tuple[int, int]]]:
    """(correlation_id, error_code, {api_key: (min, max)}) from a response frame without its size prefix."""
    correlation_id, error_code, count = struct.unpack_from(">ihi", frame, 0)
    ranges: dict[int, tuple[int, int]] = {}
    offset = 10
    for _ in range(max(count, 0)):
        key, min_version, max_version = struct.unpack_from(">hhh", frame, offset)
        ranges[key] = (min_version, max_version)
        offset += 6
    return correlation_id, error_code, ranges


def _recv_exactly(sock: socket.socket, size: int) -> bytes:
    chunks = bytearray()
    while len(chunks) < size:
        chunk = sock.recv(size - len(chunks))
        if not chunk:
            raise ConnectionError(f"connection closed after {len(chunks)} of {size} bytes")
        chunks += chunk
    return bytes(chunks)


def probe_api_versions(host: str, port: int, timeout_s: float = 1.0) -> dict[int, tuple[int, int]]:
    """Send ApiVersions v0 and return the advertised ranges; raises if the broker is not answering."""
    with socket.create_connection((host, port), timeout=timeout_s) as sock:
        sock.settimeout(timeout_s)
        sock.sendall(api_versions_v0_request())
        (size,) = struct.unpack(">i", _recv_exactly(sock, 4))
        correlation_id, error_code, ranges = parse_api_versions_v0_response(_recv_exactly(sock, size))
    if correlation_id != _PROBE_CORRELATION_ID:
        raise ConnectionError(f"ApiVersions answered with correlation id {correlation_id}")
    if error_code != 0:
        raise ConnectionError(f"ApiVersions v0 answered error code {error_code}")
    return ranges


def _die_with_parent() -> None:
    """Runs in the child before exec: SIGKILL the broker if the harness dies without cleaning up."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGKILL)
    except (OSError, AttributeError):
        pass  # not Linux: the fixtures' finalizers still stop the broker


class BrokerStartError(RuntimeError):
    pass


class BrokerProcess:
    """One broker process on a fixed port and data directory, restartable after a crash.

    `work_dir` holds `server.properties`, `data/` (log.dirs) and `broker.log` (stdout and stderr of
    every incarnation, appended, each start preceded by a marker line).
    """

    def __init__(self, work_dir: Path, *, node_id: int = 1, port: int | None = None,
                 overrides: dict[str, str] | None = None, python: str = sys.executable,
                 host: str = "127.0.0.1", name: str = "broker", extra_args: list[str] | None = None,
                 env: dict[str, str] | None = None, console_script: bool = False) -> None:
        self.work_dir = Path(work_dir)
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self.node_id = node_id
        self.host = host
        self.port = port if port is not None else free_port(host)
        self.name = name
        self.python = python
        self.data_dir = self.work_dir / "data"
        self.config_path = self.work_dir / "server.properties"
        self.log_path = self.work_dir / "broker.log"
        self.overrides = dict(overrides or {})
        self.extra_args = list(extra_args or [])  # e.g. ["--override", "num.partitions=3"]
        self.env = dict(env or {})                # e.g. {"KRAFTPY_LOG_DIRS": ...}
        self.console_script = console_script      # run `kraftpy broker` instead of `python -m cluster broker`
        self.process: subprocess.Popen | None = None
        self.starts = 0
        self.exit_codes: list[int] = []
        self._write_config()

    # -- configuration -------------------------------------------------------------------------

    def properties(self) -> dict[str, str]:
        props = {
            "node.id": str(self.node_id),
            "listeners": f"PLAINTEXT://{self.host}:{self.port}",
            "advertised.listeners": f"PLAINTEXT://{self.host}:{self.port}",
            "log.dirs": str(self.data_dir),
            "num.partitions": "1",
            "auto.create.topics.enable": "true",
        }
        props.update(self.overrides)
        return props

    def _write_config(self) -> None:
        lines = ["# written by tests/helpers/broker_process.py"]
        lines += [f"{key}={value}" for key, value in self.properties().items()]
        self.config_path.write_text("\n".join(lines) + "\n")

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def command(self) -> list[str]:
        if self.console_script:
            launcher = [str(Path(self.python).parent / "kraftpy")]
        else:
            launcher = [self.python, "-m", "cluster"]
        return launcher + ["broker", "--config", str(self.config_path)] + self.extra_args

    # -- lifecycle -----------------------------------------------------------------------------

    def is_alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self, timeout_s: float = 30.0, *, wait: bool = True) -> None:
        """Starts the process and, with ``wait``, waits until it answers ApiVersions.  A cluster node answers
        only once the quorum has registered and unfenced it, so a cluster's nodes start with ``wait=False``
        first and ``wait_ready`` after (see cluster_process.ProcessCluster.start_all)."""
        if self.is_alive():
            raise BrokerStartError(f"{self.name} already running as pid {self.pid}")
        self.starts += 1
        env = dict(os.environ)
        env.pop("KRAFTPY_LOG_DIRS", None)  # the config file is the single source of log.dirs unless asked
        env.setdefault("PYTHONUNBUFFERED", "1")
        env.update(self.env)
        with open(self.log_path, "ab") as log:
            log.write(f"\n=== harness: start #{self.starts} of {self.name} at {time.time():.3f}: "
                      f"{' '.join(self.command())}\n".encode())
            log.flush()
            self.process = subprocess.Popen(
                self.command(), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                cwd=str(REPO_ROOT), env=env, start_new_session=True,
                preexec_fn=_die_with_parent)
        if wait:
            self.wait_ready(timeout_s)

    def wait_ready(self, timeout_s: float = 30.0) -> None:
        deadline = time.monotonic() + timeout_s
        last_error: Exception | None = None
        while time.monotonic() < deadline:
            if not self.is_alive():
                rc = self.process.returncode
                self.exit_codes.append(rc)
                self.process = None
                raise BrokerStartError(
                    f"{self.name} exited with status {rc} before it was ready; log tail:\n{self.log_tail()}")
            try:
                probe_api_versions(self.host, self.port, timeout_s=1.0)
                return
            except OSError as exc:  # ConnectionError and socket.timeout are OSErrors
                last_error = exc
            except struct.error as exc:
                last_error = exc
            time.sleep(0.05)
        self.kill9()
        raise BrokerStartError(f"{self.name} not answering ApiVersions on {self.bootstrap} after {timeout_s}s "
                               f"(last error: {last_error!r}); log tail:\n{self.log_tail()}")

    _wait_ready = wait_ready   # its name before it was public (bench/cluster.py uses it)

    def stop(self, timeout_s: float = 10.0) -> int | None:
        """SIGTERM, wait up to `timeout_s`, then SIGKILL.  Returns the exit status (None if not running)."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self._append_log(f"=== harness: {self.name} ignored SIGTERM for {timeout_s}s, sending SIGKILL\n")
                self.process.kill()
                self.process.wait()
        rc = self.process.returncode
        self.exit_codes.append(rc)
        self.process = None
        return rc

    def kill9(self) -> None:
        """Crash the broker: SIGKILL, no chance to flush anything."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self._append_log(f"=== harness: SIGKILL {self.name} pid {self.process.pid} at {time.time():.3f}\n")
            self.process.kill()
        self.process.wait()
        self.exit_codes.append(self.process.returncode)
        self.process = None

    def restart(self, timeout_s: float = 30.0, *, crash: bool = False) -> None:
        """Stop (or with `crash`, SIGKILL) and start again on the same port and data directory."""
        if crash:
            self.kill9()
        else:
            self.stop()
        self.start(timeout_s)

    # -- logs ----------------------------------------------------------------------------------

    def _append_log(self, text: str) -> None:
        with open(self.log_path, "ab") as log:
            log.write(text.encode())

    def log_size(self) -> int:
        try:
            return self.log_path.stat().st_size
        except FileNotFoundError:
            return 0

    def log_since(self, offset: int, max_bytes: int = 12_000) -> str:
        """The log written since `offset` (a `log_size()` taken earlier), at most its last `max_bytes`."""
        try:
            with open(self.log_path, "rb") as log:
                log.seek(0, os.SEEK_END)
                end = log.tell()
                start = max(offset, end - max_bytes)
                log.seek(start)
                text = log.read().decode(errors="replace")
        except FileNotFoundError:
            return "(no broker log)"
        prefix = f"[... {start - offset} earlier bytes in {self.log_path}]\n" if start > offset else ""
        return prefix + text

    def log_tail(self, max_bytes: int = 6_000) -> str:
        return self.log_since(0, max_bytes)

    # -- on-disk state ---------------------------------------------------------------------------

    def partition_dir(self, topic: str, partition: int) -> Path:
        return self.data_dir / f"{topic}-{partition}"

    def __repr__(self) -> str:
        return f"BrokerProcess({self.name}, {self.bootstrap}, pid={self.pid}, dir={self.work_dir})"
