"""``kraftpy topics|produce|consume|groups``: console tools that speak Kafka's protocol through cluster.client.

They do what kafka-topics.sh and the console producer/consumer do, so a user (or a test) can drive any
Kafka-compatible cluster from a shell, and they fail the way a script needs: one line on stderr and an
exit code that says who is at fault:

* 0 ok;
* 1 the cluster refused (a Kafka error code; the line names it, e.g. ``TOPIC_ALREADY_EXISTS``);
* 2 usage or connection problem (bad arguments or input, unreachable ``--bootstrap-server``).

Partitioning on ``produce`` follows the Java client (murmur2 of the key; unkeyed records sticky per
batch); see ``cluster.client.partitioner`` for why librdkafka's default differs.  ``consume`` assigns
partitions itself (no consumer group) and starts at the log end unless told otherwise.  ``groups`` does
what kafka-consumer-groups.sh does: list, describe (members, assignments, committed offsets and lag),
reset-offsets (a dry run unless ``--execute``, and only for an inactive group) and delete.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import os
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Coroutine

from cluster.client import (
    EARLIEST_TIMESTAMP,
    LATEST_TIMESTAMP,
    BrokerConnectionError,
    ConfigSource,
    KafkaClient,
    KafkaResponseError,
    ProducerRecord,
    ResourceType,
    StickyPartitioner,
)
from cluster.client.console import (
    InputRecord,
    RecordFormatError,
    format_json,
    format_text,
    parse_header_arg,
    parse_json_line,
    parse_text_line,
)
from cluster.client.errors import RETRIABLE_ERRORS, error_from_code
from cluster.client.groups import GroupDescription
from cluster.core.errors import ErrorCode, KafkaError
from cluster.wire.compression import CODEC_NAMES

__all__ = ["add_commands", "UsageError"]

DEFAULT_BOOTSTRAP = "127.0.0.1:9092"
EXIT_OK, EXIT_KAFKA_ERROR, EXIT_USAGE = 0, 1, 2
EXIT_INTERRUPTED = 130
CLIENT_ID = "kraftpy-cli"

_COMPRESSION_IDS = {name: codec for codec, name in CODEC_NAMES.items()}
_ACKS = {"0": 0, "1": 1, "all": -1, "-1": -1}
# Records per partition per Produce request, and records read from stdin per round.
_MAX_BATCH_RECORDS = 1000
_MAX_ROUND_RECORDS = 5000
_FETCH_MAX_WAIT_MS = 500
_RETRY_BACKOFF_S = 0.1


class UsageError(Exception):
    """Bad arguments or input: exit code 2."""


# -- plumbing ----------------------------------------------------------------------------------------


def _print_error(message: str) -> None:
    print(f"kraftpy: error: {message}", file=sys.stderr)


def _run(coroutine_fn: Callable[[argparse.Namespace], Coroutine], args: argparse.Namespace) -> int:
    """Runs a command's coroutine and turns its outcome into an exit code and one line on stderr."""
    try:
        return asyncio.run(coroutine_fn(args)) or EXIT_OK
    except UsageError as exc:
        _print_error(str(exc))
        return EXIT_USAGE
    except BrokerConnectionError as exc:
        _print_error(f"cannot reach broker {exc}")
        return EXIT_USAGE
    except KafkaError as exc:  # KafkaResponseError, UNSUPPORTED_VERSION from negotiation, corrupt records
        _print_error(str(exc))
        return EXIT_KAFKA_ERROR
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader went away (`| head`): not an error.  Point stdout at /dev/null so the
        # interpreter's final flush does not complain again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK


def _client(args: argparse.Namespace) -> KafkaClient:
    try:
        return KafkaClient(args.bootstrap_server, client_id=CLIENT_ID,
                           connect_timeout_ms=args.connect_timeout_ms, request_timeout_ms=args.request_timeout_ms)
    except ValueError as exc:
        raise UsageError(f"--bootstrap-server: {exc}") from None


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{value} is negative")
    return value


