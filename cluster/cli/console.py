"""``kraftpy produce`` and ``kraftpy consume``: the console producer and consumer.

They do what kafka-console-producer.sh and kafka-console-consumer.sh do.  Partitioning on ``produce``
follows the Java client (murmur2 of the key; unkeyed records sticky per batch); see
``cluster.client.partitioner`` for why librdkafka's default differs.  ``consume`` assigns partitions itself
(no consumer group) and starts at the log end unless told otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import threading
import time
from collections import defaultdict

from cluster.cli.common import (
    ACKS,
    COMPRESSION_IDS,
    EXIT_OK,
    UsageError,
    kafka_client,
    non_negative_int,
    positive_int,
    run_command,
)
from cluster.client import (
    EARLIEST_TIMESTAMP,
    LATEST_TIMESTAMP,
    KafkaClient,
    KafkaResponseError,
    ProducerRecord,
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
from cluster.core.errors import ErrorCode

# Records per partition per Produce request, and records read from stdin per round.
_MAX_BATCH_RECORDS = 1000
_MAX_ROUND_RECORDS = 5000
_FETCH_MAX_WAIT_MS = 500
_RETRY_BACKOFF_S = 0.1


def _header_pair(text: str) -> tuple[str, bytes]:
    try:
        return parse_header_arg(text)
    except RecordFormatError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _start_offset(text: str) -> int | str:
    if text in ("earliest", "latest"):
        return text
    try:
        return non_negative_int(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"{text!r} is neither an offset >= 0 nor earliest/latest") from None


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
    acks = ACKS[args.acks]
    compression = COMPRESSION_IDS[args.compression]
    stats, sent, line_number = _ProduceStats(), 0, 1
    async with kafka_client(args) as client:
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


def add_produce(commands, common) -> None:
    produce = commands.add_parser(
        "produce", parents=[common], help="send lines of stdin as records",
        description="Reads records from stdin, one per line, and produces them to TOPIC. Without "
                    "--partition, keyed records go to murmur2(key) % partitions (Kafka's Java default; "
                    "librdkafka needs partitioner=murmur2_random to agree) and unkeyed records stick to "
                    "one partition per batch.")
    produce.add_argument("topic", metavar="TOPIC")
    produce.add_argument("--partition", type=non_negative_int, help="send every record to this partition")
    produce.add_argument("--key-separator", metavar="SEP",
                         help="text format: split each line into key SEP value at the first SEP")
    produce.add_argument("--header", type=_header_pair, action="append", metavar="KEY=VALUE",
                         help="a header added to every record; repeat for several")
    produce.add_argument("--acks", choices=sorted(ACKS), default="all",
                         help="0 = no response, 1 = leader appended, all = every in-sync replica (default)")
    produce.add_argument("--compression", choices=list(COMPRESSION_IDS), default="none")
    produce.add_argument("--format", choices=("text", "json"), default="text",
                         help='text: one value per line; json: {"key","value","headers","partition","timestamp"}')
    produce.set_defaults(func=lambda a: run_command(_produce, a))


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
        async with kafka_client(args) as client:
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


def add_consume(commands, common) -> None:
    consume = commands.add_parser(
        "consume", parents=[common], help="print records of a topic",
        description="Reads TOPIC (all partitions, or --partition) without a consumer group and prints "
                    "each record. Starts at the log end unless --from-beginning or --offset is given.")
    consume.add_argument("topic", metavar="TOPIC")
    consume.add_argument("--partition", type=non_negative_int, help="read only this partition")
    consume.add_argument("--from-beginning", action="store_true", help="start at the earliest offset")
    consume.add_argument("--offset", type=_start_offset, metavar="N|earliest|latest",
                         help="start offset (for every partition read)")
    consume.add_argument("--max-messages", type=positive_int, metavar="N", help="exit after N records")
    consume.add_argument("--timeout-ms", type=positive_int, metavar="T",
                         help="exit (status 0) after T ms without a new record")
    consume.add_argument("--format", choices=("text", "json"), default="text")
    consume.add_argument("--print-key", action="store_true", help="text format: print the key before the value")
    consume.add_argument("--print-headers", action="store_true", help="text format: print k:v,k2:v2 headers")
    consume.add_argument("--print-offset", action="store_true",
                         help="text format: print Partition:P and Offset:N first")
    consume.add_argument("--key-separator", metavar="SEP", help="text format: field separator (default tab)")
    consume.set_defaults(func=lambda a: run_command(_consume, a))
