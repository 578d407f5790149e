"""`kraftpy topics|produce|consume` argument parsing and the output helpers that need no broker."""

from __future__ import annotations

import socket
import uuid

import pytest

from cluster.cli import build_parser, common, console, main, topics
from cluster.client.types import ConfigEntry, PartitionMetadata, ProduceResult, TopicMetadata


def parse(*argv):
    return build_parser().parse_args(list(argv))


def test_topics_create_arguments():
    args = parse("topics", "create", "orders", "--partitions", "6", "--replication-factor", "3",
                 "--config", "cleanup.policy=compact", "--config", "retention.ms=1000",
                 "--bootstrap-server", "h:1")
    assert (args.name, args.partitions, args.replication_factor) == ("orders", 6, 3)
    assert args.config == [("cleanup.policy", "compact"), ("retention.ms", "1000")]
    assert args.bootstrap_server == "h:1"


def test_topics_create_defaults_let_the_broker_decide():
    args = parse("topics", "create", "t")
    assert (args.partitions, args.replication_factor, args.config) == (-1, -1, None)
    assert args.bootstrap_server == "127.0.0.1:9092"


@pytest.mark.parametrize("argv", [
    ["topics", "create", "t", "--config", "novalue"],
    ["topics", "create", "t", "--partitions", "0"],
    ["topics", "alter", "t"],  # --partitions is required
    ["topics", "frobnicate"],
    ["produce", "t", "--acks", "2"],
    ["produce", "t", "--compression", "brotli"],
    ["produce", "t", "--header", "nokey"],
    ["consume", "t", "--offset", "-1"],
    ["consume", "t", "--offset", "soon"],
    ["consume", "t", "--max-messages", "0"],
])
def test_bad_arguments_exit_with_usage_status(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        parse(*argv)
    assert exit_info.value.code == 2
    assert "error:" in capsys.readouterr().err


def test_produce_arguments():
    args = parse("produce", "t", "--partition", "1", "--key-separator", ":", "--header", "a=1",
                 "--header", "b=x=y", "--acks", "1", "--compression", "zstd", "--format", "json")
    assert (args.topic, args.partition, args.key_separator) == ("t", 1, ":")
    assert args.header == [("a", b"1"), ("b", b"x=y")]
    assert common.ACKS[args.acks] == 1
    assert common.COMPRESSION_IDS[args.compression] == 4
    assert common.ACKS[parse("produce", "t").acks] == -1  # acks=all by default, like Kafka 3.x


def test_consume_arguments():
    args = parse("consume", "t", "--offset", "7", "--max-messages", "3", "--timeout-ms", "1500",
                 "--print-key", "--print-headers", "--print-offset", "--format", "text")
    assert (args.offset, args.max_messages, args.timeout_ms) == (7, 3, 1500)
    assert args.print_key and args.print_headers and args.print_offset
    assert parse("consume", "t", "--offset", "earliest").offset == "earliest"
    assert parse("consume", "t", "--from-beginning").from_beginning


def test_from_beginning_with_offset_is_a_usage_error(capsys):
    assert main(["consume", "t", "--from-beginning", "--offset", "3"]) == 2
    assert "--from-beginning and --offset cannot be used together" in capsys.readouterr().err


def test_unreachable_bootstrap_exits_2_naming_the_address(capsys):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    assert main(["topics", "list", "--bootstrap-server", f"127.0.0.1:{port}"]) == 2
    err = capsys.readouterr().err
    assert f"127.0.0.1:{port}" in err and "connection refused" in err


def test_malformed_bootstrap_exits_2(capsys):
    assert main(["topics", "list", "--bootstrap-server", "localhost"]) == 2
    assert "expected host:port" in capsys.readouterr().err


def test_describe_layout_shows_partitions_epochs_and_only_non_default_configs():
    topic = TopicMetadata(
        name="t", topic_id=uuid.UUID(int=5), is_internal=False,
        partitions={
            1: PartitionMetadata(1, leader_id=2, leader_epoch=4, replica_nodes=(2, 1), isr_nodes=(2,),
                                 offline_replicas=(1,)),
            0: PartitionMetadata(0, leader_id=1, leader_epoch=0, replica_nodes=(1, 2), isr_nodes=(1, 2)),
        })
    configs = [ConfigEntry("segment.bytes", "1024", source=1), ConfigEntry("retention.ms", "1", source=5),
               ConfigEntry("cleanup.policy", "compact", source=4)]
    lines = topics.describe_topic_lines(topic, configs).split("\n")
    assert lines[0] == (f"Topic: t\tTopicId: {uuid.UUID(int=5)}\tPartitionCount: 2\tReplicationFactor: 2\t"
                        "Configs: cleanup.policy=compact,segment.bytes=1024")
    assert lines[1] == "\tTopic: t\tPartition: 0\tLeader: 1\tReplicas: 1,2\tIsr: 1,2\tLeaderEpoch: 0"
    assert lines[2] == "\tTopic: t\tPartition: 1\tLeader: 2\tReplicas: 2,1\tIsr: 2\tLeaderEpoch: 4\tOffline: 1"


def test_produce_summary_aggregates_offsets_per_partition():
    stats = console._ProduceStats()
    stats.add(ProduceResult("t", 0, base_offset=10, log_append_time_ms=-1, log_start_offset=0, record_count=3))
    stats.add(ProduceResult("t", 0, base_offset=13, log_append_time_ms=-1, log_start_offset=0, record_count=2))
    stats.add(ProduceResult("t", 1, base_offset=0, log_append_time_ms=-1, log_start_offset=0, record_count=1))
    assert stats.summary("t", acks=1, sent=6) == (
        "Produced 6 records to t (partition 0: offsets 10..14, partition 1: offsets 0..0).")
    assert "acks=0" in console._ProduceStats().summary("t", acks=0, sent=4)


def test_chunks_cap_records_per_partition_per_request():
    batches = {("t", 0): list(range(2500)), ("t", 1): list(range(10))}
    chunks = list(console._chunks(batches))
    assert [{tp: len(r) for tp, r in c.items()} for c in chunks] == [
        {("t", 0): 1000, ("t", 1): 10}, {("t", 0): 1000}, {("t", 0): 500}]


def test_stdin_lines_strip_newlines_and_keep_a_last_unterminated_line():
    import asyncio
    import io

    async def read_all(data: bytes, limit: int) -> list[list[bytes]]:
        stdin = console._StdinLines(io.BufferedReader(io.BytesIO(data)), asyncio.get_running_loop())
        rounds = []
        while lines := await stdin.next_round(limit):
            rounds.append(lines)
        return rounds

    rounds = asyncio.run(read_all(b"a\r\n\nb\r\nlast", 1000))
    assert [line for r in rounds for line in r] == [b"a", b"", b"b", b"last"]
    many = asyncio.run(read_all(b"".join(b"%d\n" % i for i in range(50_000)), 5000))
    assert [line for r in many for line in r] == [b"%d" % i for i in range(50_000)]
    assert len(many) < 100  # whole chunks cross the thread, not single lines


def test_a_record_for_a_missing_partition_stops_the_round_after_the_records_before_it():
    from cluster.client.console import InputRecord
    from cluster.client.partitioner import StickyPartitioner
    from cluster.core.errors import ErrorCode

    topic = TopicMetadata(name="t", topic_id=None, is_internal=False,
                          partitions={0: PartitionMetadata(0, 1, 0, (1,), (1,))})
    args = parse("produce", "t")
    records = [InputRecord(value=b"ok", partition=0), InputRecord(value=b"bad", partition=3),
               InputRecord(value=b"after")]
    batches, error = console._assign_partitions(records, args, topic, StickyPartitioner(), [("h", b"1")])
    assert {tp: [r.value for r in rs] for tp, rs in batches.items()} == {("t", 0): [b"ok"]}
    assert batches[("t", 0)][0].headers == [("h", b"1")]
    assert error.error_code == ErrorCode.UNKNOWN_TOPIC_OR_PARTITION and "no partition 3" in str(error)