def _positive_int(text: str) -> int:
    value = _non_negative_int(text)
    if value == 0:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _config_pair(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"{text!r} is not of the form key=value")
    return name, value


def _header_pair(text: str) -> tuple[str, bytes]:
    try:
        return parse_header_arg(text)
    except RecordFormatError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _start_offset(text: str) -> int | str:
    if text in ("earliest", "latest"):
        return text
    try:
        return _non_negative_int(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"{text!r} is neither an offset >= 0 nor earliest/latest") from None


def _common_options() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--bootstrap-server", default=DEFAULT_BOOTSTRAP, metavar="HOST:PORT",
                        help=f"broker(s) to bootstrap from, comma-separated (default {DEFAULT_BOOTSTRAP})")
    common.add_argument("--request-timeout-ms", type=_positive_int, default=30_000, help=argparse.SUPPRESS)
    common.add_argument("--connect-timeout-ms", type=_positive_int, default=10_000, help=argparse.SUPPRESS)
    return common


# -- topics ------------------------------------------------------------------------------------------


async def _topics_create(args: argparse.Namespace) -> int:
    configs = dict(args.config or [])
    async with _client(args) as client:
        created = await client.create_topic(args.name, args.partitions, args.replication_factor, configs)
    detail = ""
    if created.num_partitions > 0:
        detail = f" ({created.num_partitions} partitions, replication factor {created.replication_factor})"
    print(f"Created topic {created.name}.{detail}")
    return EXIT_OK


async def _topics_list(args: argparse.Namespace) -> int:
    async with _client(args) as client:
        metadata = await client.metadata(None)
    for name in sorted(name for name, topic in metadata.topics.items() if not topic.error_code):
        print(name)
    return EXIT_OK


async def _topics_describe(args: argparse.Namespace) -> int:
    async with _client(args) as client:
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
                f"\tReplicas: {_ids(p.replica_nodes)}\tIsr: {_ids(p.isr_nodes)}\tLeaderEpoch: {p.leader_epoch}")
        if p.offline_replicas:
            line += f"\tOffline: {_ids(p.offline_replicas)}"
        lines.append(line)
    return "\n".join(lines)


def _ids(node_ids) -> str:
    return ",".join(str(n) for n in node_ids)


async def _topics_delete(args: argparse.Namespace) -> int:
    async with _client(args) as client:
        await client.delete_topics([args.name])
    print(f"Deleted topic {args.name}.")
    return EXIT_OK


async def _topics_alter(args: argparse.Namespace) -> int:
    async with _client(args) as client:
        await client.create_partitions({args.name: args.partitions})
    print(f"Topic {args.name} now has {args.partitions} partitions.")
    return EXIT_OK


def _add_topics(commands, common) -> None:
    topics = commands.add_parser("topics", help="create, list, describe, alter and delete topics")
    actions = topics.add_subparsers(dest="topics_command", required=True, metavar="ACTION")

    create = actions.add_parser("create", parents=[common], help="create a topic")
    create.add_argument("name", metavar="NAME")
    create.add_argument("--partitions", type=_positive_int, default=-1,
                        help="partition count (default: the broker's num.partitions)")
    create.add_argument("--replication-factor", type=_positive_int, default=-1,
                        help="replicas per partition (default: the broker's default.replication.factor)")
    create.add_argument("--config", type=_config_pair, action="append", metavar="KEY=VALUE",
                        help="a topic config override; repeat for several")
    create.set_defaults(func=lambda a: _run(_topics_create, a))

    listing = actions.add_parser("list", parents=[common], help="list topic names")
    listing.set_defaults(func=lambda a: _run(_topics_list, a))

    describe = actions.add_parser("describe", parents=[common],
                                  help="partitions, leaders, replicas, ISR, leader epochs and config overrides")
    describe.add_argument("name", metavar="NAME", nargs="?", help="a topic (default: all topics)")
    describe.set_defaults(func=lambda a: _run(_topics_describe, a))

    delete = actions.add_parser("delete", parents=[common], help="delete a topic")
    delete.add_argument("name", metavar="NAME")
    delete.set_defaults(func=lambda a: _run(_topics_delete, a))

    alter = actions.add_parser("alter", parents=[common], help="add partitions to a topic")
    alter.add_argument("name", metavar="NAME")
    alter.add_argument("--partitions", type=_positive_int, required=True, help="the new, larger partition count")
    alter.set_defaults(func=lambda a: _run(_topics_alter, a))

    _add_reassign(actions, common)


