"""``kraftpy topics create|list|describe|alter|delete``: what kafka-topics.sh does, through Kafka's protocol.

``describe`` prints kafka-topics.sh's layout plus each partition's leader epoch; the ``reassign`` and
``elect-leaders`` actions live in ``cluster.cli.reassign``.
"""

from __future__ import annotations

import argparse

from cluster.cli.common import (
    EXIT_OK,
    join_ids,
    kafka_client,
    positive_int,
    run_command,
)
from cluster.cli.reassign import add_reassign_actions
from cluster.client import (
    ConfigSource,
    ResourceType,
)
from cluster.client.errors import error_from_code


def _config_pair(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"{text!r} is not of the form key=value")
    return name, value


async def _topics_create(args: argparse.Namespace) -> int:
    configs = dict(args.config or [])
    async with kafka_client(args) as client:
        created = await client.create_topic(args.name, args.partitions, args.replication_factor, configs)
    detail = ""
    if created.num_partitions > 0:
        detail = f" ({created.num_partitions} partitions, replication factor {created.replication_factor})"
    print(f"Created topic {created.name}.{detail}")
    return EXIT_OK


async def _topics_list(args: argparse.Namespace) -> int:
    async with kafka_client(args) as client:
        metadata = await client.metadata(None)
    for name in sorted(name for name, topic in metadata.topics.items() if not topic.error_code):
        print(name)
    return EXIT_OK


async def _topics_describe(args: argparse.Namespace) -> int:
    async with kafka_client(args) as client:
        metadata = await client.metadata(None if args.name is None else [args.name])
        topics = sorted(metadata.topics.values(), key=lambda t: t.name)
        for topic in topics:
            if topic.error_code:
                raise error_from_code(topic.error_code, None, api="Metadata", resource=f"topic '{topic.name}'")
        configs = {}
        if topics:
            results = await client.describe_configs([(ResourceType.TOPIC, t.name) for t in topics])
            configs = {name: entries for (_, name), entries in results.items()}
    for topic in topics:
        print(describe_topic_lines(topic, configs.get(topic.name, [])))
    return EXIT_OK


def describe_topic_lines(topic, config_entries) -> str:
    """kafka-topics.sh --describe layout, plus each partition's leader epoch."""
    overrides = ",".join(
        f"{entry.name}={'<sensitive>' if entry.is_sensitive else entry.value}"
        for entry in sorted(config_entries, key=lambda e: e.name)
        if entry.source != ConfigSource.DEFAULT_CONFIG
    )
    lines = [
        f"Topic: {topic.name}\tTopicId: {topic.topic_id or '-'}\tPartitionCount: {topic.num_partitions}\t"
        f"ReplicationFactor: {topic.replication_factor}\tConfigs: {overrides}"
    ]
    for index in sorted(topic.partitions):
        p = topic.partitions[index]
        line = (f"\tTopic: {topic.name}\tPartition: {p.partition}\tLeader: {p.leader_id if p.leader_id >= 0 else 'none'}"
                f"\tReplicas: {join_ids(p.replica_nodes)}\tIsr: {join_ids(p.isr_nodes)}\tLeaderEpoch: {p.leader_epoch}")
        if p.offline_replicas:
            line += f"\tOffline: {join_ids(p.offline_replicas)}"
        lines.append(line)
    return "\n".join(lines)


async def _topics_delete(args: argparse.Namespace) -> int:
    async with kafka_client(args) as client:
        await client.delete_topics([args.name])
    print(f"Deleted topic {args.name}.")
    return EXIT_OK


async def _topics_alter(args: argparse.Namespace) -> int:
    async with kafka_client(args) as client:
        await client.create_partitions({args.name: args.partitions})
    print(f"Topic {args.name} now has {args.partitions} partitions.")
    return EXIT_OK


def add_commands(commands, common) -> None:
    topics = commands.add_parser("topics", help="create, list, describe, alter and delete topics")
    actions = topics.add_subparsers(dest="topics_command", required=True, metavar="ACTION")

    create = actions.add_parser("create", parents=[common], help="create a topic")
    create.add_argument("name", metavar="NAME")
    create.add_argument("--partitions", type=positive_int, default=-1,
                        help="partition count (default: the broker's num.partitions)")
    create.add_argument("--replication-factor", type=positive_int, default=-1,
                        help="replicas per partition (default: the broker's default.replication.factor)")
    create.add_argument("--config", type=_config_pair, action="append", metavar="KEY=VALUE",
                        help="a topic config override; repeat for several")
    create.set_defaults(func=lambda a: run_command(_topics_create, a))

    listing = actions.add_parser("list", parents=[common], help="list topic names")
    listing.set_defaults(func=lambda a: run_command(_topics_list, a))

    describe = actions.add_parser("describe", parents=[common],
                                  help="partitions, leaders, replicas, ISR, leader epochs and config overrides")
    describe.add_argument("name", metavar="NAME", nargs="?", help="a topic (default: all topics)")
    describe.set_defaults(func=lambda a: run_command(_topics_describe, a))

    delete = actions.add_parser("delete", parents=[common], help="delete a topic")
    delete.add_argument("name", metavar="NAME")
    delete.set_defaults(func=lambda a: run_command(_topics_delete, a))

    alter = actions.add_parser("alter", parents=[common], help="add partitions to a topic")
    alter.add_argument("name", metavar="NAME")
    alter.add_argument("--partitions", type=positive_int, required=True, help="the new, larger partition count")
    alter.set_defaults(func=lambda a: run_command(_topics_alter, a))

    add_reassign_actions(actions, common)
