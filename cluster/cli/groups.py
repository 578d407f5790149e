"""``kraftpy groups list|describe|reset-offsets|delete``: what kafka-consumer-groups.sh does.

``describe`` shows members, assignments, committed offsets and lag; ``reset-offsets`` is a dry run unless
``--execute``, and only for an inactive group (as Kafka's ConsumerGroupCommand); ``delete`` removes an empty
group and its committed offsets.
"""

from __future__ import annotations

import argparse
import datetime
import sys
from collections import defaultdict

from cluster.cli.common import (
    EXIT_OK,
    UsageError,
    kafka_client,
    non_negative_int,
    run_command,
)
from cluster.client import (
    EARLIEST_TIMESTAMP,
    LATEST_TIMESTAMP,
    KafkaClient,
    KafkaResponseError,
)
from cluster.client.groups import GroupDescription
from cluster.core.errors import ErrorCode

# Kafka's tool only resets offsets of a group nobody consumes for (ConsumerGroupCommand: "inactive").
_INACTIVE_GROUP_STATES = ("Empty", "Dead")
_RESET_STRATEGIES = ("to_earliest", "to_latest", "to_offset", "shift_by", "to_datetime")


def format_table(header: list[str], rows: list[list[str]]) -> str:
    """Left-aligned columns, two spaces apart (kafka-consumer-groups.sh's layout, sized to the content)."""
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows, strict=True)]
    return "\n".join("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
                     for row in [header, *rows])


def _dash(value) -> str:
    return "-" if value is None else str(value)


def partition_lag_rows(group: GroupDescription, committed: dict, log_end_offsets: dict) -> list[list[str]]:
    """One row per partition that is committed or assigned: GROUP TOPIC PARTITION CURRENT-OFFSET
    LOG-END-OFFSET LAG CONSUMER-ID HOST CLIENT-ID ("-" where unknown, as Kafka prints)."""
    owners = {tp: member for member in group.members for tp in member.assigned_partitions}
    rows = []
    for tp in sorted(set(committed) | set(owners)):
        current = committed.get(tp)
        log_end_offset = log_end_offsets.get(tp)
        lag = None if current is None or log_end_offset is None else max(0, log_end_offset - current)
        owner = owners.get(tp)
        rows.append([group.group_id, tp[0], str(tp[1]), _dash(current), _dash(log_end_offset), _dash(lag),
                     owner.member_id if owner else "-", owner.client_host if owner else "-",
                     owner.client_id if owner else "-"])
    return rows


def member_rows(group: GroupDescription) -> list[list[str]]:
    """GROUP CONSUMER-ID GROUP-INSTANCE-ID HOST CLIENT-ID #PARTITIONS ASSIGNMENT, assignment as topic(0,1)."""
    rows = []
    for member in group.members:
        assignment = ", ".join(f"{topic}({','.join(str(p) for p in partitions)})"
                               for topic, partitions in sorted(member.assignment.items())) or "-"
        rows.append([group.group_id, member.member_id, _dash(member.group_instance_id), member.client_host,
                     member.client_id, str(len(member.assigned_partitions)), assignment])
    return rows


async def _log_end_offsets(client: KafkaClient, partitions) -> dict:
    """Latest offsets of ``partitions``; a topic that is gone (or leaderless) is left out, shown as "-"."""
    by_topic: dict[str, list[int]] = defaultdict(list)
    for topic, partition in partitions:
        by_topic[topic].append(partition)
    out = {}
    for topic, indexes in sorted(by_topic.items()):
        try:
            offsets = await client.list_offsets(topic, sorted(indexes), LATEST_TIMESTAMP)
        except KafkaResponseError:
            continue
        out.update({(topic, p): o.offset for p, o in offsets.items()})
    return out


def _group_not_found(group_id: str) -> KafkaResponseError:
    return KafkaResponseError(ErrorCode.GROUP_ID_NOT_FOUND, f"Consumer group '{group_id}' does not exist.")


async def _groups_list(args: argparse.Namespace) -> int:
    async with kafka_client(args) as client:
        groups = await client.list_groups(args.state_filter or ())
    if args.state:
        print(format_table(["GROUP", "STATE"], [[g.group_id, g.state or "-"] for g in groups]))
    else:
        for group in groups:
            print(group.group_id)
    return EXIT_OK