# -- topics reassign / elect-leaders ----------------------------------------------------------------


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
            _print_error(f"{topic}-{partition}: {ErrorCode(code).name}" + (f": {message}" if message else ""))
            status = EXIT_KAFKA_ERROR
    return status


async def _topics_reassign(args: argparse.Namespace) -> int:
    if args.list:
        if args.replicas is not None or args.cancel or args.plan is not None:
            raise UsageError("--list takes only --topic/--partition")
        return await _reassignments_list(args)
    targets = _reassign_targets(args)
    async with _client(args) as client:
        outcomes = await client.alter_partition_reassignments(targets)

    def success(key: tuple[str, int]) -> str:
        target = targets[key]
        if target is None:
            return f"Cancelled the reassignment of {key[0]}-{key[1]}."
        return f"Started the reassignment of {key[0]}-{key[1]} to replicas {_ids(target)}."
    return _report_partition_errors(outcomes, success)


async def _reassignments_list(args: argparse.Namespace) -> int:
    async with _client(args) as client:
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
        print(f"Topic: {topic}\tPartition: {partition}\tReplicas: {_ids(r.replicas)}\t"
              f"Adding: {_ids(r.adding_replicas)}\tRemoving: {_ids(r.removing_replicas)}")
    return EXIT_OK


async def _topics_elect_leaders(args: argparse.Namespace) -> int:
    if args.partition is not None and args.topic is None:
        raise UsageError("--partition needs --topic")
    async with _client(args) as client:
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


def _add_reassign(actions, common) -> None:
    reassign = actions.add_parser(
        "reassign", parents=[common],
        help="move partition replicas (like kafka-reassign-partitions.sh): start, --list or --cancel")
    reassign.add_argument("--topic", metavar="TOPIC")
    reassign.add_argument("--partition", type=_non_negative_int, metavar="P")
    reassign.add_argument("--replicas", type=_replica_list, metavar="IDS",
                          help="the target replicas, preferred leader first, e.g. 2,3,1")
    reassign.add_argument("--plan", metavar="FILE",
                          help='a kafka-reassign-partitions.sh JSON plan: {"version":1,"partitions":[...]}')
    reassign.add_argument("--list", action="store_true", help="show the reassignments in progress")
    reassign.add_argument("--cancel", action="store_true",
                          help="cancel the reassignment of --topic/--partition (or of every --plan partition)")
    reassign.set_defaults(func=lambda a: _run(_topics_reassign, a))

    elect = actions.add_parser("elect-leaders", parents=[common],
                               help="move leadership to the preferred replica (like kafka-leader-election.sh)")
    elect.add_argument("--topic", metavar="TOPIC", help="default: every partition")
    elect.add_argument("--partition", type=_non_negative_int, metavar="P", help="default: every partition of --topic")
    elect.add_argument("--unclean", action="store_true",
                       help="elect a leader for leaderless partitions even outside the ISR (may lose data)")
    elect.set_defaults(func=lambda a: _run(_topics_elect_leaders, a))


# -- produce -----------------------------------------------------------------------------------------


