"""The history of a Jepsen-style test: every client and nemesis operation, as JSON lines.

A test's only evidence is what real clients saw, so every operation is recorded twice: an `invoke` when a
worker starts it and a completion when it ends, `ok` (it happened), `fail` (it definitely did not happen)
or `info` (indeterminate: timeout, lost connection).  The checker is a pure function of this file, so a
history can be re-checked, shared, or written by hand for a unit test.

One line per op: {"index", "time_ns", "process", "type", "f", "value", ...}.  Value shapes follow
Jepsen's queue workload (jepsen/tests/kafka.clj) with one micro-op per op:

  f=send       invoke [[key, value], ...]          ok/info  [[key, [offset, value]], ...]  (offset may be null)
  f=poll       invoke null                         ok       {key: [[offset, value], ...], ...}
  f=assign     [key, ...]  (optional "seek_to_beginning": true) - replaces the consumer's partitions
  f=subscribe  [key, ...]
  f=txn        [["send", key, value_or_pair], ["poll", {key: pairs}], ...]  (general micro-op list)

Keys are integers (JSON object keys are strings on disk; `read_history` turns them back into ints).
Nemesis ops use process "nemesis" and type "info".  Optional fields: "error", "node", "rebalance_log".
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Iterable

OP_TYPES = ("invoke", "ok", "fail", "info")
CLIENT_FS = ("send", "poll", "txn", "assign", "subscribe")
NEMESIS_PROCESS = "nemesis"


class HistoryError(ValueError):
    """A history line that does not follow the format above (a harness bug, not a broker anomaly)."""


@dataclass(frozen=True)
class Op:
    index: int
    time_ns: int
    process: Any            # int for client workers, "nemesis" for fault injection
    type: str               # invoke | ok | fail | info
    f: str
    value: Any = None
    extra: dict = field(default_factory=dict)   # error, node, rebalance_log, seek_to_beginning, ...

    @property
    def is_client(self) -> bool:
        return self.process != NEMESIS_PROCESS and self.f in CLIENT_FS

    def to_json(self) -> dict:
        record = {"index": self.index, "time_ns": self.time_ns, "process": self.process,
                  "type": self.type, "f": self.f, "value": _value_to_json(self.f, self.value)}
        record.update(self.extra)
        return record


# -- value shapes ---------------------------------------------------------------------------------
#
# Inside the checker every op's value is seen as a list of micro-ops, like Jepsen's: ("send", k, v) where
# v is a bare value (not yet acknowledged) or an (offset, value) pair, and ("poll", {k: [(offset, v)]}).

def micro_ops(op: Op) -> list[tuple]:
    if op.f == "send":
        return [("send", k, v) for k, v in (op.value or [])]
    if op.f == "poll":
        return [("poll", op.value or {})]
    if op.f == "txn":
        return list(op.value or [])
    return []


def split_send_value(sent: Any) -> tuple[int | None, Any]:
    """(offset, value) of a send micro-op's payload: a pair once acknowledged, a bare value before."""
    if isinstance(sent, (list, tuple)) and len(sent) == 2:
        return sent[0], sent[1]
    return None, sent


def op_write_pairs(op: Op) -> dict[int, list[tuple[int | None, Any]]]:
    """key -> [(offset or None, value)] sent by this op, in op order."""
    out: dict[int, list] = {}
    for mop in micro_ops(op):
        if mop[0] == "send":
            out.setdefault(mop[1], []).append(split_send_value(mop[2]))
    return out


def op_read_pairs(op: Op) -> dict[int, list[tuple[int | None, Any]]]:
    """key -> [(offset, value)] polled by this op, in op order."""
    out: dict[int, list] = {}
    for mop in micro_ops(op):
        if mop[0] == "poll":
            for k, pairs in mop[1].items():
                out.setdefault(k, []).extend((o, v) for o, v in pairs)
    return out


