"""The queue checker: Jepsen's Kafka analyses (jepsen/tests/kafka.clj) over a recorded history.

Why a separate pure module: the verdict must depend on nothing but the history file, so that any run can
be re-checked later and every rule can be unit-tested on a hand-written history of a few lines.

The analysis first rebuilds, for every key, the *log* the system must have had: offset -> set of values,
from every poll (ok, info or fail: a read_committed consumer must never show unsafe data) and from the
sends that must have committed (ok, or info with one of their values later read).  Offsets may have gaps
(transaction markers), so positions are compared as dense *indexes* into that log.  Then:

  inconsistent-offsets   one offset of a key holds two or more different values
  duplicate              one value appears at more than one offset of a key
  aborted-read           an ok poll read a value whose send failed (Jepsen: G1a)
  precommitted-read      one op polled a value it sent itself (read_committed forbids it)
  lost-write             v must have committed and some ok poll read a value at a later index of the same key,
                         yet no ok poll ever read v
  unseen                 at the end, acknowledged sends no ok poll ever read (lost, or merely late)
  poll-skip              two successive polls of a key by one process skip over known values
  nonmonotonic-poll      ... or go backwards / re-read (delta < 1)
  int-poll-skip, int-nonmonotonic-poll    the same between adjacent values inside one poll
  nonmonotonic-send      one process's later send to a key lands at or before its earlier one
  int-send-skip, int-nonmonotonic-send    the same between adjacent sends inside one op
  garbage-read           a poll returned a value nobody sent (not in kafka.clj, where it aborts the analysis)

Verdict as in Jepsen: invalid if any error type outside the allowed set is present.  Allowed always:
int-send-skip (transactions interleave); with subscribe also poll-skip and nonmonotonic-poll (rebalances).
Like the design note proposes, `unseen` alone gives "unknown" (it may be just late), not false.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Iterable

from jepsen_like.history import Op, op_read_pairs, op_reads, op_write_pairs, op_writes

ANOMALIES = (
    "inconsistent-offsets", "duplicate", "aborted-read", "precommitted-read", "lost-write", "unseen",
    "poll-skip", "nonmonotonic-poll", "int-poll-skip", "int-nonmonotonic-poll",
    "nonmonotonic-send", "int-send-skip", "int-nonmonotonic-send", "garbage-read",
)
ALWAYS_ALLOWED = frozenset({"int-send-skip"})
SUBSCRIBE_ALLOWED = frozenset({"poll-skip", "nonmonotonic-poll"})
MAX_EXAMPLES = 8

EXIT_VALID, EXIT_INVALID, EXIT_UNKNOWN, EXIT_HARNESS_ERROR = 0, 1, 2, 3


# -- indexes over the history ----------------------------------------------------------------------

def _values_by_type(ops: Iterable[Op], of) -> dict[str, dict[int, set]]:
    out: dict[str, dict[int, set]] = defaultdict(lambda: defaultdict(set))
    for op in ops:
        for k, vs in of(op).items():
            out[op.type][k].update(vs)
    return out


def must_have_committed(op: Op, ok_reads: dict[int, set]) -> bool:
    """ok, or info with at least one of its sent values read by an ok poll."""
    if op.type == "ok":
        return True
    if op.type != "info":
        return False
    return any(v in ok_reads.get(k, ()) for k, vs in op_writes(op).items() for v in vs)


@dataclass
class KeyOrder:
    """The version order of one key.  `log` maps offset -> values; `by_index` is one value per non-empty
    offset in offset order (dense); `by_value` maps a value to its (last) dense index."""
    log: dict[int, set]
    by_index: list
    by_value: dict

    @classmethod
    def from_log(cls, log: dict[int, set]) -> "KeyOrder":
        by_index = [min(log[o], key=repr) for o in sorted(log) if log[o]]
        return cls(log, by_index, {v: i for i, v in enumerate(by_index)})

    def dense(self) -> list[set]:
        return [self.log[o] for o in sorted(self.log) if self.log[o]]

    def index(self, v) -> int | None:
        return self.by_value.get(v)


def build_logs(client_ops: list[Op], ok_reads: dict[int, set]) -> dict[int, dict[int, set]]:
    logs: dict[int, dict[int, set]] = defaultdict(lambda: defaultdict(set))
    for op in client_ops:
        if op.type == "invoke":
            continue
        for k, pairs in op_read_pairs(op).items():
            for offset, v in pairs:
                if offset is not None:
                    logs[k][offset].add(v)
        if must_have_committed(op, ok_reads):
            for k, pairs in op_write_pairs(op).items():
                for offset, v in pairs:
                    if offset is not None:
                        logs[k][offset].add(v)
    return logs


# -- the analyses (each returns a list of error dicts) ------------------------------------------------

def inconsistent_offsets(logs: dict[int, dict[int, set]]) -> list[dict]:
    errors = []
    for k, log in sorted(logs.items()):
        index = 0
        for offset in sorted(log):
            values = log[offset]
            if len(values) >= 2:
                errors.append({"key": k, "offset": offset, "index": index, "values": sorted(values, key=repr)})
            if values:
                index += 1
    return errors


def duplicates(orders: dict[int, KeyOrder]) -> list[dict]:
    errors = []
    for k, order in sorted(orders.items()):
        offsets_of: dict[Any, list[int]] = defaultdict(list)
        for offset in sorted(order.log):
            for v in order.log[offset]:
                offsets_of[v].append(offset)
        for v, offsets in offsets_of.items():
            if len(offsets) > 1:
                errors.append({"key": k, "value": v, "count": len(offsets), "offsets": offsets})
    return errors


def aborted_reads(client_ops, failed_writes, writer_of) -> list[dict]:
    errors = []
    for op in client_ops:
        if op.type != "ok":
            continue
        for k, vs in op_reads(op).items():
            for v in vs:
                if v in failed_writes.get(k, ()):
                    errors.append({"key": k, "value": v, "writer": _ref(writer_of[k].get(v)), "reader": _ref(op)})
    return errors


def precommitted_reads(client_ops) -> list[dict]:
    errors = []
    for op in client_ops:
        reads = op_reads(op)
        for k, vs in op_writes(op).items():
            bad = set(vs) & set(reads.get(k, ()))
            if bad:
                errors.append({"key": k, "value": min(bad, key=repr), "op": _ref(op)})
    return errors


def lost_writes(orders, ok_reads, writer_of, readers_of) -> list[dict]:
    errors = []
    for k, read_values in sorted(ok_reads.items()):
        order = orders.get(k)
        if order is None:
            continue
        first_index: dict[Any, int] = {}
        last_index: dict[Any, int] = {}
        for i, values in enumerate(order.dense()):
            for v in values:
                first_index.setdefault(v, i)
                last_index[v] = i
        # Reading a value proves everything up to its earliest position existed; if a value sits at two
        # positions, the later one bounds nothing (kafka.clj's reasoning, kept).
        bound = max((first_index[v] for v in read_values if v in first_index), default=-1)
        if bound < 0:
            continue
        must_read = [v for v, i in sorted(last_index.items(), key=lambda item: item[1]) if i <= bound]
        max_read_value = next(iter(order.dense()[bound]))
        for v in must_read:
            if v in read_values:
                continue
            writer = writer_of[k].get(v)
            if writer is None or not must_have_committed(writer, ok_reads):
                continue
            errors.append({"key": k, "value": v, "index": first_index[v], "max_read_index": bound,
                           "writer": _ref(writer),
                           "max_read": _ref((readers_of[k].get(max_read_value) or [None])[0])})
    return errors


def garbage_reads(client_ops, writer_of) -> list[dict]:
    errors = []
    for op in client_ops:
        if op.type == "invoke":
            continue
        for k, vs in op_reads(op).items():
            for v in vs:
                if v not in writer_of[k]:
                    errors.append({"key": k, "value": v, "reader": _ref(op)})
    return errors


def _delta(order: KeyOrder | None, v1, v2) -> tuple[int, int | None, int | None]:
    """kafka.clj's rule: an unknown position counts as a step of exactly 1 (no claim either way)."""
    i1 = order.index(v1) if order else None
    i2 = order.index(v2) if order else None
    if i1 is None or i2 is None:
        return 1, i1, i2
    return i2 - i1, i1, i2