class _StdinLines:
    """Lines of stdin, read by a daemon thread so the event loop never blocks on a terminal or pipe.

    The thread hands over whole chunks (``read1``: whatever one read returns, a line at a time on a
    terminal, up to 64 KiB from a pipe), so the cost of crossing threads is per chunk, not per line.
    ``next_round()`` waits for one chunk and takes whatever else is already there (up to a limit):
    piped input forms large batches, a person typing gets each line sent at once.
    """

    _EOF = object()
    _READ_BYTES = 64 * 1024

    def __init__(self, stream, loop: asyncio.AbstractEventLoop) -> None:
        self._queue: asyncio.Queue = asyncio.Queue(maxsize=32)  # chunks: backpressure on stdin
        self._loop = loop
        self._eof = False
        thread = threading.Thread(target=self._pump, args=(stream,), name="kraftpy-stdin", daemon=True)
        thread.start()

    @staticmethod
    def _strip_cr(line: bytes) -> bytes:
        return line[:-1] if line.endswith(b"\r") else line

    def _pump(self, stream) -> None:
        partial = b""
        try:
            while chunk := stream.read1(self._READ_BYTES):
                *lines, partial = (partial + chunk).split(b"\n")
                if lines and not self._put([self._strip_cr(line) for line in lines]):
                    return
        except (OSError, ValueError):
            pass  # stdin closed under us: treat as end of input
        if partial:  # a last line without its newline
            self._put([self._strip_cr(partial)])
        self._put(self._EOF)

    def _put(self, item) -> bool:
        """Hands a chunk to the loop, waiting while the queue is full; False once the loop is gone."""
        put = self._queue.put(item)
        try:
            asyncio.run_coroutine_threadsafe(put, self._loop).result()
            return True
        except Exception:  # loop closed (RuntimeError) or the put cancelled at shutdown: command is over
            put.close()
            return False

    async def next_round(self, limit: int) -> list[bytes]:
        if self._eof:
            return []
        lines: list[bytes] = []
        item = await self._queue.get()
        while item is not self._EOF:
            lines.extend(item)
            if len(lines) >= limit or self._queue.empty():
                return lines
            item = self._queue.get_nowait()
        self._eof = True
        return lines


def _parse_input(lines: list[bytes], args: argparse.Namespace, first_line_number: int):
    """Parses a round of lines; returns (records, error) where error stops the command after sending."""
    key_separator = args.key_separator.encode("utf-8") if args.key_separator else None
    records: list[InputRecord] = []
    for number, line in enumerate(lines, start=first_line_number):
        try:
            if args.format == "json":
                if not line.strip():
                    continue
                records.append(parse_json_line(line))
            else:
                records.append(parse_text_line(line, key_separator))
        except RecordFormatError as exc:
            return records, UsageError(f"stdin line {number}: {exc}")
    return records, None


class _ProduceStats:
    def __init__(self) -> None:
        self.records = 0
        self.offsets: dict[int, tuple[int, int]] = {}  # partition -> (first, last) offset

    def add(self, result) -> None:
        self.records += result.record_count
        last = result.base_offset + result.record_count - 1
        first, prev_last = self.offsets.get(result.partition, (result.base_offset, last))
        self.offsets[result.partition] = (min(first, result.base_offset), max(prev_last, last))

    def summary(self, topic: str, acks: int, sent: int) -> str:
        if acks == 0:
            return f"Sent {sent} records to {topic} (acks=0: offsets unknown)."
        where = ", ".join(f"partition {p}: offsets {first}..{last}"
                          for p, (first, last) in sorted(self.offsets.items()))
        return f"Produced {self.records} records to {topic}" + (f" ({where})." if where else ".")