def op_writes(op: Op) -> dict[int, list]:
    return {k: [v for _, v in pairs] for k, pairs in op_write_pairs(op).items()}


def op_reads(op: Op) -> dict[int, list]:
    return {k: [v for _, v in pairs] for k, pairs in op_read_pairs(op).items()}


def _value_to_json(f: str, value: Any) -> Any:
    if f == "poll" and isinstance(value, dict):
        return {str(k): [list(p) for p in pairs] for k, pairs in value.items()}
    return value


def _pairs(raw: Any) -> list[tuple]:
    return [tuple(p) for p in raw]


def _poll_from_json(raw: Any) -> dict[int, list[tuple]]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise HistoryError(f"poll value must be an object, got {raw!r}")
    return {int(k): _pairs(pairs) for k, pairs in raw.items()}


def _send_from_json(raw: Any) -> list[tuple]:
    out = []
    for item in raw or []:
        k, v = item
        out.append((int(k), tuple(v) if isinstance(v, list) else v))
    return out


def _txn_from_json(raw: Any) -> list[tuple]:
    out = []
    for mop in raw or []:
        if mop[0] == "send":
            out.append(("send", int(mop[1]), tuple(mop[2]) if isinstance(mop[2], list) else mop[2]))
        elif mop[0] == "poll":
            out.append(("poll", _poll_from_json(mop[1] if len(mop) > 1 else None)))
        else:
            raise HistoryError(f"unknown micro-op {mop!r}")
    return out


def op_from_json(record: dict) -> Op:
    try:
        f, kind, raw = record["f"], record["type"], record.get("value")
        if kind not in OP_TYPES:
            raise HistoryError(f"type must be one of {OP_TYPES}, got {kind!r}")
        if record["process"] == NEMESIS_PROCESS:
            value = raw
        elif f == "send":
            value = _send_from_json(raw)
        elif f == "poll":
            value = None if raw is None else _poll_from_json(raw)
        elif f == "txn":
            value = _txn_from_json(raw)
        elif f in ("assign", "subscribe"):
            value = [int(k) for k in raw or []]
        else:
            value = raw
        extra = {k: v for k, v in record.items()
                 if k not in ("index", "time_ns", "process", "type", "f", "value")}
        return Op(int(record["index"]), int(record["time_ns"]), record["process"], kind, f, value, extra)
    except (KeyError, TypeError, ValueError) as exc:
        if isinstance(exc, HistoryError):
            raise
        raise HistoryError(f"malformed op {record!r}: {exc}") from exc


def read_history(path: str | Path) -> list[Op]:
    ops = []
    with open(path, encoding="utf-8") as handle:
        for line_no, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                ops.append(op_from_json(json.loads(line)))
            except json.JSONDecodeError as exc:
                raise HistoryError(f"{path}:{line_no}: not JSON: {exc}") from exc
    return ops


def write_history(path: str | Path, ops: Iterable[Op]) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        for op in ops:
            handle.write(json.dumps(op.to_json()) + "\n")


class HistoryRecorder:
    """Thread-safe recorder used by the harness: dense indexes, monotonic times since the test start,
    each op appended and flushed as it happens, so a crashed harness still leaves its evidence."""

    def __init__(self, sink: IO[str] | None = None) -> None:
        self._lock = threading.Lock()
        self._sink = sink
        self._t0_ns = time.monotonic_ns()
        self.ops: list[Op] = []

    def elapsed_ns(self) -> int:
        return time.monotonic_ns() - self._t0_ns

    def record(self, process: Any, kind: str, f: str, value: Any = None, **extra: Any) -> Op:
        with self._lock:
            op = Op(len(self.ops), self.elapsed_ns(), process, kind, f, value,
                    {k: v for k, v in extra.items() if v is not None})
            self.ops.append(op)
            if self._sink is not None:
                self._sink.write(json.dumps(op.to_json()) + "\n")
                self._sink.flush()
            return op