def _classify(order, k, v1, v2, ops_ref) -> tuple[str, dict] | None:
    delta, i1, i2 = _delta(order, v1, v2)
    if delta > 1:
        return "skip", {"key": k, "values": [v1, v2], "delta": delta,
                        "skipped": order.by_index[i1 + 1:i2], **ops_ref}
    if delta < 1:
        return "nonmonotonic", {"key": k, "values": [v1, v2], "delta": delta, **ops_ref}
    return None


def poll_skips_and_nonmonotonic(client_ops, orders) -> dict[str, list]:
    """Per process: the first value of each poll of k against the last value of that process's previous
    ok poll of k; an ok/info assign or subscribe forgets the keys it no longer holds."""
    found: dict[str, list] = {"skip": [], "nonmonotonic": []}
    last_reads: dict[Any, dict[int, Op]] = defaultdict(dict)
    for op in client_ops:
        mine = last_reads[op.process]
        if op.f in ("assign", "subscribe"):
            if op.type in ("ok", "info"):
                last_reads[op.process] = {k: o for k, o in mine.items() if k in set(op.value)}
            continue
        reads = {k: vs for k, vs in op_reads(op).items() if vs}
        for k, vs in reads.items():
            previous = mine.get(k)
            if previous is None:
                continue
            hit = _classify(orders.get(k), k, op_reads(previous)[k][-1], vs[0],
                            {"ops": [_ref(previous), _ref(op)]})
            if hit:
                found[hit[0]].append(hit[1])
        if op.type == "ok":
            for k in reads:
                mine[k] = op
    return found