async def _produce(args: argparse.Namespace) -> int:
    static_headers = list(args.header or [])
    acks = _ACKS[args.acks]
    compression = _COMPRESSION_IDS[args.compression]
    stats, sent, line_number = _ProduceStats(), 0, 1
    async with _client(args) as client:
        topic = await client.topic(args.topic, auto_create=True)
        if args.partition is not None and args.partition not in topic.partitions:
            raise KafkaResponseError(ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
                                     f"topic '{args.topic}' has no partition {args.partition} "
                                     f"(it has {topic.num_partitions})")
        partitioner = StickyPartitioner()
        stdin = _StdinLines(sys.stdin.buffer, asyncio.get_running_loop())
        error = None
        try:
            while error is None:
                lines = await stdin.next_round(_MAX_ROUND_RECORDS)
                if not lines:
                    break
                records, error = _parse_input(lines, args, line_number)
                line_number += len(lines)
                batches, partition_error = _assign_partitions(records, args, topic, partitioner, static_headers)
                error = partition_error or error
                if not batches:
                    continue
                for chunk in _chunks(batches):
                    results = await client.produce_many(chunk, acks=acks, compression=compression)
                    sent += sum(len(r) for r in chunk.values())
                    for result in results.values():
                        stats.add(result)
                partitioner.next_batch(args.topic, topic.num_partitions)
        finally:
            print(stats.summary(args.topic, acks, sent), file=sys.stderr)
        if error is not None:
            raise error
    return EXIT_OK


def _assign_partitions(records: list[InputRecord], args, topic, partitioner, static_headers):
    """Groups records by partition; stops at a record for a partition that does not exist and
    returns (batches so far, the error), so that everything before it is still sent."""
    batches: dict[tuple[str, int], list[ProducerRecord]] = defaultdict(list)
    for record in records:
        partition = record.partition if record.partition is not None else args.partition
        if partition is None:
            partition = partitioner.partition(args.topic, record.key, topic.num_partitions)
        elif partition not in topic.partitions:
            return batches, KafkaResponseError(
                ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
                f"topic '{args.topic}' has no partition {partition} (it has {topic.num_partitions})")
        batches[(args.topic, partition)].append(ProducerRecord(
            value=record.value, key=record.key, headers=static_headers + record.headers,
            timestamp_ms=record.timestamp_ms,
        ))
    return batches, None


def _chunks(batches):
    """Splits per-partition lists so that no request carries more than _MAX_BATCH_RECORDS per partition."""
    largest = max(len(records) for records in batches.values())
    for start in range(0, largest, _MAX_BATCH_RECORDS):
        chunk = {tp: records[start:start + _MAX_BATCH_RECORDS] for tp, records in batches.items()}
        yield {tp: records for tp, records in chunk.items() if records}


def _add_produce(commands, common) -> None:
    produce = commands.add_parser(
        "produce", parents=[common], help="send lines of stdin as records",
        description="Reads records from stdin, one per line, and produces them to TOPIC. Without "
                    "--partition, keyed records go to murmur2(key) % partitions (Kafka's Java default; "
                    "librdkafka needs partitioner=murmur2_random to agree) and unkeyed records stick to "
                    "one partition per batch.")
    produce.add_argument("topic", metavar="TOPIC")
    produce.add_argument("--partition", type=_non_negative_int, help="send every record to this partition")
    produce.add_argument("--key-separator", metavar="SEP",
                         help="text format: split each line into key SEP value at the first SEP")
    produce.add_argument("--header", type=_header_pair, action="append", metavar="KEY=VALUE",
                         help="a header added to every record; repeat for several")
    produce.add_argument("--acks", choices=sorted(_ACKS), default="all",
                         help="0 = no response, 1 = leader appended, all = every in-sync replica (default)")
    produce.add_argument("--compression", choices=list(_COMPRESSION_IDS), default="none")
    produce.add_argument("--format", choices=("text", "json"), default="text",
                         help='text: one value per line; json: {"key","value","headers","partition","timestamp"}')
    produce.set_defaults(func=lambda a: _run(_produce, a))


# -- consume -----------------------------------------------------------------------------------------


