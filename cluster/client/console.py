"""Records as lines of text: what the console producer reads and the console consumer prints.

Kept apart from the command-line plumbing so the formats can be tested without a broker and reused by
tools.  Two formats:

* ``text``: one record per line.  Input is ``value`` or, with a key separator, ``key SEP value`` split
  at the first separator (a line without it is sent with a null key, as kcat does).  Output follows
  Kafka's DefaultMessageFormatter: optional ``Partition:P<TAB>Offset:N``, headers (``k:v,k2:v2`` or
  ``NO_HEADERS``), key (``null`` when absent), then the value, separated by a tab; bytes are written
  as they are.
* ``json``: one object per line, ``{"topic", "partition", "offset", "timestamp", "timestamp_type",
  "key", "value", "headers"}`` on output; input reads ``key``, ``value``, ``headers``, ``partition``
  and ``timestamp`` and ignores the rest, so consumer output can be fed back to the producer.  Keys,
  values and header values are UTF-8 strings, ``null``, or ``{"base64": "..."}`` for bytes that are
  not valid UTF-8.  Headers are a list of ``[key, value]`` pairs (repeated keys are legal in Kafka);
  input also accepts an object ``{"k": "v"}``.  On input, any other JSON value (a number, an object)
  is sent as its compact JSON text, which is what a user typing ``"value": {"a": 1}`` means.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass, field

from cluster.client.types import ConsumerRecord

__all__ = [
    "InputRecord",
    "RecordFormatError",
    "decode_json_bytes",
    "encode_json_bytes",
    "format_json",
    "format_text",
    "parse_header_arg",
    "parse_json_line",
    "parse_text_line",
]

_TIMESTAMP_TYPES = {0: "CreateTime", 1: "LogAppendTime"}


class RecordFormatError(ValueError):
    """An input line that cannot become a record; the message says why."""


@dataclass(slots=True)
class InputRecord:
    value: bytes | None
    key: bytes | None = None
    headers: list[tuple[str, bytes | None]] = field(default_factory=list)
    partition: int | None = None
    timestamp_ms: int | None = None


def parse_header_arg(text: str) -> tuple[str, bytes]:
    """``--header k=v`` into ``("k", b"v")``; the value may contain '=' and may be empty."""
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise RecordFormatError(f"header {text!r} is not of the form key=value")
    return name, value.encode("utf-8")


def parse_text_line(line: bytes, key_separator: bytes | None) -> InputRecord:
    """A text line (without its newline) into key and value."""
    if key_separator:
        key, sep, value = line.partition(key_separator)
        if sep:
            return InputRecord(value=value, key=key)
    return InputRecord(value=line)


def encode_json_bytes(data: bytes | None):
    """Bytes as a JSON value: the UTF-8 string, null, or ``{"base64": ...}`` when not UTF-8."""
    if data is None:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return {"base64": base64.b64encode(data).decode("ascii")}


def decode_json_bytes(value, what: str) -> bytes | None:
    """Inverse of ``encode_json_bytes``; other JSON values become their compact JSON text."""
    if value is None:
        return None
    if isinstance(value, str):
        return value.encode("utf-8")
    if isinstance(value, dict) and set(value) == {"base64"}:
        if not isinstance(value["base64"], str):
            raise RecordFormatError(f"{what}: base64 must be a string")
        try:
            return base64.b64decode(value["base64"], validate=True)
        except binascii.Error as exc:
            raise RecordFormatError(f"{what}: invalid base64 ({exc})") from None
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _parse_json_headers(raw) -> list[tuple[str, bytes | None]]:
    if raw is None:
        return []
    if isinstance(raw, dict):
        pairs = list(raw.items())
    elif isinstance(raw, list):
        pairs = []
        for item in raw:
            if isinstance(item, list | tuple) and len(item) == 2:
                pairs.append((item[0], item[1]))
            elif isinstance(item, dict) and "key" in item:
                pairs.append((item["key"], item.get("value")))
            else:
                raise RecordFormatError(f"header {item!r} is neither [key, value] nor {{\"key\", \"value\"}}")
    else:
        raise RecordFormatError("headers must be a list of [key, value] pairs or an object")
    headers = []
    for key, value in pairs:
        if not isinstance(key, str):
            raise RecordFormatError(f"header key {key!r} is not a string")
        headers.append((key, decode_json_bytes(value, f"header {key!r}")))
    return headers


def _optional_int(obj: dict, name: str) -> int | None:
    value = obj.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise RecordFormatError(f"{name} must be an integer, got {value!r}")
    return value


def parse_json_line(line: bytes | str) -> InputRecord:
    """One JSON object per line into a record; raises RecordFormatError saying what is wrong."""
    try:
        obj = json.loads(line)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise RecordFormatError(f"invalid JSON ({exc})") from None
    if not isinstance(obj, dict):
        raise RecordFormatError(f"expected a JSON object, got {type(obj).__name__}")
    partition = _optional_int(obj, "partition")
    if partition is not None and partition < 0:
        raise RecordFormatError(f"partition must be >= 0, got {partition}")
    return InputRecord(
        value=decode_json_bytes(obj.get("value"), "value"),
        key=decode_json_bytes(obj.get("key"), "key"),
        headers=_parse_json_headers(obj.get("headers")),
        partition=partition,
        timestamp_ms=_optional_int(obj, "timestamp"),
    )


def _text_or_null(data: bytes | None) -> bytes:
    return b"null" if data is None else data


def format_text(
    record: ConsumerRecord,
    *,
    print_key: bool = False,
    print_headers: bool = False,
    print_offset: bool = False,
    separator: bytes = b"\t",
) -> bytes:
    """One output line (with its newline), in Kafka's console-consumer layout."""
    fields = []
    if print_offset:
        fields.append(b"Partition:%d" % record.partition)
        fields.append(b"Offset:%d" % record.offset)
    if print_headers:
        if record.headers:
            fields.append(b",".join(
                key.encode("utf-8", "surrogateescape") + b":" + _text_or_null(value)
                for key, value in record.headers
            ))
        else:
            fields.append(b"NO_HEADERS")
    if print_key:
        fields.append(_text_or_null(record.key))
    fields.append(_text_or_null(record.value))
    return separator.join(fields) + b"\n"


def format_json(record: ConsumerRecord) -> str:
    """One JSON object (no newline) describing the record."""
    obj = {
        "topic": record.topic,
        "partition": record.partition,
        "offset": record.offset,
        "timestamp": record.timestamp,
        "timestamp_type": _TIMESTAMP_TYPES.get(record.timestamp_type, str(record.timestamp_type)),
        "key": encode_json_bytes(record.key),
        "value": encode_json_bytes(record.value),
        "headers": [[key, encode_json_bytes(value)] for key, value in record.headers],
    }
    text = json.dumps(obj, ensure_ascii=False)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # a header key that was not UTF-8 (kept as surrogates): escape it
        text = json.dumps(obj, ensure_ascii=True)
    return text
