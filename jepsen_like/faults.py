"""The fault mechanisms beyond kill, pause and partition: clock skew, a full disk, packet delay and loss.

Each control owns one kind of fault across the nodes, applies it, heals it, and can heal everything at the
end of a run (Jepsen's final generators) and again in the harness's `finally`, so nothing outlives a run:
* ClockControl writes the per-node offset file the broker's `cluster/core/clock.py` polls (every 100 ms):
  a *bump* sets a fixed offset, a *strobe* flips between the offset and 0 every period on its own thread.
* DiskControl mounts a small tmpfs as each node's data dir (reference §2(f)); *disk-full* fills it with a
  ballast file so the next write gets ENOSPC, healing deletes the ballast.  The data are copied out to
  n<i>/data-at-end before unmounting, so the run keeps them.
* PacketControl, inside a node's network namespace: *loss* drops a share of inbound packets from eth0 with
  nft `numgen`; *delay* queues inbound eth0 packets to NFQUEUE (iptables, `--queue-bypass`: fail-open) and
  runs jepsen_like/nfq_delay.py there to release them late (tc netem is not in this kernel, §2(c)).
Only PIDs started here are ever signalled; mounts are only the ones made here.
"""

from __future__ import annotations

import errno
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

CLOCK_FILE = "clock-offset-ms"
BALLAST = "jepsen-ballast"


class FaultError(RuntimeError):
    pass


def _run(cmd: list[str]) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=20)
    if proc.returncode != 0:
        raise FaultError(f"{' '.join(cmd)}: {proc.stderr.strip()}")


class ClockControl:
    def __init__(self, node_dirs: dict[str, Path]) -> None:
        self.paths = {name: Path(d) / CLOCK_FILE for name, d in node_dirs.items()}
        self._strobes: dict[str, tuple[threading.Thread, threading.Event]] = {}
        for name in self.paths:
            self.set(name, 0)

    def path(self, node: str) -> Path:
        return self.paths[node]

    def set(self, node: str, offset_ms: int) -> None:
        path = self.paths[node]
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(f"{int(offset_ms)}\n")
        os.replace(tmp, path)    # the broker never reads a half-written number

    def bump(self, node: str, delta_ms: int) -> None:
        self._stop_strobe(node)
        self.set(node, delta_ms)

    def strobe(self, node: str, delta_ms: int, period_ms: int) -> None:
        self._stop_strobe(node)
        stop = threading.Event()

        def flip() -> None:
            high = False
            while not stop.wait(period_ms / 1000.0):
                self.set(node, delta_ms if high else 0)
                high = not high

        self.set(node, delta_ms)    # in force when strobe() returns, as the nemesis records it

        thread = threading.Thread(target=flip, name=f"strobe-{node}", daemon=True)
        self._strobes[node] = (thread, stop)
        thread.start()

    def _stop_strobe(self, node: str) -> None:
        entry = self._strobes.pop(node, None)
        if entry is not None:
            entry[1].set()
            entry[0].join(timeout=5)

    def reset(self, node: str) -> None:
        self._stop_strobe(node)
        self.set(node, 0)

    def heal_all(self) -> None:
        for node in self.paths:
            self.reset(node)


class DiskControl:
    def __init__(self, data_dirs: dict[str, Path], size_mb: int) -> None:
        self.data_dirs = {name: Path(d) for name, d in data_dirs.items()}
        self.size_mb = size_mb
        self.mounted: list[str] = []

    def mount_all(self) -> None:
        for name, path in self.data_dirs.items():
            path.mkdir(parents=True, exist_ok=True)
            _run(["mount", "-t", "tmpfs", "-o", f"size={self.size_mb}m", f"jl-disk-{name}", str(path)])
            self.mounted.append(name)

    def fill(self, node: str) -> int:
        """Fills the node's data dir to the last byte; returns the ballast size."""
        path = self.data_dirs[node] / BALLAST
        stats = os.statvfs(self.data_dirs[node])
        size = stats.f_bavail * stats.f_frsize
        fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
        try:
            while size > 0:
                try:
                    os.posix_fallocate(fd, 0, size)
                    break
                except OSError as exc:
                    if exc.errno != errno.ENOSPC:
                        raise
                    size -= 4096
        finally:
            os.close(fd)
        return size

    def heal(self, node: str) -> None:
        try:
            os.unlink(self.data_dirs[node] / BALLAST)
        except FileNotFoundError:
            pass

    def heal_all(self) -> None:
        for node in self.mounted:
            self.heal(node)

    def unmount_all(self) -> None:
        """Copies each node's data out (n<i>/data-at-end), then unmounts.  Brokers must be stopped."""
        for name in list(self.mounted):
            path = self.data_dirs[name]
            try:
                shutil.copytree(path, path.parent / "data-at-end", dirs_exist_ok=True,
                                ignore=shutil.ignore_patterns(BALLAST))
            except (OSError, shutil.Error):
                pass
            proc = subprocess.run(["umount", str(path)], capture_output=True, text=True, timeout=20)
            if proc.returncode != 0:
                subprocess.run(["umount", "-l", str(path)], capture_output=True, timeout=20)
            self.mounted.remove(name)