async def _start_positions(client: KafkaClient, topic: str, partitions: list[int], args) -> dict:
    where = "earliest" if args.from_beginning else (args.offset if args.offset is not None else "latest")
    if isinstance(where, int):
        return {(topic, p): where for p in partitions}
    timestamp = EARLIEST_TIMESTAMP if where == "earliest" else LATEST_TIMESTAMP
    offsets = await client.list_offsets(topic, partitions, timestamp)
    return {(topic, p): offsets[p].offset for p in partitions}


class _Printer:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.out = sys.stdout.buffer
        self.separator = (args.key_separator or "\t").encode("utf-8")

    def write(self, record) -> None:
        if self.args.format == "json":
            self.out.write(format_json(record).encode("utf-8") + b"\n")
        else:
            self.out.write(format_text(record, print_key=self.args.print_key,
                                       print_headers=self.args.print_headers,
                                       print_offset=self.args.print_offset, separator=self.separator))


async def _consume(args: argparse.Namespace) -> int:
    if args.from_beginning and args.offset is not None:
        raise UsageError("--from-beginning and --offset cannot be used together")
    printer, count = _Printer(args), 0
    try:
        async with _client(args) as client:
            topic = await client.topic(args.topic)
            if args.partition is not None and args.partition not in topic.partitions:
                raise KafkaResponseError(ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
                                         f"topic '{args.topic}' has no partition {args.partition} "
                                         f"(it has {topic.num_partitions})")
            partitions = [args.partition] if args.partition is not None else sorted(topic.partitions)
            positions = await _start_positions(client, args.topic, partitions, args)
            idle_since = time.monotonic()
            while args.max_messages is None or count < args.max_messages:
                max_wait_ms = _FETCH_MAX_WAIT_MS
                if args.timeout_ms is not None:
                    remaining_ms = args.timeout_ms - (time.monotonic() - idle_since) * 1000
                    if remaining_ms <= 0:
                        break
                    max_wait_ms = max(1, min(max_wait_ms, int(remaining_ms)))
                results = await client.fetch(positions, max_wait_ms=max_wait_ms)
                received = 0
                for tp in sorted(results):
                    fetched = results[tp]
                    if fetched.error_code:
                        await _on_fetch_error(fetched)
                        continue
                    for record in fetched.records:
                        if args.max_messages is not None and count >= args.max_messages:
                            break
                        printer.write(record)
                        count += 1
                        received += 1
                        positions[tp] = record.offset + 1
                    else:
                        positions[tp] = fetched.next_offset
                printer.out.flush()
                if received:
                    idle_since = time.monotonic()
    finally:
        print(f"Processed a total of {count} messages", file=sys.stderr)
    return EXIT_OK


async def _on_fetch_error(fetched) -> None:
    if fetched.error_code in RETRIABLE_ERRORS:  # the client refreshes metadata; try again after a pause
        await asyncio.sleep(_RETRY_BACKOFF_S)
        return
    message = None
    if fetched.error_code == ErrorCode.OFFSET_OUT_OF_RANGE:
        message = (f"Fetch failed for partition {fetched.topic}-{fetched.partition} "
                   f"(valid offsets: {fetched.log_start_offset}..{fetched.high_watermark})")
    raise error_from_code(fetched.error_code, message, api="Fetch",
                          resource=f"partition {fetched.topic}-{fetched.partition}")


