"""Group helpers of the client and `kraftpy groups` logic that needs no broker: assignment decoding, the
reset-offsets plan (Kafka's ConsumerGroupCommand rules), the describe tables, argument parsing, version
ranges, and the coordinator retry loop (against a scripted ``send``)."""

from __future__ import annotations

import asyncio
import datetime
import struct

import pytest

from cluster.cli import build_parser
from cluster.cli import groups as groups_cli
from cluster.client import CLIENT_VERSIONS, ApiKey, KafkaResponseError, decode_consumer_assignment
from cluster.client.connection import negotiate_version
from cluster.client.groups import GroupDescription, GroupMember, GroupsMixin
from cluster.core.errors import ErrorCode, ProtocolDecodeError
from cluster.wire.messages import consumer_protocol_assignment as cpa
from cluster.wire.messages import delete_groups_response as dgr
from cluster.wire.messages import describe_groups_response as dsr
from cluster.wire.messages import find_coordinator_response as fcr

T = "orders"


def assignment_bytes(version: int, topics: dict[str, list[int]], user_data: bytes | None = None) -> bytes:
    body = cpa.ConsumerProtocolAssignment(
        assigned_partitions=[cpa.TopicPartition(topic=t, partitions=ps) for t, ps in topics.items()],
        user_data=user_data)
    return struct.pack(">h", version) + bytes(cpa.encode(body, min(version, 3)))


# -- assignment decoding ---------------------------------------------------------------------------------

@pytest.mark.parametrize("version", [0, 1, 2, 3])
def test_assignment_round_trips_every_version(version):
    data = assignment_bytes(version, {"b": [3, 1], "a": [0]}, user_data=b"sticky")
    assert decode_consumer_assignment(data) == {"a": [0], "b": [1, 3]}


def test_empty_assignment_is_no_partitions():
    assert decode_consumer_assignment(b"") == {}
    assert decode_consumer_assignment(None) == {}


def test_newer_assignment_version_is_read_with_the_newest_known_layout():
    assert decode_consumer_assignment(assignment_bytes(7, {T: [2]})) == {T: [2]}


@pytest.mark.parametrize("data", [b"\x00", b"\xff\xff", b"\x00\x00\x00\x00\x00\x05\x00"])
def test_malformed_assignment_raises_protocol_decode_error(data):
    with pytest.raises(ProtocolDecodeError):
        decode_consumer_assignment(data)


# -- reset plan ----------------------------------------------------------------------------------------------

PARTS = [(T, 0), (T, 1)]
EARLIEST = {(T, 0): 5, (T, 1): 0}
LATEST = {(T, 0): 20, (T, 1): 8}


def plan(strategy, value=None, committed=None, by_timestamp=None):
    return groups_cli.plan_reset(strategy, value, PARTS, committed or {}, EARLIEST, LATEST, by_timestamp)


def test_reset_to_earliest_and_latest():
    assert plan("to_earliest", True) == EARLIEST
    assert plan("to_latest", True) == LATEST


def test_reset_to_offset_is_clamped_into_the_log():
    assert plan("to_offset", 7) == {(T, 0): 7, (T, 1): 7}
    assert plan("to_offset", 0) == {(T, 0): 5, (T, 1): 0}
    assert plan("to_offset", 100) == LATEST


def test_shift_by_moves_from_the_committed_offset_and_clamps():
    committed = {(T, 0): 10, (T, 1): 7}
    assert plan("shift_by", -3, committed) == {(T, 0): 7, (T, 1): 4}
    assert plan("shift_by", 5, committed) == {(T, 0): 15, (T, 1): 8}
    assert plan("shift_by", -100, committed) == EARLIEST


def test_shift_by_without_a_committed_offset_is_refused():
    with pytest.raises(groups_cli.UsageError, match=f"{T}-1"):
        plan("shift_by", 1, {(T, 0): 10})


def test_to_datetime_uses_the_log_end_when_no_record_is_that_recent():
    assert plan("to_datetime", 0, by_timestamp={(T, 0): 12, (T, 1): -1}) == {(T, 0): 12, (T, 1): 8}


# -- describe tables -------------------------------------------------------------------------------------------

def group(members, state="Stable") -> GroupDescription:
    return GroupDescription("g", state, "consumer", "range", members, coordinator_id=1)


def test_lag_rows_join_committed_offsets_log_end_and_owners():
    member = GroupMember("m-1", None, "app", "/10.0.0.1", {T: [0]})
    rows = groups_cli.partition_lag_rows(group([member]), {(T, 0): 3, (T, 2): 9}, {(T, 0): 10, (T, 2): 9})
    assert rows == [
        ["g", T, "0", "3", "10", "7", "m-1", "/10.0.0.1", "app"],
        ["g", T, "2", "9", "9", "0", "-", "-", "-"],
    ]


def test_assigned_partition_without_commit_or_log_end_shows_dashes():
    member = GroupMember("m-1", "static-1", "app", "/h", {T: [1]})
    assert groups_cli.partition_lag_rows(group([member]), {}, {}) == [["g", T, "1", "-", "-", "-", "m-1", "/h", "app"]]


def test_member_rows_print_assignments_like_kafka():
    members = [GroupMember("m-1", "static-1", "app", "/h", {"b": [2], "a": [0, 1]}),
               GroupMember("m-2", None, "app", "/h", {})]
    assert groups_cli.member_rows(group(members)) == [
        ["g", "m-1", "static-1", "/h", "app", "3", "a(0,1), b(2)"],
        ["g", "m-2", "-", "/h", "app", "0", "-"],
    ]


