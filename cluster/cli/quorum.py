"""``kraftpy cluster describe-quorum`` and ``kraftpy cluster status``: a look at a running cluster.

``cluster describe-quorum`` asks a broker (DescribeConfigs) for ``controller.quorum.voters`` unless
``--bootstrap-controller`` names one, then asks the voters over gRPC for the leader's view of the quorum, following
the leader a follower names and asking again while a new leader is elected (``--timeout-s``).

``cluster status`` is the one-glance health check an operator (or a script) runs: the live brokers, the active
controller (the metadata quorum leader) and every partition that is under-replicated (ISR smaller than its
replica set) or offline (no leader), all from one Metadata request.  It exits 0 when healthy, 1 when any
partition is under-replicated or offline, 2 when the cluster cannot be reached.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time


async def _voters_from_broker(bootstrap: str) -> str:
    from cluster.client import KafkaClient
    async with KafkaClient(bootstrap, client_id="kraftpy-describe-quorum") as client:
        configs = await client.describe_configs([(4, "")], keys=["controller.quorum.voters"])
    for entries in configs.values():
        for entry in entries:
            if entry.name == "controller.quorum.voters" and entry.value:
                return entry.value
    raise RuntimeError(f"{bootstrap} is not in cluster mode (controller.quorum.voters is empty)")


DESCRIBE_QUORUM_TIMEOUT_S = 10.0
VOTER_CALL_TIMEOUT_S = 1.0
RETRY_BACKOFF_S = 0.1


def _voter_addresses(voters: str) -> list[tuple[int, str]]:
    """(id, host:port) of each entry of ``controller.quorum.voters`` (id 0 when the caller named no id)."""
    entries = []
    for item in voters.split(","):
        if "@" in item:
            node_id, address = item.strip().split("@", 1)
            entries.append((int(node_id), address))
    return entries


async def describe_quorum(voters: str, timeout_s: float = DESCRIBE_QUORUM_TIMEOUT_S) -> dict:
    """The leader's quorum view.  Asks the voters in turn; a follower's NOT_CONTROLLER reply names the leader it
    knows, which is asked next.  Right after a controller change the followers may still name the old leader, or
    none while they elect: the voters are asked again until ``timeout_s`` has passed."""
    import grpc

    from cluster.transport.controller_grpc import ControllerClient
    entries = _voter_addresses(voters)
    by_id = {node_id: address for node_id, address in entries if node_id > 0}
    deadline = time.monotonic() + timeout_s
    last_error = "no voter answered"
    hint: int | None = None
    followed: set[int] = set()   # hints followed since the last round: stale followers must not ping-pong us
    turn = 0
    while time.monotonic() < deadline:
        if hint in by_id:
            address, hint = by_id[hint], None
        else:
            address = entries[turn % len(entries)][1]
            turn += 1
        async with grpc.aio.insecure_channel(address) as channel:
            try:
                reply = await ControllerClient(channel).call(
                    "describe_quorum", {}, cluster_id=None, source_id=None,
                    timeout_s=max(0.05, min(VOTER_CALL_TIMEOUT_S, deadline - time.monotonic())))
            except grpc.aio.AioRpcError as exc:
                reply, last_error = None, f"{address}: {exc.code()}"
        if reply is not None and reply.error_code == 0:
            return reply.result
        if reply is not None:
            last_error = f"{address}: {reply.error_message}"
            if reply.leader_id not in followed and by_id.get(reply.leader_id) not in (None, address):
                hint = reply.leader_id   # follow it at once
                followed.add(hint)
                continue
        if turn % len(entries) == 0:
            followed.clear()
            await asyncio.sleep(RETRY_BACKOFF_S)   # every voter asked: let the election go on
    raise RuntimeError(f"no active controller answered within {timeout_s:.0f} s (last: {last_error})")


def format_quorum(info: dict) -> str:
    high_watermark = info["high_watermark"]
    lines = [f"LeaderId:       {info['leader_id']}", f"LeaderEpoch:    {info['leader_epoch']}",
             f"HighWatermark:  {high_watermark}", "", f"{'NodeId':<8}{'LogEndOffset':>14}{'Lag':>8}  Status"]
    for replica_id, log_end_offset, _last_fetch_ms in sorted(info["voters"]):
        status = "Leader" if replica_id == info["leader_id"] else "Follower"
        lines.append(f"{replica_id:<8}{log_end_offset:>14}{max(high_watermark - log_end_offset, 0):>8}  {status}")
    for replica_id, log_end_offset, _last_fetch_ms in sorted(info["observers"]):
        lines.append(f"{replica_id:<8}{log_end_offset:>14}{max(high_watermark - log_end_offset, 0):>8}  Observer")
    return "\n".join(lines)


def cmd_describe_quorum(args: argparse.Namespace) -> int:
    async def run() -> dict:
        voters = args.bootstrap_controller
        if voters and "@" not in voters:
            voters = ",".join(f"0@{address}" for address in voters.split(","))
        if not voters:
            voters = await _voters_from_broker(args.bootstrap_server)
        return await describe_quorum(voters, args.timeout_s)

    try:
        info = asyncio.run(run())
    except Exception as exc:  # noqa: BLE001 -- one line naming the cause
        print(f"kraftpy: describe-quorum failed: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(info) if args.json else format_quorum(info))
    return 0


# -- cluster status -------------------------------------------------------------------------------------------------
EXIT_HEALTHY, EXIT_UNHEALTHY, EXIT_UNREACHABLE = 0, 1, 2


def partition_problems(metadata) -> list[dict]:
    """Every partition of ``metadata`` (a ``ClusterMetadata``) that is offline or under-replicated."""
    problems = []
    for name in sorted(metadata.topics):
        topic = metadata.topics[name]
        for index in sorted(topic.partitions):
            partition = topic.partitions[index]
            if partition.leader_id < 0:
                state = "offline"
            elif len(partition.isr_nodes) < len(partition.replica_nodes):
                state = "under-replicated"
            else:
                continue
            problems.append({"topic": name, "partition": index, "state": state, "leader": partition.leader_id,
                             "replicas": list(partition.replica_nodes), "isr": list(partition.isr_nodes)})
    return problems


async def cluster_status(bootstrap: str, timeout_s: float = 10.0) -> dict:
    """Brokers, active controller and unhealthy partitions, as a JSON-able dict."""
    from cluster.client import KafkaClient
    async with KafkaClient(bootstrap, client_id="kraftpy-cluster-status") as client:
        metadata = await asyncio.wait_for(client.metadata(None), timeout_s)
    problems = partition_problems(metadata)
    return {
        "cluster_id": metadata.cluster_id,
        "controller_id": metadata.controller_id,
        "brokers": [{"id": b.node_id, "host": b.host, "port": b.port, "rack": b.rack}
                    for b in sorted(metadata.brokers.values(), key=lambda b: b.node_id)],
        "topics": len(metadata.topics),
        "partitions": sum(len(t.partitions) for t in metadata.topics.values()),
        "under_replicated": [p for p in problems if p["state"] == "under-replicated"],
        "offline": [p for p in problems if p["state"] == "offline"],
    }


def format_status(status: dict) -> str:
    controller = status["controller_id"]
    lines = [f"ClusterId:   {status['cluster_id']}",
             f"Controller:  {controller if controller >= 0 else 'none (no metadata quorum leader)'}",
             "", f"{'BrokerId':<10}{'Address':<32}Rack"]
    for broker in status["brokers"]:
        lines.append(f"{broker['id']:<10}{broker['host'] + ':' + str(broker['port']):<32}{broker['rack'] or '-'}")
    problems = status["offline"] + status["under_replicated"]
    lines += ["", f"Partitions:  {status['partitions']} in {status['topics']} topics, "
                  f"{len(status['under_replicated'])} under-replicated, {len(status['offline'])} offline"]
    if problems:
        lines.append(f"{'Topic':<32}{'Partition':>10}  {'State':<18}{'Leader':>7}  Replicas  Isr")
        for p in problems:
            lines.append(f"{p['topic']:<32}{p['partition']:>10}  {p['state']:<18}{p['leader']:>7}  "
                         f"{','.join(map(str, p['replicas'])):<9} {','.join(map(str, p['isr']))}")
    lines.append("")
    lines.append("Status:      " + ("UNHEALTHY" if problems else "HEALTHY"))
    return "\n".join(lines)


def cmd_cluster_status(args: argparse.Namespace) -> int:
    try:
        status = asyncio.run(cluster_status(args.bootstrap_server, args.timeout_s))
    except Exception as exc:  # noqa: BLE001 -- one line naming the cause
        print(f"kraftpy: cluster status failed: {exc or type(exc).__name__}", file=sys.stderr)
        return EXIT_UNREACHABLE
    print(json.dumps(status) if args.json else format_status(status))
    return EXIT_UNHEALTHY if status["offline"] or status["under_replicated"] else EXIT_HEALTHY




def add_commands(subparsers) -> None:
    cluster = subparsers.add_parser("cluster", help="inspect the cluster's metadata quorum")
    actions = cluster.add_subparsers(dest="cluster_command", required=True, metavar="ACTION")
    describe = actions.add_parser("describe-quorum", help="leader, epoch, high watermark and each voter's lag")
    describe.add_argument("--bootstrap-server", default="127.0.0.1:19092")
    describe.add_argument("--bootstrap-controller", help="host:port of a voter (skips asking a broker)")
    describe.add_argument("--timeout-s", type=float, default=DESCRIBE_QUORUM_TIMEOUT_S,
                          help="how long to look for the active controller (it may be changing)")
    describe.add_argument("--json", action="store_true")
    describe.set_defaults(func=cmd_describe_quorum)
    status = actions.add_parser("status", help="brokers, active controller, under-replicated and offline "
                                "partitions (exit 1 when any)")
    status.add_argument("--bootstrap-server", default="127.0.0.1:19092")
    status.add_argument("--timeout-s", type=float, default=10.0)
    status.add_argument("--json", action="store_true")
    status.set_defaults(func=cmd_cluster_status)
