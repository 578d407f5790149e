"""Network namespaces for a test run: one per broker, one for the clients, one holding the bridge.

Partitions must cut real packets between real broker processes, as Jepsen's iptables grudges do, without
touching the machine's own network.  So everything lives in namespaces this run creates and deletes: the
bridge sits in its own namespace (nothing is added to the root namespace, no namespace has a default route),
each broker gets `eth0` with 198.18.<net>.<i> (RFC 2544's benchmark range, as the deploy notes use) and the
hostname n<i>, and the harness's client threads enter a client namespace (.254) with `setns()`, which is
per thread on Linux: threads started afterwards, librdkafka's included, inherit it.

A partition is a *grudge* {node: [nodes whose packets it drops]}, applied on the receiving side's INPUT as
Jepsen does (for TCP a one-way drop also stalls the other direction, since its ACKs are lost).  Backends:
`nft` (a named set per namespace, swapped in one transaction) when the binary exists, else `iprule`
(iproute2 only: an `ip rule ... blackhole` per source above the local table; silent, like a DROP).

Names carry the harness's pid (`jl<pid>-...`) so parallel runs never collide; `cleanup_stale()` removes
the namespaces of runs whose process is gone.  The caller tears down in a `finally` and `atexit` does too.
"""

from __future__ import annotations

import atexit
import ctypes
import os
import re
import shutil
import subprocess
from pathlib import Path

CLONE_NEWNET = 0x40000000
CLIENT_SUFFIX = 254
NETNS_ETC = Path("/etc/netns")
_NAME = re.compile(r"^jl(\d+)-")


class NetnsError(RuntimeError):
    pass


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=20)
    if check and proc.returncode != 0:
        raise NetnsError(f"ip {' '.join(args)}: {proc.stderr.strip()}")
    return proc


def unavailable_reason() -> str | None:
    """Why namespaces cannot be used here, or None when they can."""
    if os.geteuid() != 0:
        return "not root"
    if shutil.which("ip") is None:
        return "iproute2 (`ip`) not installed"
    if not Path("/proc/self/ns/net").exists():
        return "no network namespaces in this kernel"
    return None


def pick_backend(requested: str = "auto") -> str:
    if requested == "auto":
        return "nft" if shutil.which("nft") else "iprule"
    if requested == "nft" and shutil.which("nft") is None:
        raise NetnsError("--partition-backend nft: the nft binary is not installed")
    return requested


def _setns(path: str) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(path, os.O_RDONLY)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            raise NetnsError(f"setns({path}): {os.strerror(ctypes.get_errno())}")
    finally:
        os.close(fd)