async def _groups_describe(args: argparse.Namespace) -> int:
    async with kafka_client(args) as client:
        group = await client.describe_group(args.group)
        committed = {tp: c.offset for tp, c in (await client.offset_fetch(args.group)).items()}
        if group.state == "Dead" and not committed:
            raise _group_not_found(args.group)
        assigned = [tp for member in group.members for tp in member.assigned_partitions]
        log_end_offsets = await _log_end_offsets(client, set(committed) | set(assigned))
    protocol = f", protocol {group.protocol}" if group.protocol else ""
    print(f"Consumer group '{group.group_id}': state {group.state}, protocol type {group.protocol_type or '-'}"
          f"{protocol}, {len(group.members)} member(s), coordinator node {group.coordinator_id}")
    print()
    rows = partition_lag_rows(group, committed, log_end_offsets)
    if rows:
        print(format_table(["GROUP", "TOPIC", "PARTITION", "CURRENT-OFFSET", "LOG-END-OFFSET", "LAG",
                            "CONSUMER-ID", "HOST", "CLIENT-ID"], rows))
    else:
        print(f"Consumer group '{group.group_id}' has no committed offsets and no assigned partitions.")
    print()
    if group.members:
        print(format_table(["GROUP", "CONSUMER-ID", "GROUP-INSTANCE-ID", "HOST", "CLIENT-ID", "#PARTITIONS",
                            "ASSIGNMENT"], member_rows(group)))
    else:
        print(f"Consumer group '{group.group_id}' has no active members.")
    return EXIT_OK


def _topic_partitions_arg(text: str) -> tuple[str, list[int] | None]:
    """``--topic T`` (all partitions) or ``--topic T:0,2`` (those), as kafka-consumer-groups.sh accepts."""
    topic, sep, partitions = text.partition(":")
    if not topic:
        raise argparse.ArgumentTypeError(f"{text!r} names no topic")
    if not sep:
        return topic, None
    try:
        indexes = sorted({non_negative_int(p.strip()) for p in partitions.split(",") if p.strip()})
    except argparse.ArgumentTypeError as exc:
        raise argparse.ArgumentTypeError(f"{text!r}: partition {exc}") from None
    if not indexes:
        raise argparse.ArgumentTypeError(f"{text!r} lists no partitions")
    return topic, indexes


def _iso_datetime_ms(text: str) -> int:
    """ISO-8601 (``2026-01-02T03:04:05.678``, optionally with a zone) into epoch ms; no zone means local time,
    as Kafka's --to-datetime reads it."""
    try:
        moment = datetime.datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an ISO-8601 date-time (YYYY-MM-DDTHH:mm:SS.sss)") from None
    return int(moment.timestamp() * 1000)


def plan_reset(strategy: str, value, partitions, committed: dict, earliest: dict, latest: dict,
               by_timestamp: dict | None = None) -> dict:
    """The new offset of every partition, as ConsumerGroupCommand computes it.

    ``to_offset`` and ``shift_by`` results are clamped into [log start, log end] (Kafka warns and clamps);
    ``to_datetime`` uses the first offset at or after the time, or the log end when there is none;
    ``shift_by`` needs a committed offset to shift (UsageError otherwise).
    """
    plan = {}
    for tp in sorted(partitions):
        if strategy == "to_earliest":
            target = earliest[tp]
        elif strategy == "to_latest":
            target = latest[tp]
        elif strategy == "to_offset":
            target = value
        elif strategy == "shift_by":
            if tp not in committed:
                raise UsageError(f"cannot shift offset for partition {tp[0]}-{tp[1]}: "
                                 "it has no current committed offset")
            target = committed[tp] + value
        elif strategy == "to_datetime":
            found = (by_timestamp or {}).get(tp, -1)
            target = found if found >= 0 else latest[tp]
        else:
            raise ValueError(f"unknown reset strategy {strategy!r}")
        plan[tp] = min(max(target, earliest[tp]), latest[tp])
    return plan


async def _reset_partitions(client: KafkaClient, args, committed: dict) -> list:
    if args.all_topics:
        if not committed:
            raise UsageError(f"group '{args.group}' has no committed offsets: name the partitions with --topic")
        return sorted(committed)
    partitions = set()
    for topic, indexes in args.topic:
        metadata = await client.topic(topic)
        for index in indexes if indexes is not None else metadata.partitions:
            if index not in metadata.partitions:
                raise KafkaResponseError(ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
                                         f"topic '{topic}' has no partition {index} (it has "
                                         f"{metadata.num_partitions})")
            partitions.add((topic, index))
    return sorted(partitions)


async def _offsets_at(client: KafkaClient, partitions, timestamp: int) -> dict:
    by_topic: dict[str, list[int]] = defaultdict(list)
    for topic, partition in partitions:
        by_topic[topic].append(partition)
    out = {}
    for topic, indexes in by_topic.items():
        offsets = await client.list_offsets(topic, indexes, timestamp)
        out.update({(topic, p): o.offset for p, o in offsets.items()})
    return out


