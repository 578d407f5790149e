"""A fixed CPU quota per broker process, so that one small VM can stand in for "each broker on its own machine".

On a 2-core VM, three brokers and the client share the same cores: a 3-node cluster gets no more CPU than a
single node, and comparing the two measures CPU contention rather than replication.  ``CpuEnvelope`` gives
every node its own CPU cgroup with the same quota (e.g. 0.5 CPU), so the single-node reference gets 0.5 CPU
and a 3-node cluster 3 x 0.5: the throughput ratio then says what it says on real hardware.

cgroup v1 (a ``cpu`` hierarchy with ``cpu.cfs_quota_us``) is preferred; a pure cgroup v2 mount (``cpu.max``)
is used otherwise.  One group per node id, named ``kraftpy-bench-<harness pid>-n<node>``; a process is moved
in by writing its PID to ``cgroup.procs`` (all its threads move; threads it creates later inherit the
group), and ``/proc/<pid>/cgroup`` is checked afterwards.  When no cpu cgroup can be created, the constructor
raises ``EnvelopeError`` saying why: a benchmark asked for an envelope must not run without one.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import time
from pathlib import Path

V1_ROOT = Path("/sys/fs/cgroup/cpu")
V2_ROOT = Path("/sys/fs/cgroup")
PERIOD_US = 100_000
MIN_QUOTA_US = 1_000                 # the kernel refuses a CFS quota below 1 ms
GROUP_PREFIX = "kraftpy-bench-"
RMDIR_WAIT_S = 3.0                   # a just-killed process may still be listed while it exits


class EnvelopeError(RuntimeError):
    """No CPU envelope could be made (no cpu controller, not allowed, ...); the message says why."""


def _write(path: Path, text: str) -> None:
    with open(path, "w", encoding="ascii") as handle:
        handle.write(text)


def _who() -> str:
    return "running as root" if os.geteuid() == 0 else f"not root (uid {os.geteuid()})"


def detect_root() -> tuple[Path, str]:
    """(hierarchy root, "v1" or "v2") of the machine's cpu controller; EnvelopeError when there is none."""
    for root in (V1_ROOT, V2_ROOT):
        with contextlib.suppress(EnvelopeError):
            return root, _kind_of(root)
    raise EnvelopeError(f"no cpu cgroup controller: neither {V1_ROOT}/cpu.cfs_quota_us (cgroup v1) nor "
                        f"{V2_ROOT}/cgroup.controllers (cgroup v2) exists")


def _own_v1_group() -> str:
    """This process's cpu group relative to the v1 mount ("" at the top): brokers' groups nest inside it, so
    any limit already put on the harness still applies to them."""
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _hid, controllers, where = line.split(":", 2)
        if "cpu" in controllers.split(","):
            return where.lstrip("/")
    return ""


def _kind_of(root: Path) -> str:
    if (root / "cpu.cfs_quota_us").exists():
        return "v1"
    if (root / "cgroup.controllers").exists():
        return "v2"
    if not root.is_dir():
        raise EnvelopeError(f"cgroup root {root} does not exist")
    raise EnvelopeError(f"{root} is not a cpu cgroup hierarchy (no cpu.cfs_quota_us, no cgroup.controllers)")


