"""``kraftpy broker`` and ``kraftpy local-cluster``: the commands that start nodes.

``broker`` reads a server.properties file (Kafka's keys; ``--override`` wins) and runs one node on uvloop
where available; a bad config exits 2 with a line naming the key.

``local-cluster --nodes N`` formats ``<data-dir>/node-<id>`` (default ``./data/cluster``, apart from the
single broker's ``./data/node-1``) with one fresh cluster id (Kafka's
``kafka-storage format``; a directory formatted before keeps its id), starts N broker processes on loopback
(Kafka ports ``base-port + i``, controller/gRPC ports ``base-port + 100 + i``; every node is a voter), prints
the bootstrap servers and waits.  Ctrl-C or SIGTERM is forwarded to every node as SIGTERM, and the command
exits once all have stopped (SIGKILL after ``--stop-timeout-s``); a second one is forwarded too, so the nodes
skip the rest of their graceful shutdown.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import subprocess
import sys
import time
import uuid

from cluster.config import BrokerConfig, ConfigError, parse_overrides, read_properties_file
from cluster.observability.logs import LOG_FORMATS, configure_logging


def _configure_logging(level_spec: str, log_format: str = "text") -> None:
    """One line per event on stderr (JSON with ``--log-format json``); ``level_spec`` may set levels per
    module: ``cluster.raft=DEBUG,root=INFO``."""
    configure_logging(level_spec, log_format, stream=sys.stderr)


def _run_event_loop(coroutine) -> None:
    try:
        import uvloop
    except ImportError:  # uvloop is optional (not on Windows); asyncio's loop works too
        asyncio.run(coroutine)
        return
    uvloop.run(coroutine)


def cmd_broker(args: argparse.Namespace) -> int:
    from cluster.broker.allocator import tune_allocator
    from cluster.broker.app import run_broker

    try:
        properties = read_properties_file(args.config) if args.config else {}
        config = BrokerConfig.from_sources(properties, overrides=parse_overrides(args.override or []))
    except ConfigError as exc:
        print(f"kraftpy: configuration error: {exc}", file=sys.stderr)
        return 2
    try:
        # The flags win over the config keys logging.level / logging.format (and their KRAFTPY_* variables).
        _configure_logging(args.log_level or config.get("logging.level"),
                           args.log_format or config.get("logging.format"))
    except ValueError as exc:
        print(f"kraftpy: configuration error: {exc}", file=sys.stderr)
        return 2
    tune_allocator()
    try:
        _run_event_loop(run_broker(config))
    except OSError as exc:
        logging.getLogger("cluster").critical("broker failed: %s", exc)
        return 1
    return 0



# -- local-cluster -----------------------------------------------------------------------------------
DEFAULT_BASE_PORT = 19092
CONTROLLER_PORT_OFFSET = 100


def node_ports(base_port: int, nodes: int) -> list[tuple[int, int, int]]:
    """(node_id, kafka_port, controller_port) of each node."""
    return [(i + 1, base_port + i, base_port + CONTROLLER_PORT_OFFSET + i) for i in range(nodes)]


def voters_string(host: str, base_port: int, nodes: int) -> str:
    return ",".join(f"{node_id}@{host}:{cport}" for node_id, _kport, cport in node_ports(base_port, nodes))


def node_properties(node_id: int, host: str, kafka_port: int, voters: str, log_dir: str,
                    metrics_listener: str = "") -> dict[str, str]:
    return {
        "node.id": str(node_id),
        "process.roles": "broker,controller",
        "controller.quorum.voters": voters,
        "listeners": f"PLAINTEXT://{host}:{kafka_port}",
        "advertised.listeners": f"PLAINTEXT://{host}:{kafka_port}",
        "log.dirs": log_dir,
        "metrics.listener": metrics_listener,
    }


def existing_cluster_id(data_dir: str, nodes: int) -> str | None:
    from cluster.storage.meta_properties import read_meta_properties
    for node_id in range(1, nodes + 1):
        try:
            properties = read_meta_properties(os.path.join(data_dir, f"node-{node_id}"), node_id)
        except Exception:  # noqa: BLE001 -- unreadable: look at the next one
            continue
        if properties is not None:
            return properties.cluster_id
    return None


def cmd_local_cluster(args: argparse.Namespace) -> int:
    from cluster.storage.meta_properties import write_meta_properties

    data_dir = os.path.abspath(args.data_dir)
    cluster_id = existing_cluster_id(data_dir, args.nodes) or uuid.uuid4().hex[:22]
    voters = voters_string(args.host, args.base_port, args.nodes)
    processes: list[subprocess.Popen] = []
    for node_id, kafka_port, _cport in node_ports(args.base_port, args.nodes):
        node_dir = os.path.join(data_dir, f"node-{node_id}")
        write_meta_properties(node_dir, cluster_id, node_id)
        properties = node_properties(node_id, args.host, kafka_port, voters, node_dir)
        config_path = os.path.join(data_dir, f"node-{node_id}.properties")
        with open(config_path, "w", encoding="utf-8") as handle:
            handle.write("".join(f"{k}={v}\n" for k, v in properties.items()))
        log_path = os.path.join(data_dir, f"node-{node_id}.log")
        command = [sys.executable, "-m", "cluster", "broker", "--config", config_path, "--log-level", args.log_level]
        for item in args.override or []:
            command += ["--override", item]
        with open(log_path, "ab") as log_file:
            processes.append(subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT,
                                              start_new_session=True))
    bootstrap = ",".join(f"{args.host}:{kport}" for _n, kport, _c in node_ports(args.base_port, args.nodes))
    print(f"cluster id {cluster_id}: {args.nodes} nodes, logs in {data_dir}/node-N.log")
    print(f"controller quorum voters: {voters}")
    print(f"bootstrap servers: {bootstrap}")
    for node_id, process in enumerate(processes, 1):
        print(f"node {node_id}: pid {process.pid}")
    sys.stdout.flush()

    stopping = False

    def on_signal(_signum, _frame) -> None:
        nonlocal stopping
        if stopping:   # a second Ctrl-C: the nodes (in sessions of their own) get a second SIGTERM and exit at once
            _signal_running(processes)
        stopping = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    while not stopping and all(p.poll() is None for p in processes):
        time.sleep(0.2)
    if not stopping:
        print("a node exited; stopping the others", file=sys.stderr)
    _signal_running(processes)
    deadline = time.monotonic() + args.stop_timeout_s
    for process in processes:
        try:
            process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    print("all nodes stopped", flush=True)
    return 0 if stopping else 1


def _signal_running(processes: list[subprocess.Popen]) -> None:
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)



def add_broker(commands) -> None:
    broker = commands.add_parser("broker", help="run one broker")
    broker.add_argument("--config", help="server.properties file (Kafka's keys)")
    broker.add_argument("--override", action="append", metavar="KEY=VALUE", help="override a config key")
    broker.add_argument("--log-level", default=None, metavar="SPEC",
                        help="a level (INFO) or levels per module: cluster.raft=DEBUG,root=INFO "
                             "(default: config key logging.level, INFO)")
    broker.add_argument("--log-format", choices=LOG_FORMATS, default=None,
                        help="text, or json: one JSON object per line (default: config key logging.format, text)")
    broker.set_defaults(func=cmd_broker)


def add_local_cluster(subparsers) -> None:
    local = subparsers.add_parser("local-cluster", help="run an N-node cluster on loopback (Ctrl-C stops it)")
    local.add_argument("--nodes", type=int, default=3)
    local.add_argument("--base-port", type=int, default=DEFAULT_BASE_PORT,
                       help="Kafka port of node 1 (node N: base+N-1; controller ports base+100+N-1)")
    local.add_argument("--host", default="127.0.0.1")
    # Not ./data itself: ./data/node-1 is the single broker's directory (config/server.properties).
    local.add_argument("--data-dir", default="./data/cluster")
    local.add_argument("--override", action="append", metavar="KEY=VALUE", help="config override for every node")
    local.add_argument("--log-level", default="INFO")
    local.add_argument("--stop-timeout-s", type=float, default=30.0)
    local.set_defaults(func=cmd_local_cluster)
