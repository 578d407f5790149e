"""Console record formats: what `kraftpy produce` reads and `kraftpy consume` prints."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cluster.client.console import (
    RecordFormatError,
    decode_json_bytes,
    encode_json_bytes,
    format_json,
    format_text,
    parse_header_arg,
    parse_json_line,
    parse_text_line,
)
from cluster.client.types import ConsumerRecord


def record(**overrides) -> ConsumerRecord:
    fields = dict(topic="t", partition=2, offset=41, timestamp=1_700_000_000_123, timestamp_type=0,
                  key=b"k", value=b"v", headers=[])
    fields.update(overrides)
    return ConsumerRecord(**fields)


# -- text input --------------------------------------------------------------------------------------


def test_text_line_without_separator_is_the_value_with_null_key():
    parsed = parse_text_line(b"hello world", None)
    assert (parsed.key, parsed.value) == (None, b"hello world")


def test_text_line_splits_at_the_first_separator_only():
    parsed = parse_text_line(b"user1:a:b", b":")
    assert (parsed.key, parsed.value) == (b"user1", b"a:b")


def test_text_line_missing_the_separator_gets_a_null_key_like_kcat():
    parsed = parse_text_line(b"no-separator-here", b"|")
    assert (parsed.key, parsed.value) == (None, b"no-separator-here")


def test_text_line_with_multibyte_separator_and_empty_parts():
    parsed = parse_text_line(b"=>v", b"=>")
    assert (parsed.key, parsed.value) == (b"", b"v")
    assert parse_text_line(b"", b":").value == b""


def test_header_argument_keeps_equals_signs_in_the_value():
    assert parse_header_arg("trace=a=b") == ("trace", b"a=b")
    assert parse_header_arg("empty=") == ("empty", b"")
    with pytest.raises(RecordFormatError, match="key=value"):
        parse_header_arg("novalue")
    with pytest.raises(RecordFormatError):
        parse_header_arg("=v")


# -- json input ---------------------------------------------------------------------------------------


def test_json_line_with_every_field():
    parsed = parse_json_line(
        b'{"key": "k1", "value": "v1", "headers": [["h", "x"], ["h", null]], "partition": 3, "timestamp": 5}')
    assert parsed.key == b"k1"
    assert parsed.value == b"v1"
    assert parsed.headers == [("h", b"x"), ("h", None)]
    assert parsed.partition == 3
    assert parsed.timestamp_ms == 5


def test_json_line_defaults_and_header_object_form():
    parsed = parse_json_line('{"value": "only", "headers": {"a": "1"}}')
    assert (parsed.key, parsed.value, parsed.partition, parsed.timestamp_ms) == (None, b"only", None, None)
    assert parsed.headers == [("a", b"1")]


def test_json_line_accepts_base64_and_structured_values():
    parsed = parse_json_line('{"key": {"base64": "/wA="}, "value": {"a": [1, 2]}}')
    assert parsed.key == b"\xff\x00"
    assert parsed.value == b'{"a":[1,2]}'
    assert parse_json_line('{"value": 12}').value == b"12"


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("not json", "invalid JSON"),
        ("[1, 2]", "expected a JSON object"),
        ('{"value": "v", "partition": "0"}', "partition must be an integer"),
        ('{"value": "v", "partition": -1}', "partition must be >= 0"),
        ('{"value": "v", "timestamp": true}', "timestamp must be an integer"),
        ('{"value": {"base64": "***"}}', "invalid base64"),
        ('{"value": "v", "headers": 7}', "headers must be"),
        ('{"value": "v", "headers": [[1, "x"]]}', "header key"),
    ],
)
def test_json_line_errors_say_what_is_wrong(line, message):
    with pytest.raises(RecordFormatError, match=message):
        parse_json_line(line)


# -- output ------------------------------------------------------------------------------------------


def test_text_output_is_just_the_value_by_default():
    assert format_text(record(value=b"payload")) == b"payload\n"


def test_text_output_with_every_option_follows_kafkas_formatter_order():
    line = format_text(record(headers=[("a", b"1"), ("b", None)]),
                       print_key=True, print_headers=True, print_offset=True)
    assert line == b"Partition:2\tOffset:41\ta:1,b:null\tk\tv\n"


def test_text_output_prints_null_and_no_headers_markers():
    line = format_text(record(key=None, value=None), print_key=True, print_headers=True)
    assert line == b"NO_HEADERS\tnull\tnull\n"


def test_text_output_writes_bytes_unchanged_and_honours_separator():
    line = format_text(record(key=b"\xff", value=b"\x00\x01"), print_key=True, separator=b"|")
    assert line == b"\xff|\x00\x01\n"


def test_json_output_fields():
    obj = json.loads(format_json(record(headers=[("h", b"x")], timestamp_type=1)))
    assert obj == {
        "topic": "t", "partition": 2, "offset": 41, "timestamp": 1_700_000_000_123,
        "timestamp_type": "LogAppendTime", "key": "k", "value": "v", "headers": [["h", "x"]],
    }


def test_json_output_falls_back_to_base64_for_binary():
    obj = json.loads(format_json(record(key=None, value=b"\xff\xfe", headers=[("h", b"\x80")])))
    assert obj["key"] is None
    assert obj["value"] == {"base64": "//4="}
    assert obj["headers"] == [["h", {"base64": "gA=="}]]


def test_json_output_keeps_unicode_readable():
    text = format_json(record(value="héllo ✓".encode()))
    assert "héllo ✓" in text


def test_json_output_escapes_a_header_key_that_was_not_utf8():
    undecodable_key = b"\xff".decode("utf-8", "surrogateescape")
    text = format_json(record(headers=[(undecodable_key, b"v")]))
    text.encode("utf-8")  # must be writable as UTF-8
    assert json.loads(text)["headers"][0][1] == "v"


@given(st.one_of(st.none(), st.binary(max_size=40)))
def test_json_bytes_encoding_round_trips(data):
    assert decode_json_bytes(json.loads(json.dumps(encode_json_bytes(data))), "value") == data


@given(
    key=st.one_of(st.none(), st.binary(max_size=20)),
    value=st.one_of(st.none(), st.binary(max_size=40)),
    headers=st.lists(st.tuples(st.text(max_size=8), st.one_of(st.none(), st.binary(max_size=8))), max_size=4),
)
def test_consumer_json_output_is_valid_producer_json_input(key, value, headers):
    parsed = parse_json_line(format_json(record(key=key, value=value, headers=headers)))
    assert (parsed.key, parsed.value, parsed.headers) == (key, value, headers)
    assert (parsed.partition, parsed.timestamp_ms) == (2, 1_700_000_000_123)