def _add_consume(commands, common) -> None:
    consume = commands.add_parser(
        "consume", parents=[common], help="print records of a topic",
        description="Reads TOPIC (all partitions, or --partition) without a consumer group and prints "
                    "each record. Starts at the log end unless --from-beginning or --offset is given.")
    consume.add_argument("topic", metavar="TOPIC")
    consume.add_argument("--partition", type=_non_negative_int, help="read only this partition")
    consume.add_argument("--from-beginning", action="store_true", help="start at the earliest offset")
    consume.add_argument("--offset", type=_start_offset, metavar="N|earliest|latest",
                         help="start offset (for every partition read)")
    consume.add_argument("--max-messages", type=_positive_int, metavar="N", help="exit after N records")
    consume.add_argument("--timeout-ms", type=_positive_int, metavar="T",
                         help="exit (status 0) after T ms without a new record")
    consume.add_argument("--format", choices=("text", "json"), default="text")
    consume.add_argument("--print-key", action="store_true", help="text format: print the key before the value")
    consume.add_argument("--print-headers", action="store_true", help="text format: print k:v,k2:v2 headers")
    consume.add_argument("--print-offset", action="store_true",
                         help="text format: print Partition:P and Offset:N first")
    consume.add_argument("--key-separator", metavar="SEP", help="text format: field separator (default tab)")
    consume.set_defaults(func=lambda a: _run(_consume, a))


# -- groups ------------------------------------------------------------------------------------------

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
    async with _client(args) as client:
        groups = await client.list_groups(args.state_filter or ())
    if args.state:
        print(format_table(["GROUP", "STATE"], [[g.group_id, g.state or "-"] for g in groups]))
    else:
        for group in groups:
            print(group.group_id)
    return EXIT_OK


async def _groups_describe(args: argparse.Namespace) -> int:
    async with _client(args) as client:
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
        indexes = sorted({_non_negative_int(p.strip()) for p in partitions.split(",") if p.strip()})
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
    async with _client(args) as client:
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
    async with _client(args) as client:
        await client.delete_groups([args.group])
    print(f"Deletion of requested consumer groups ('{args.group}') was successful.")
    return EXIT_OK


def _add_groups(commands, common) -> None:
    groups = commands.add_parser("groups", help="list, describe, reset offsets of and delete consumer groups")
    actions = groups.add_subparsers(dest="groups_command", required=True, metavar="ACTION")

    listing = actions.add_parser("list", parents=[common], help="list consumer group ids")
    listing.add_argument("--state", action="store_true", help="print each group's state too")
    listing.add_argument("--state-filter", action="append", metavar="STATE",
                         help="only groups in this state (Stable, Empty, ...); repeat for several")
    listing.set_defaults(func=lambda a: _run(_groups_list, a))

    describe = actions.add_parser(
        "describe", parents=[common], help="state, members, assignments, committed offsets and lag",
        description="Shows the group's state and protocol, per partition its committed offset, log end "
                    "offset, lag and owner, and per member its assigned partitions.")
    describe.add_argument("group", metavar="GROUP")
    describe.set_defaults(func=lambda a: _run(_groups_describe, a))

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
    how.add_argument("--to-offset", type=_non_negative_int, metavar="N", help="offset N")
    how.add_argument("--shift-by", type=int, metavar="N", help="the committed offset plus N (may be negative)")
    how.add_argument("--to-datetime", type=_iso_datetime_ms, metavar="ISO",
                     help="the first offset at or after this time (YYYY-MM-DDTHH:mm:SS.sss[+zone])")
    reset.add_argument("--execute", action="store_true", help="commit the new offsets (default: dry run)")
    reset.add_argument("--dry-run", action="store_true", help="only print the plan (the default)")
    reset.set_defaults(func=lambda a: _run(_groups_reset_offsets, a))

    delete = actions.add_parser("delete", parents=[common],
                                help="delete an empty group and its committed offsets")
    delete.add_argument("group", metavar="GROUP")
    delete.set_defaults(func=lambda a: _run(_groups_delete, a))


def add_commands(subparsers) -> None:
    """Adds ``topics``, ``produce``, ``consume``, ``groups`` and ``perf`` to the ``kraftpy`` command's subparsers."""
    from cluster.perf import add_perf  # cluster.perf builds on this module's helpers

    common = _common_options()
    _add_topics(subparsers, common)
    _add_produce(subparsers, common)
    _add_consume(subparsers, common)
    _add_groups(subparsers, common)
    add_perf(subparsers, common)