class CpuEnvelope:
    """One cpu cgroup per node id, each limited to ``cpus`` CPUs; ``close()`` removes them all.

    Use as a context manager (or call ``close()`` in a ``finally``): the groups go away on failure and on
    KeyboardInterrupt too.  Groups are made for ``node_ids`` at once, so a refusal surfaces before any
    broker starts; another id gets its group on first ``add``."""

    def __init__(self, cpus: float, node_ids=(), *, root: Path | None = None, verify: bool = True) -> None:
        if not cpus > 0:
            raise EnvelopeError(f"CPU quota must be positive, got {cpus}")
        self.cpus = cpus
        self.root, self.kind = detect_root() if root is None else (Path(root), _kind_of(Path(root)))
        self.base = self.root / _own_v1_group() if root is None and self.kind == "v1" else self.root
        self.quota_us = max(MIN_QUOTA_US, round(cpus * PERIOD_US))
        self.verify = verify
        self.prefix = f"{GROUP_PREFIX}{os.getpid()}-n"
        self.groups: dict[int, Path] = {}
        if self.kind == "v2":
            self._enable_v2_cpu()
        self._remove_stale()
        try:
            for node_id in node_ids:
                self.group(node_id)
        except BaseException:
            self.close()
            raise

    # -- groups -------------------------------------------------------------------------------------------------
    def describe(self) -> str:
        knob = "cpu.cfs_quota_us" if self.kind == "v1" else "cpu.max"
        return f"each broker limited to {self.cpus:g} CPU (cgroup {self.kind} {knob})"

    def group(self, node_id: int) -> Path:
        """The node's group, made (with its quota) on first use."""
        path = self.groups.get(node_id)
        if path is not None:
            return path
        path = self.base / f"{self.prefix}{node_id}"
        try:
            path.mkdir(exist_ok=True)
        except OSError as exc:
            raise EnvelopeError(f"cannot create cgroup {path}: {exc.strerror} ({_who()})") from exc
        self.groups[node_id] = path
        try:
            if self.kind == "v1":
                _write(path / "cpu.cfs_period_us", str(PERIOD_US))
                _write(path / "cpu.cfs_quota_us", str(self.quota_us))
            else:
                _write(path / "cpu.max", f"{self.quota_us} {PERIOD_US}")
        except OSError as exc:
            raise EnvelopeError(f"cannot set the CPU quota of {path}: {exc.strerror} ({_who()})") from exc
        return path

    def add(self, node_id: int, pid: int) -> None:
        """Moves process ``pid`` (every thread) into the node's group; EnvelopeError if it did not land."""
        path = self.group(node_id)
        try:
            _write(path / "cgroup.procs", str(pid))
        except ProcessLookupError:
            return                                      # exited already: nothing left to limit
        except OSError as exc:
            raise EnvelopeError(f"cannot move pid {pid} into {path}: {exc.strerror} ({_who()})") from exc
        if self.verify and not self.contains(node_id, pid):
            raise EnvelopeError(f"pid {pid} is not in {path} after writing it to cgroup.procs")

    def contains(self, node_id: int, pid: int) -> bool:
        """Whether /proc/<pid>/cgroup places ``pid`` in the node's group (False once it has exited)."""
        relative = "/" + str(self.group(node_id).relative_to(self.root))
        try:
            lines = Path(f"/proc/{pid}/cgroup").read_text().splitlines()
        except OSError:
            return False
        for line in lines:
            _hid, controllers, where = line.split(":", 2)
            wanted = (self.kind == "v2" and controllers == "") or (self.kind == "v1"
                                                                    and "cpu" in controllers.split(","))
            if wanted:
                return where == relative
        return False

    # -- throttling -----------------------------------------------------------------------------------------------
    def stat(self, node_id: int) -> dict[str, float]:
        """Cumulative (nr_periods, nr_throttled, throttled_ms) of the node's group."""
        values = {}
        for line in (self.group(node_id) / "cpu.stat").read_text().splitlines():
            key, _, value = line.partition(" ")
            values[key] = int(value)
        throttled_ms = (values.get("throttled_time", 0) / 1e6 if self.kind == "v1"
                        else values.get("throttled_usec", 0) / 1e3)
        return {"nr_periods": values.get("nr_periods", 0), "nr_throttled": values.get("nr_throttled", 0),
                "throttled_ms": throttled_ms}

    def snapshot(self) -> dict[int, dict[str, float]]:
        return {node_id: self.stat(node_id) for node_id in self.groups}

    @staticmethod
    def throttling_since(before: dict, after: dict) -> dict[int, dict]:
        """Per node: periods, throttled periods (and their share) and throttled ms between two snapshots."""
        delta = {}
        for node_id, now in after.items():
            then = before.get(node_id, {"nr_periods": 0, "nr_throttled": 0, "throttled_ms": 0.0})
            periods = now["nr_periods"] - then["nr_periods"]
            throttled = now["nr_throttled"] - then["nr_throttled"]
            delta[node_id] = {"nr_periods": periods, "nr_throttled": throttled,
                              "throttled_pct": round(100 * throttled / periods, 1) if periods else 0.0,
                              "throttled_ms": round(now["throttled_ms"] - then["throttled_ms"], 1)}
        return delta

    # -- cleanup --------------------------------------------------------------------------------------------------
    def close(self) -> list[str]:
        """Removes every group (moving any process still inside back to the parent first); the leftovers."""
        leftovers = []
        for node_id, path in list(self.groups.items()):
            if self._remove(path):
                del self.groups[node_id]
            else:
                leftovers.append(str(path))
        return leftovers

    def __enter__(self) -> CpuEnvelope:
        return self

    def __exit__(self, *_exc) -> None:
        self.close()

    def _remove(self, path: Path) -> bool:
        deadline = time.monotonic() + RMDIR_WAIT_S
        while True:
            self._evict(path)
            try:
                path.rmdir()
                return True
            except FileNotFoundError:
                return True
            except OSError as exc:
                if exc.errno != errno.EBUSY or time.monotonic() > deadline:
                    return False
            time.sleep(0.05)

    def _evict(self, path: Path) -> None:
        """Moves the processes still in ``path`` back to the parent group, so the group can be removed."""
        with contextlib.suppress(OSError):
            for pid in (path / "cgroup.procs").read_text().split():
                with contextlib.suppress(OSError):
                    _write(self.base / "cgroup.procs", pid)

    def _remove_stale(self) -> None:
        """Removes groups left by an earlier harness that was killed (its pid is gone) before its cleanup."""
        pattern = re.compile(re.escape(GROUP_PREFIX) + r"(\d+)-n\d+$")
        with contextlib.suppress(OSError):
            for entry in self.base.iterdir():
                match = pattern.match(entry.name)
                if match and entry.is_dir() and not Path(f"/proc/{match.group(1)}").exists():
                    with contextlib.suppress(OSError):
                        entry.rmdir()

    def _enable_v2_cpu(self) -> None:
        """cgroup v2: the cpu controller must be in the root's subtree_control for its children to get cpu.max."""
        available = (self.root / "cgroup.controllers").read_text().split()
        if "cpu" not in available:
            raise EnvelopeError(f"cgroup v2 at {self.root}: the cpu controller is not available there "
                                f"(cgroup.controllers: {' '.join(available) or 'empty'})")
        if "cpu" in (self.root / "cgroup.subtree_control").read_text().split():
            return
        try:
            _write(self.root / "cgroup.subtree_control", "+cpu")
        except OSError as exc:
            reason = ("processes live directly in it and cgroup v2 allows controllers only for groups without "
                      "member processes (the 'no internal processes' rule)" if exc.errno == errno.EBUSY
                      else exc.strerror)
            raise EnvelopeError(f"cgroup v2 at {self.root}: cannot enable the cpu controller for child groups: "
                                f"{reason} ({_who()})") from exc