def internal_skips_and_nonmonotonic(client_ops, orders, of) -> dict[str, list]:
    """Adjacent pairs of values for one key inside a single op (reads or writes, by `of`)."""
    found: dict[str, list] = {"skip": [], "nonmonotonic": []}
    for op in client_ops:
        if op.type == "invoke":
            continue
        rebalanced = {k for event in op.extra.get("rebalance_log", []) for k in event.get("keys", [])}
        for k, vs in of(op).items():
            if k in rebalanced:
                continue
            for v1, v2 in zip(vs, vs[1:], strict=False):
                hit = _classify(orders.get(k), k, v1, v2, {"op": _ref(op)})
                if hit:
                    found[hit[0]].append(hit[1])
    return found


def nonmonotonic_sends(client_ops, orders) -> list[dict]:
    errors = []
    last_sends: dict[Any, dict[int, Op]] = defaultdict(dict)
    for op in client_ops:
        if op.type not in ("ok", "info"):
            continue
        mine = last_sends[op.process]
        if op.f in ("assign", "subscribe"):
            last_sends[op.process] = {k: o for k, o in mine.items() if k in set(op.value)}
            continue
        sends = op_writes(op)
        for k, vs in sends.items():
            previous = mine.get(k)
            if previous is not None and vs:
                delta, _, _ = _delta(orders.get(k), op_writes(previous)[k][-1], vs[0])
                if delta < 1:
                    errors.append({"key": k, "values": [op_writes(previous)[k][-1], vs[0]], "delta": delta,
                                   "ops": [_ref(previous), _ref(op)]})
        for k in sends:
            mine[k] = op
    return errors


def unseen_series(client_ops) -> tuple[list[dict], dict[int, list]]:
    """After each ok send/poll: per key, how many acknowledged values no ok poll has read yet."""
    sent: dict[int, set] = defaultdict(set)
    polled: dict[int, set] = defaultdict(set)
    series = []
    for op in client_ops:
        if op.type != "ok" or op.f not in ("send", "poll", "txn"):
            continue
        for k, vs in op_reads(op).items():
            polled[k].update(vs)
        for k, vs in op_writes(op).items():
            sent[k].update(vs)
        for k in list(sent):
            sent[k] -= polled[k]
        series.append({"time_ns": op.time_ns, "unseen": {k: len(vs) for k, vs in sent.items() if vs}})
    final = {k: sorted(vs, key=repr) for k, vs in sorted(sent.items()) if vs}
    return series, final


# -- putting it together ------------------------------------------------------------------------------

def _ref(op: Op | None) -> dict | None:
    if op is None:
        return None
    return {"index": op.index, "process": op.process, "type": op.type, "f": op.f}


def op_stats(client_ops) -> dict:
    by_f: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for op in client_ops:
        if op.type != "invoke":
            by_f[op.f][op.type] += 1
    return {f: dict(types) for f, types in sorted(by_f.items())}


def summarise(name: str, errors: list, verdict) -> dict:
    sorted_errors = sorted(errors, key=lambda e: e.get("delta", 0)) if errors and "delta" in errors[0] else errors
    return {"valid?": verdict, "count": len(errors), "examples": sorted_errors[:MAX_EXAMPLES]}


