"""The ``kraftpy`` command line: run a broker, administer topics, produce and consume.

Subcommands that talk to a cluster use Kafka's own protocol through ``cluster.client`` (our small client),
so they work against any Kafka-compatible broker.  Errors exit non-zero with one line that names the cause
(a config key, an unreachable address, a Kafka error code).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

from cluster import local_cluster, tools_cli
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kraftpy", description="A Kafka-compatible event-streaming cluster.")
    commands = parser.add_subparsers(dest="command", required=True)

    broker = commands.add_parser("broker", help="run one broker")
    broker.add_argument("--config", help="server.properties file (Kafka's keys)")
    broker.add_argument("--override", action="append", metavar="KEY=VALUE", help="override a config key")
    broker.add_argument("--log-level", default=None, metavar="SPEC",
                        help="a level (INFO) or levels per module: cluster.raft=DEBUG,root=INFO "
                             "(default: config key logging.level, INFO)")
    broker.add_argument("--log-format", choices=LOG_FORMATS, default=None,
                        help="text, or json: one JSON object per line (default: config key logging.format, text)")
    broker.set_defaults(func=cmd_broker)

    tools_cli.add_commands(commands)
    local_cluster.add_commands(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)