class PacketControl:
    """Delay and loss on a node's inbound eth0 traffic (broker peers and clients alike, as netem on the
    node's interface would).  `network` is a netns.Network."""

    def __init__(self, network, run_dir: Path, seed: int) -> None:
        self.network = network
        self.run_dir = Path(run_dir)
        self.seed = seed
        self.lossy: set[str] = set()
        self.delayers: dict[str, subprocess.Popen] = {}
        self.delay_s: dict[str, float] = {}

    @staticmethod
    def unavailable_reason(kind: str) -> str | None:
        if kind == "loss" and shutil.which("nft") is None:
            return "nft is not installed"
        if kind == "delay" and shutil.which("iptables") is None:
            return "iptables (NFQUEUE) is not installed: apt-get install iptables"
        return None

    def start_loss(self, node: str, percent: int) -> None:
        ns = self.network.ns(node)
        match = "" if percent >= 100 else f"numgen random mod 100 < {int(percent)}"
        script = ("table inet jlloss {\n  chain input { type filter hook input priority 1; policy accept;\n"
                  f"    iifname \"eth0\" {match} drop\n  }}\n}}\n")
        self.stop_loss(node)
        proc = subprocess.run(["ip", "netns", "exec", ns, "nft", "-f", "-"], input=script, capture_output=True,
                              text=True, timeout=20)
        if proc.returncode != 0:
            raise FaultError(f"nft loss in {ns}: {proc.stderr.strip()}")
        self.lossy.add(node)

    def stop_loss(self, node: str) -> None:
        if node in self.lossy:
            subprocess.run(["ip", "netns", "exec", self.network.ns(node), "nft", "delete", "table", "inet",
                            "jlloss"], capture_output=True, timeout=20)
            self.lossy.discard(node)

    def start_delay(self, node: str, delay_ms: int, jitter_ms: int) -> None:
        self.stop_delay(node)
        ns = self.network.ns(node)
        queue = 0    # every namespace has its own queues
        log = open(self.run_dir / node / "nfq_delay.log", "ab")
        try:
            proc = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, "-m", "jepsen_like.nfq_delay",
                                     str(queue), str(delay_ms), str(jitter_ms), str(self.seed)],
                                    stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    cwd=str(Path(__file__).resolve().parents[1]))
        finally:
            log.close()
        self.delayers[node] = proc
        self.delay_s[node] = (delay_ms + jitter_ms) / 1000.0
        _run(["ip", "netns", "exec", ns, "iptables", "-w", "-A", "INPUT", "-i", "eth0", "-j", "NFQUEUE",
              "--queue-num", str(queue), "--queue-bypass"])

    def stop_delay(self, node: str) -> None:
        proc = self.delayers.pop(node, None)
        if proc is None:
            return
        subprocess.run(["ip", "netns", "exec", self.network.ns(node), "iptables", "-w", "-F", "INPUT"],
                       capture_output=True, timeout=20)
        # Packets still held would be dropped with the delayer (TCP then waits for a retransmit): let them go.
        time.sleep(self.delay_s.pop(node, 0.0) + 0.05)
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
        proc.wait()

    def heal_all(self) -> None:
        for node in list(self.lossy):
            self.stop_loss(node)
        for node in list(self.delayers):
            self.stop_delay(node)