async def _groups_reset_offsets(args: argparse.Namespace) -> int:
    if not args.topic and not args.all_topics:
        raise UsageError("name the partitions to reset with --topic TOPIC[:P,...] or --all-topics")
    if args.execute and args.dry_run:
        raise UsageError("--execute and --dry-run cannot be used together")
    strategy = next(name for name in _RESET_STRATEGIES if getattr(args, name) is not None
                    and getattr(args, name) is not False)
    value = getattr(args, strategy)
    async with kafka_client(args) as client:
        group = await client.describe_group(args.group)
        if group.state not in _INACTIVE_GROUP_STATES:
            raise KafkaResponseError(
                ErrorCode.NON_EMPTY_GROUP,
                f"Assignments can only be reset if the group '{args.group}' is inactive, but the current state "
                f"is {group.state}.")
        committed = {tp: c.offset for tp, c in (await client.offset_fetch(args.group)).items()}
        partitions = await _reset_partitions(client, args, committed)
        earliest = await _offsets_at(client, partitions, EARLIEST_TIMESTAMP)
        latest = await _offsets_at(client, partitions, LATEST_TIMESTAMP)
        by_timestamp = await _offsets_at(client, partitions, value) if strategy == "to_datetime" else None
        plan = plan_reset(strategy, value, partitions, committed, earliest, latest, by_timestamp)
        if args.execute:
            await client.offset_commit(args.group, plan)
    if not args.execute and not args.dry_run:
        print("WARN: No action will be performed as the --execute option is missing. Add --execute to reset "
              "the offsets, or --dry-run to keep this behaviour without the warning.", file=sys.stderr)
    print(format_table(["GROUP", "TOPIC", "PARTITION", "NEW-OFFSET"],
                       [[args.group, topic, str(partition), str(offset)]
                        for (topic, partition), offset in sorted(plan.items())]))
    return EXIT_OK


async def _groups_delete(args: argparse.Namespace) -> int:
    async with kafka_client(args) as client:
        await client.delete_groups([args.group])
    print(f"Deletion of requested consumer groups ('{args.group}') was successful.")
    return EXIT_OK


def add_commands(commands, common) -> None:
    groups = commands.add_parser("groups", help="list, describe, reset offsets of and delete consumer groups")
    actions = groups.add_subparsers(dest="groups_command", required=True, metavar="ACTION")

    listing = actions.add_parser("list", parents=[common], help="list consumer group ids")
    listing.add_argument("--state", action="store_true", help="print each group's state too")
    listing.add_argument("--state-filter", action="append", metavar="STATE",
                         help="only groups in this state (Stable, Empty, ...); repeat for several")
    listing.set_defaults(func=lambda a: run_command(_groups_list, a))

    describe = actions.add_parser(
        "describe", parents=[common], help="state, members, assignments, committed offsets and lag",
        description="Shows the group's state and protocol, per partition its committed offset, log end "
                    "offset, lag and owner, and per member its assigned partitions.")
    describe.add_argument("group", metavar="GROUP")
    describe.set_defaults(func=lambda a: run_command(_groups_describe, a))

    reset = actions.add_parser(
        "reset-offsets", parents=[common], help="plan or execute new committed offsets for an inactive group",
        description="Computes new committed offsets and prints them; commits them only with --execute. "
                    "The group must be inactive (Empty or Dead). Offsets are clamped to the partition's "
                    "[log start, log end].")
    reset.add_argument("group", metavar="GROUP")
    scope = reset.add_mutually_exclusive_group()
    scope.add_argument("--topic", type=_topic_partitions_arg, action="append", metavar="TOPIC[:P,...]",
                       help="reset this topic (or only the listed partitions); repeat for several")
    scope.add_argument("--all-topics", action="store_true", help="every partition the group has committed")
    how = reset.add_mutually_exclusive_group(required=True)
    how.add_argument("--to-earliest", action="store_true", default=None, help="the log start offset")
    how.add_argument("--to-latest", action="store_true", default=None, help="the log end offset")
    how.add_argument("--to-offset", type=non_negative_int, metavar="N", help="offset N")
    how.add_argument("--shift-by", type=int, metavar="N", help="the committed offset plus N (may be negative)")
    how.add_argument("--to-datetime", type=_iso_datetime_ms, metavar="ISO",
                     help="the first offset at or after this time (YYYY-MM-DDTHH:mm:SS.sss[+zone])")
    reset.add_argument("--execute", action="store_true", help="commit the new offsets (default: dry run)")
    reset.add_argument("--dry-run", action="store_true", help="only print the plan (the default)")
    reset.set_defaults(func=lambda a: run_command(_groups_reset_offsets, a))

    delete = actions.add_parser("delete", parents=[common],
                                help="delete an empty group and its committed offsets")
    delete.add_argument("group", metavar="GROUP")
    delete.set_defaults(func=lambda a: run_command(_groups_delete, a))
