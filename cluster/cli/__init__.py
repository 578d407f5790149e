"""The ``kraftpy`` command line: run a broker or a local cluster, administer topics and groups, produce,
consume, measure, and look at the quorum.

One module per command group (``broker``: broker and local-cluster; ``topics`` and ``reassign``;
``console``: produce and consume; ``groups``; ``perf``; ``quorum``: cluster describe-quorum and status), each
adding its subcommands to the parser built here.  Subcommands that talk to a cluster use Kafka's own protocol
through ``cluster.client`` (our small client), so they work against any Kafka-compatible broker.  Errors exit
non-zero with one line that names the cause (a config key, an unreachable address, a Kafka error code).
``main`` is the console script's entry point (pyproject) and ``python -m cluster``'s.
"""

from __future__ import annotations

import argparse

from cluster.cli import broker, console, groups, perf, quorum, topics
from cluster.cli.common import common_options

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kraftpy", description="A Kafka-compatible event-streaming cluster.")
    commands = parser.add_subparsers(dest="command", required=True)
    broker.add_broker(commands)
    common = common_options()  # --bootstrap-server and the client timeouts, shared by the console commands
    topics.add_commands(commands, common)
    console.add_produce(commands, common)
    console.add_consume(commands, common)
    groups.add_commands(commands, common)
    perf.add_commands(commands, common)
    broker.add_local_cluster(commands)
    quorum.add_commands(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)
