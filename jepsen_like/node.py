"""One broker as an OS process that the harness starts, kills -9, restarts, pauses and resumes.

Faults must hit the broker exactly as shipped, so a node is `python -m cluster broker` with Kafka's config
keys as overrides, its data and log kept in the run directory.  The harness is always the parent (Popen +
wait), so a killed broker is reaped at once and never lingers as a zombie that still answers `kill -0`;
PR_SET_PDEATHSIG makes the broker die with the harness if the harness itself is killed.  That signal
fires when the *thread* that forked the child exits, so every start runs on one control thread per node
that lives as long as the node (a broker started from the short-lived nemesis thread would otherwise be
SIGKILLed the moment that thread finished).  Only PIDs started here are ever signalled.  In a network
namespace the command is prefixed with `ip netns exec ... unshare --uts ... exec`, which all exec in place:
the PID the harness holds is the broker's own.
"""

from __future__ import annotations

import os
import signal
import socket
import struct
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

_API_VERSIONS_KEY = 18
_PROBE_CORRELATION_ID = 0x6A6C  # "jl"


class NodeError(RuntimeError):
    pass


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def answers_api_versions(host: str, port: int, timeout_s: float = 1.0) -> bool:
    """True if the port answers an ApiVersions v0 request (every Kafka client's first request)."""
    client_id = b"jepsen-like-probe"
    header = struct.pack(">hhih", _API_VERSIONS_KEY, 0, _PROBE_CORRELATION_ID, len(client_id)) + client_id
    try:
        with socket.create_connection((host, port), timeout=timeout_s) as sock:
            sock.settimeout(timeout_s)
            sock.sendall(struct.pack(">i", len(header)) + header)
            reply = b""
            while len(reply) < 10:
                chunk = sock.recv(64)
                if not chunk:
                    return False
                reply += chunk
        _, correlation_id, error_code = struct.unpack_from(">iih", reply, 0)
        return correlation_id == _PROBE_CORRELATION_ID and error_code == 0
    except OSError:
        return False


def _die_with_parent() -> None:
    try:
        import ctypes
        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


class BrokerNode:
    def __init__(self, name: str, node_id: int, node_dir: Path, *, host: str = "127.0.0.1",
                 port: int | None = None, overrides: dict[str, str] | None = None,
                 repo_root: Path | None = None, exec_prefix: list[str] | None = None) -> None:
        self.name = name
        self.exec_prefix = list(exec_prefix or [])   # e.g. `ip netns exec <ns> ...` (netns.Network)
        self.node_id = node_id
        self.host = host
        self.port = port or free_port(host)
        self.node_dir = Path(node_dir)
        self.data_dir = self.node_dir / "data"
        self.log_path = self.node_dir / "broker.log"
        self.repo_root = repo_root or Path(__file__).resolve().parents[1]
        self.overrides = {
            "node.id": str(node_id),
            "listeners": f"PLAINTEXT://{self.host}:{self.port}",
            "advertised.listeners": f"PLAINTEXT://{self.host}:{self.port}",
            "log.dirs": str(self.data_dir),
            "offsets.topic.replication.factor": "1",
            "metrics.listener": "",
            **(overrides or {}),
        }
        self.process: subprocess.Popen | None = None
        self.paused = False
        self.starts = 0
        self.unexpected_exits: list[int] = []   # exit codes of incarnations nobody killed
        # A broker may rightly stop on a full disk (as Kafka halts on a failed log dir): while a disk fault is
        # active an exit is excused, recorded apart, and the node restarted at healing.
        self.exit_excused = False
        self.excused_exits: list[int] = []
        self._killed = False
        self._control = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"control-{name}")

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    def command(self) -> list[str]:
        cmd = [*self.exec_prefix, sys.executable, "-m", "cluster", "broker"]
        for key, value in self.overrides.items():
            cmd += ["--override", f"{key}={value}"]
        return cmd

    def crashed(self) -> bool:
        """The current incarnation exited and nobody killed it."""
        return (self.process is not None and self.process.poll() is not None and not self._killed
                and not self.exit_excused)

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self, timeout_s: float = 30.0, *, wait: bool = True) -> None:
        """Starts the broker and, with ``wait``, waits until it answers ApiVersions.  A cluster node answers only
        once the quorum has unfenced it, so a whole cluster is started with ``wait=False`` and then
        ``wait_serving`` for each node (cluster_control.ClusterControl.start)."""
        self._control.submit(self._start, timeout_s, wait).result()

    def wait_serving(self, timeout_s: float = 30.0) -> None:
        self._control.submit(self._wait_serving, timeout_s).result()

    def _start(self, timeout_s: float, wait: bool) -> None:
        if self.alive():
            return
        if self.process is not None and not self._killed:
            (self.excused_exits if self.exit_excused else self.unexpected_exits).append(self.process.returncode)
        self._killed = False
        self.exit_excused = False
        self.node_dir.mkdir(parents=True, exist_ok=True)
        self.starts += 1
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        env.pop("KRAFTPY_LOG_DIRS", None)
        with open(self.log_path, "ab") as log:
            log.write(f"\n=== jepsen_like: start #{self.starts} of {self.name}\n".encode())
            log.flush()
            self.process = subprocess.Popen(self.command(), stdin=subprocess.DEVNULL, stdout=log,
                                            stderr=subprocess.STDOUT, cwd=str(self.repo_root), env=env,
                                            start_new_session=True, preexec_fn=_die_with_parent)
        self.paused = False
        if wait:
            self._wait_serving(timeout_s)

    def _wait_serving(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not self.alive():
                self._killed = True   # reported by the error below, not again as an unexpected exit
                raise NodeError(f"{self.name} exited with {self.process.returncode} while starting; "
                                f"see {self.log_path}")
            if answers_api_versions(self.host, self.port):
                return
            time.sleep(0.05)
        self.kill9()
        raise NodeError(f"{self.name} not answering on {self.bootstrap} after {timeout_s}s; see {self.log_path}")

    def kill9(self) -> None:
        if self.process is None:
            return
        self._killed = True
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
        self.process.wait()
        self.paused = False

    def pause(self) -> None:
        if self.alive():
            self.process.send_signal(signal.SIGSTOP)
            self.paused = True

    def resume(self) -> None:
        if self.alive() and self.paused:
            self.process.send_signal(signal.SIGCONT)
        self.paused = False

    def heal(self) -> None:
        """Undo whatever fault is active: resume a paused broker, restart a dead one."""
        self.resume()
        if not self.alive():
            self.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        try:
            self._stop(timeout_s)
        finally:
            self._control.shutdown(wait=True)

    def _stop(self, timeout_s: float) -> None:
        if self.process is None:
            return
        if self.process.poll() is not None and not self._killed:
            (self.excused_exits if self.exit_excused else self.unexpected_exits).append(self.process.returncode)
        self.resume()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None