class Network:
    """Bridge + client + one namespace per node.  `setup()` builds, `teardown()` removes (idempotent)."""

    def __init__(self, nodes: list[str], *, pid: int | None = None, backend: str = "auto") -> None:
        self.pid = pid or os.getpid()
        self.prefix = f"jl{self.pid}"
        self.net = 18 + self.pid % 200   # third octet; any value is isolated anyway (own bridge namespace)
        self.nodes = list(nodes)
        self.backend = pick_backend(backend)
        self.addresses = {name: f"198.18.{self.net}.{i}" for i, name in enumerate(self.nodes, 1)}
        self.client_address = f"198.18.{self.net}.{CLIENT_SUFFIX}"
        self.created: list[str] = []
        self._home_fd: int | None = None
        self.grudge: dict[str, list[str]] = {}

    def ns(self, node: str) -> str:
        return f"{self.prefix}-{node}"

    @property
    def bridge_ns(self) -> str:
        return f"{self.prefix}-br"

    @property
    def client_ns(self) -> str:
        return f"{self.prefix}-c"

    # -- build and remove -----------------------------------------------------------------------------

    def setup(self) -> None:
        atexit.register(self.teardown)
        try:
            self._add_ns(self.bridge_ns)
            _ip("-n", self.bridge_ns, "link", "add", "br0", "type", "bridge")
            _ip("-n", self.bridge_ns, "link", "set", "br0", "up")
            members = [(self.client_ns, self.client_address)]
            members += [(self.ns(n), self.addresses[n]) for n in self.nodes]
            for port, (ns, address) in enumerate(members):
                self._add_ns(ns)
                _ip("link", "add", f"{self.prefix}v{port}", "netns", ns, "type", "veth",
                    "peer", "name", f"p{port}", "netns", self.bridge_ns)
                _ip("-n", self.bridge_ns, "link", "set", f"p{port}", "master", "br0", "up")
                _ip("-n", ns, "link", "set", f"{self.prefix}v{port}", "name", "eth0")
                _ip("-n", ns, "addr", "add", f"{address}/24", "dev", "eth0")
                _ip("-n", ns, "link", "set", "eth0", "up")
                _ip("-n", ns, "link", "set", "lo", "up")
                self._write_hosts(ns)
            for node in self.nodes:
                self._prepare_filter(node)
        except BaseException:
            self.teardown()
            raise

    def _add_ns(self, ns: str) -> None:
        _ip("netns", "add", ns)
        self.created.append(ns)

    def _write_hosts(self, ns: str) -> None:
        """`ip netns exec` bind-mounts /etc/netns/<ns>/hosts over /etc/hosts: n1..nN resolve inside."""
        directory = NETNS_ETC / ns
        directory.mkdir(parents=True, exist_ok=True)
        lines = ["127.0.0.1 localhost"] + [f"{a} {n}" for n, a in self.addresses.items()]
        (directory / "hosts").write_text("\n".join(lines) + "\n")

    def teardown(self) -> None:
        self.leave_client_ns()
        for ns in reversed(self.created):
            _ip("netns", "del", ns, check=False)
            shutil.rmtree(NETNS_ETC / ns, ignore_errors=True)
        self.created = []
        try:
            NETNS_ETC.rmdir()     # only if no one else keeps files there
        except OSError:
            pass
        atexit.unregister(self.teardown)

    # -- the client namespace (this process's threads) ---------------------------------------------------

    def enter_client_ns(self) -> None:
        """Moves the calling thread (and every thread it starts later) into the client namespace."""
        if self._home_fd is None:
            self._home_fd = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
        _setns(f"/run/netns/{self.client_ns}")

    def leave_client_ns(self) -> None:
        if self._home_fd is None:
            return
        libc = ctypes.CDLL(None, use_errno=True)
        libc.setns(self._home_fd, CLONE_NEWNET)
        os.close(self._home_fd)
        self._home_fd = None

    def exec_prefix(self, node: str) -> list[str]:
        """Command prefix that runs a program in the node's namespace with hostname = node name.
        `unshare` without --fork and `sh -c exec` keep one PID, so signals reach the broker itself."""
        return ["ip", "netns", "exec", self.ns(node), "unshare", "--uts", "--",
                "sh", "-c", 'hostname "$0" && exec "$@"', node]

    # -- partitions --------------------------------------------------------------------------------------

    def _prepare_filter(self, node: str) -> None:
        ns = self.ns(node)
        if self.backend == "nft":
            self._nft(ns, "table inet jl {\n  set blocked { type ipv4_addr; }\n"
                          "  chain input { type filter hook input priority 0; policy accept;\n"
                          "    ip saddr @blocked drop\n  }\n}\n")
        else:
            # The local table must come after our blackhole rules or it would accept first.
            _ip("-n", ns, "rule", "add", "pref", "200", "lookup", "local")
            _ip("-n", ns, "rule", "del", "pref", "0")

    def _nft(self, ns: str, script: str) -> None:
        proc = subprocess.run(["ip", "netns", "exec", ns, "nft", "-f", "-"], input=script,
                              capture_output=True, text=True, timeout=20)
        if proc.returncode != 0:
            raise NetnsError(f"nft in {ns}: {proc.stderr.strip()}")

    def apply_grudge(self, grudge: dict[str, list[str]]) -> None:
        """Replaces the current partition: node drops every packet whose source is in grudge[node]."""
        for node in self.nodes:
            sources = [self.addresses[s] for s in grudge.get(node, []) if s != node]
            ns = self.ns(node)
            if self.backend == "nft":
                elements = f"add element inet jl blocked {{ {', '.join(sources)} }}\n" if sources else ""
                self._nft(ns, "flush set inet jl blocked\n" + elements)
            else:
                for address in [self.addresses[s] for s in self.grudge.get(node, []) if s != node]:
                    _ip("-n", ns, "rule", "del", "from", address, "iif", "eth0", "blackhole", "pref", "100",
                        check=False)
                for address in sources:
                    _ip("-n", ns, "rule", "add", "from", address, "iif", "eth0", "blackhole", "pref", "100")
        self.grudge = {n: list(v) for n, v in grudge.items() if v}

    def heal(self) -> None:
        self.apply_grudge({})


def cleanup_stale() -> list[str]:
    """Deletes jl<pid>-* namespaces (and their /etc/netns files) whose harness process no longer exists."""
    proc = _ip("netns", "list", check=False)
    removed = []
    for line in proc.stdout.splitlines():
        name = line.split()[0] if line.strip() else ""
        match = _NAME.match(name)
        if not match or Path(f"/proc/{match.group(1)}").exists():
            continue
        _ip("netns", "del", name, check=False)
        shutil.rmtree(NETNS_ETC / name, ignore_errors=True)
        removed.append(name)
    return removed
