"""``kraftpy topics reassign`` and ``kraftpy topics elect-leaders``: what kafka-reassign-partitions.sh and
kafka-leader-election.sh do.

A reassignment is given on the command line (``--topic/--partition/--replicas``) or as the JSON plan of
kafka-reassign-partitions.sh (``--plan``); ``--list`` shows the ones in progress and ``--cancel`` stops them.
Each partition's outcome is one line, and the command exits 1 if any partition failed.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

from cluster.cli.common import (
    EXIT_KAFKA_ERROR,
    EXIT_OK,
    UsageError,
    join_ids,
    kafka_client,
    non_negative_int,
    print_error,
    run_command,
)
from cluster.client.errors import error_from_code
from cluster.core.errors import ErrorCode


def _replica_list(text: str) -> list[int]:
    try:
        replicas = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected broker ids like 2,3,1, got {text!r}") from None
    if not replicas:
        raise argparse.ArgumentTypeError("at least one broker id is needed")
    return replicas


def load_reassignment_plan(text: str) -> dict[tuple[str, int], list[int]]:
    """kafka-reassign-partitions.sh's JSON: {"version": 1, "partitions": [{"topic", "partition", "replicas"}]}.

    ``log_dirs`` is accepted and ignored (one log directory per broker here)."""
    import json

    try:
        plan = json.loads(text)
        entries = plan["partitions"]
        targets = {}
        for entry in entries:
            key = (str(entry["topic"]), int(entry["partition"]))
            if key in targets:
                raise UsageError(f"--plan: partition {key[0]}-{key[1]} appears twice")
            targets[key] = [int(b) for b in entry["replicas"]]
    except (ValueError, KeyError, TypeError) as exc:
        raise UsageError(f"--plan: not a reassignment plan ({exc.__class__.__name__}: {exc})") from None
    if not targets:
        raise UsageError("--plan: no partitions")
    return targets


def _reassign_targets(args: argparse.Namespace) -> dict[tuple[str, int], list[int] | None]:
    if args.plan is not None:
        if args.topic is not None or args.partition is not None or args.replicas is not None:
            raise UsageError("--plan cannot be combined with --topic/--partition/--replicas")
        try:
            with open(args.plan, encoding="utf-8") as handle:
                targets = load_reassignment_plan(handle.read())
        except OSError as exc:
            raise UsageError(f"--plan: {exc}") from None
        return {key: None for key in targets} if args.cancel else targets
    if args.topic is None or args.partition is None:
        raise UsageError("give --topic and --partition (or --plan FILE)")
    if args.cancel:
        if args.replicas is not None:
            raise UsageError("--cancel takes no --replicas")
        return {(args.topic, args.partition): None}
    if args.replicas is None:
        raise UsageError("give --replicas (e.g. 2,3,1), --cancel or --list")
    return {(args.topic, args.partition): args.replicas}


def _report_partition_errors(outcomes, success: Callable[[tuple[str, int]], str]) -> int:
    """Prints one line per partition; exit 1 if any failed."""
    status = EXIT_OK
    for (topic, partition), (code, message) in sorted(outcomes.items()):
        if code == ErrorCode.NONE:
            print(success((topic, partition)))
        else:
            print_error(f"{topic}-{partition}: {ErrorCode(code).name}" + (f": {message}" if message else ""))
            status = EXIT_KAFKA_ERROR
    return status


async def _topics_reassign(args: argparse.Namespace) -> int:
    if args.list:
        if args.replicas is not None or args.cancel or args.plan is not None:
            raise UsageError("--list takes only --topic/--partition")
        return await _reassignments_list(args)
    targets = _reassign_targets(args)
    async with kafka_client(args) as client:
        outcomes = await client.alter_partition_reassignments(targets)

    def success(key: tuple[str, int]) -> str:
        target = targets[key]
        if target is None:
            return f"Cancelled the reassignment of {key[0]}-{key[1]}."
        return f"Started the reassignment of {key[0]}-{key[1]} to replicas {join_ids(target)}."
    return _report_partition_errors(outcomes, success)


async def _reassignments_list(args: argparse.Namespace) -> int:
    async with kafka_client(args) as client:
        wanted = None
        if args.topic is not None:
            metadata = await client.metadata([args.topic])
            topic = metadata.topics.get(args.topic)
            if topic is None or topic.error_code:
                raise error_from_code(topic.error_code if topic else ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, None,
                                      api="Metadata", resource=f"topic '{args.topic}'")
            indexes = [args.partition] if args.partition is not None else sorted(topic.partitions)
            wanted = [(args.topic, index) for index in indexes]
        ongoing = await client.list_partition_reassignments(wanted)
    if not ongoing:
        print("No partition reassignments in progress.")
    for (topic, partition), r in sorted(ongoing.items()):
        print(f"Topic: {topic}\tPartition: {partition}\tReplicas: {join_ids(r.replicas)}\t"
              f"Adding: {join_ids(r.adding_replicas)}\tRemoving: {join_ids(r.removing_replicas)}")
    return EXIT_OK


async def _topics_elect_leaders(args: argparse.Namespace) -> int:
    if args.partition is not None and args.topic is None:
        raise UsageError("--partition needs --topic")
    async with kafka_client(args) as client:
        wanted = None
        if args.topic is not None:
            if args.partition is not None:
                wanted = [(args.topic, args.partition)]
            else:
                metadata = await client.metadata([args.topic])
                topic = metadata.topics.get(args.topic)
                if topic is None or topic.error_code:
                    raise error_from_code(topic.error_code if topic else ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
                                          None, api="Metadata", resource=f"topic '{args.topic}'")
                wanted = [(args.topic, index) for index in sorted(topic.partitions)]
        election_type = 1 if args.unclean else 0
        outcomes = await client.elect_leaders(wanted, election_type=election_type)
    # As kafka-leader-election.sh: a partition whose leader is already right is not a failure.
    not_needed = {key for key, (code, _m) in outcomes.items() if code == ErrorCode.ELECTION_NOT_NEEDED}
    for topic, partition in sorted(not_needed):
        print(f"Valid replica already elected for partition {topic}-{partition}.")
    if not outcomes:
        print("No partition needed a leader election.")
    kind = "unclean" if args.unclean else "preferred"
    return _report_partition_errors({k: v for k, v in outcomes.items() if k not in not_needed},
                                    lambda key: f"Elected the {kind} leader of {key[0]}-{key[1]}.")


def add_reassign_actions(actions, common) -> None:
    reassign = actions.add_parser(
        "reassign", parents=[common],
        help="move partition replicas (like kafka-reassign-partitions.sh): start, --list or --cancel")
    reassign.add_argument("--topic", metavar="TOPIC")
    reassign.add_argument("--partition", type=non_negative_int, metavar="P")
    reassign.add_argument("--replicas", type=_replica_list, metavar="IDS",
                          help="the target replicas, preferred leader first, e.g. 2,3,1")
    reassign.add_argument("--plan", metavar="FILE",
                          help='a kafka-reassign-partitions.sh JSON plan: {"version":1,"partitions":[...]}')
    reassign.add_argument("--list", action="store_true", help="show the reassignments in progress")
    reassign.add_argument("--cancel", action="store_true",
                          help="cancel the reassignment of --topic/--partition (or of every --plan partition)")
    reassign.set_defaults(func=lambda a: run_command(_topics_reassign, a))

    elect = actions.add_parser("elect-leaders", parents=[common],
                               help="move leadership to the preferred replica (like kafka-leader-election.sh)")
    elect.add_argument("--topic", metavar="TOPIC", help="default: every partition")
    elect.add_argument("--partition", type=non_negative_int, metavar="P", help="default: every partition of --topic")
    elect.add_argument("--unclean", action="store_true",
                       help="elect a leader for leaderless partitions even outside the ISR (may lose data)")
    elect.set_defaults(func=lambda a: run_command(_topics_elect_leaders, a))