def test_format_table_aligns_columns_two_spaces_apart():
    assert groups_cli.format_table(["A", "LONGER"], [["xyz", "1"]]).split("\n") == ["A    LONGER", "xyz  1"]


# -- arguments ------------------------------------------------------------------------------------------------

def parse(*argv):
    return build_parser().parse_args(list(argv))


def test_reset_offsets_arguments():
    args = parse("groups", "reset-offsets", "g", "--topic", "t:2,0", "--topic", "u", "--shift-by", "-3")
    assert args.topic == [("t", [0, 2]), ("u", None)]
    assert args.shift_by == -3 and args.to_earliest is None and not args.execute


def test_to_datetime_argument_reads_iso_with_and_without_zone():
    args = parse("groups", "reset-offsets", "g", "--all-topics", "--to-datetime", "2024-01-02T03:04:05.678Z")
    assert args.to_datetime == 1704164645678
    naive = parse("groups", "reset-offsets", "g", "--all-topics", "--to-datetime", "2024-01-02T03:04:05")
    assert naive.to_datetime == int(datetime.datetime(2024, 1, 2, 3, 4, 5).timestamp() * 1000)


@pytest.mark.parametrize("argv", [
    ["groups", "reset-offsets", "g", "--topic", "t", "--to-earliest", "--to-latest"],
    ["groups", "reset-offsets", "g", "--topic", "t:x", "--to-earliest"],
    ["groups", "reset-offsets", "g", "--topic", "t", "--all-topics", "--to-earliest"],
    ["groups", "describe"],
])
def test_bad_group_arguments_exit_with_usage_status(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        parse(*argv)
    assert exc.value.code == 2


def test_group_apis_negotiate_within_the_brokers_ranges():
    broker = {ApiKey.FIND_COORDINATOR: (0, 5), ApiKey.OFFSET_FETCH: (0, 9), ApiKey.OFFSET_COMMIT: (0, 9),
              ApiKey.DESCRIBE_GROUPS: (0, 5), ApiKey.LIST_GROUPS: (0, 5), ApiKey.DELETE_GROUPS: (0, 2)}
    chosen = {key: negotiate_version(key, broker, "b:1") for key in broker}
    assert chosen == {ApiKey.FIND_COORDINATOR: 3, ApiKey.OFFSET_FETCH: 7, ApiKey.OFFSET_COMMIT: 9,
                      ApiKey.DESCRIBE_GROUPS: 5, ApiKey.LIST_GROUPS: 4, ApiKey.DELETE_GROUPS: 2}
    assert all(CLIENT_VERSIONS[key][0] <= v <= CLIENT_VERSIONS[key][1] for key, v in chosen.items())


# -- coordinator retries -------------------------------------------------------------------------------------

class ScriptedClient(GroupsMixin):
    """GroupsMixin over a ``send`` that answers from a script and records (api_key, node_id)."""

    retries = 3
    retry_backoff_ms = 1

    def __init__(self, script):
        self.script = list(script)
        self.sent = []
        self.cluster = type("C", (), {"brokers": {1: None, 2: None}})()

    async def send(self, api_key, request, *, node_id=None, timeout_ms=None):
        self.sent.append((api_key, node_id))
        return self.script.pop(0)

    async def metadata(self, topics=None):
        return None


def coordinator(node_id, error=ErrorCode.NONE):
    return fcr.FindCoordinatorResponse(error_code=error, error_message=None, node_id=node_id, host="h", port=1)


def test_describe_finds_the_coordinator_again_after_not_coordinator():
    described = dsr.DescribedGroup(error_code=0, group_id="g", group_state="Stable", protocol_type="consumer",
                                   protocol_data="range", members=[dsr.DescribedGroupMember(
                                       member_id="m", client_id="c", client_host="/h",
                                       member_assignment=assignment_bytes(1, {T: [0, 1]}))])
    client = ScriptedClient([
        coordinator(-1, ErrorCode.COORDINATOR_NOT_AVAILABLE),
        coordinator(1),
        dsr.DescribeGroupsResponse(groups=[dsr.DescribedGroup(error_code=ErrorCode.NOT_COORDINATOR, group_id="g")]),
        coordinator(2),
        dsr.DescribeGroupsResponse(groups=[described]),
    ])
    result = asyncio.run(client.describe_group("g"))
    assert client.sent == [(ApiKey.FIND_COORDINATOR, None), (ApiKey.FIND_COORDINATOR, None),
                           (ApiKey.DESCRIBE_GROUPS, 1), (ApiKey.FIND_COORDINATOR, None), (ApiKey.DESCRIBE_GROUPS, 2)]
    assert (result.state, result.protocol, result.coordinator_id) == ("Stable", "range", 2)
    assert result.members[0].assignment == {T: [0, 1]}


def test_delete_reports_non_empty_group():
    client = ScriptedClient([coordinator(1), dgr.DeleteGroupsResponse(
        results=[dgr.DeletableGroupResult(group_id="g", error_code=ErrorCode.NON_EMPTY_GROUP)])])
    with pytest.raises(KafkaResponseError) as exc:
        asyncio.run(client.delete_groups(["g"]))
    assert exc.value.error_code is ErrorCode.NON_EMPTY_GROUP and "NON_EMPTY_GROUP" in str(exc.value)