def check(history: list[Op], *, subscribe: bool | None = None) -> dict:
    """Analyse a history; returns the results dict written to results.json."""
    client_ops = [op for op in history if op.is_client]
    ok_reads = _values_by_type(client_ops, op_reads).get("ok", {})
    failed_writes = _values_by_type([op for op in client_ops if op.type != "invoke"], op_writes).get("fail", {})
    writer_of: dict[int, dict] = defaultdict(dict)
    readers_of: dict[int, dict] = defaultdict(lambda: defaultdict(list))
    for op in client_ops:
        if op.type == "invoke":
            continue
        for k, vs in op_writes(op).items():
            for v in vs:
                writer_of[k][v] = op
        for k, vs in op_reads(op).items():
            for v in vs:
                readers_of[k][v].append(op)

    logs = build_logs(client_ops, ok_reads)
    orders = {k: KeyOrder.from_log(dict(log)) for k, log in logs.items()}
    polls = poll_skips_and_nonmonotonic(client_ops, orders)
    int_polls = internal_skips_and_nonmonotonic(client_ops, orders, op_reads)
    int_sends = internal_skips_and_nonmonotonic(client_ops, orders, op_writes)
    series, final_unseen = unseen_series(client_ops)

    errors = {
        "inconsistent-offsets": inconsistent_offsets(logs),
        "duplicate": duplicates(orders),
        "aborted-read": aborted_reads(client_ops, failed_writes, writer_of),
        "precommitted-read": precommitted_reads(client_ops),
        "lost-write": lost_writes(orders, ok_reads, writer_of, readers_of),
        "unseen": [{"key": k, "count": len(vs), "values": vs[:32]} for k, vs in final_unseen.items()],
        "poll-skip": polls["skip"],
        "nonmonotonic-poll": polls["nonmonotonic"],
        "int-poll-skip": int_polls["skip"],
        "int-nonmonotonic-poll": int_polls["nonmonotonic"],
        "nonmonotonic-send": nonmonotonic_sends(client_ops, orders),
        "int-send-skip": int_sends["skip"],
        "int-nonmonotonic-send": int_sends["nonmonotonic"],
        "garbage-read": garbage_reads(client_ops, writer_of),
    }
    if subscribe is None:
        subscribe = any(op.f == "subscribe" for op in client_ops)
    allowed = ALWAYS_ALLOWED | (SUBSCRIBE_ALLOWED if subscribe else frozenset())
    error_types = sorted(name for name, errs in errors.items() if errs)
    bad = [name for name in error_types if name not in allowed]

    anomalies = {}
    for name, errs in errors.items():
        if not errs or name in allowed:
            verdict = True
        elif name == "unseen":
            verdict = "unknown"
        else:
            verdict = False
        anomalies[name] = summarise(name, errs, verdict)

    if not bad:
        valid = True
    elif bad == ["unseen"]:
        valid = "unknown"
    else:
        valid = False
    info_causes = sorted({str(op.extra.get("error")) for op in client_ops if op.type == "info"})
    return {
        "valid?": valid,
        "error-types": error_types,
        "bad-error-types": bad,
        "anomalies": anomalies,
        "stats": op_stats(client_ops),
        "info-causes": info_causes,
        "unseen-series": series[-200:] if len(series) > 200 else series,
        "op-count": len(history),
    }


def exit_code(results: dict) -> int:
    valid = results.get("valid?")
    if valid is True:
        return EXIT_VALID
    if valid is False:
        return EXIT_INVALID
    return EXIT_UNKNOWN


def ops_lines(results: dict) -> list[str]:
    """The "ops: send 12 ok/1 info ..." line of a summary (none when there were no client ops)."""
    stats = results.get("stats", {})
    if not stats:
        return []
    return ["ops: " + "  ".join(
        f"{f} " + "/".join(f"{n} {t}" for t, n in sorted(types.items())) for f, types in stats.items())]


def checker_line(results: dict) -> str:
    return "checker: " + "  ".join(f"{name} {a['count']}" for name, a in results["anomalies"].items())


def valid_line(results: dict) -> str:
    bad = results["bad-error-types"]
    return f"valid: {str(results['valid?']).lower()}" + (f"  (bad: {', '.join(bad)})" if bad else "")


def summary(results: dict) -> str:
    lines = [*ops_lines(results), checker_line(results), valid_line(results)]
    valid = results["valid?"]
    lines.append({True: "Everything looks good!", False: "Analysis invalid!"}.get(
        valid, "Unknown: acknowledged writes never read, possibly just late."))
    return "\n".join(lines)
