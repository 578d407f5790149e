"""The stream checker: what the stream workload's history (stream.py) proves, partition by partition.

A pure function of the history, like the queue checker, so a run can be re-checked and every rule tested on a
hand-written history.  The final read (every partition from offset 0 to its high_watermark, after healing) is
taken as the log; each value names its producer and sequence (`i0-0:17`), so:

  lost                       acknowledged, but not in the final read of its partition
  duplicate-idempotent       a value from an idempotent producer at more than one offset of the final read
  duplicate-non-idempotent   the same for a producer without idempotence: expected after retries, reported only
  reordered                  one idempotent producer, one partition: acknowledged values whose offsets are not in
                             sequence (send) order
  inconsistent-offsets       the delivery report's offset is not where the final read found the value, or two
                             reads (group members, final reader) disagree about which value sits at an offset
  group-skip                 an offset below the highest the consumer group read on a partition that no member
                             ever read (committed offsets must give at-least-once delivery across rebalances)
  garbage-read               a read value nobody sent

Invalid if any of them but duplicate-non-idempotent is present; "unknown" if nothing is wrong but the final read
did not reach some partition's high_watermark (losses there cannot be judged).  Availability is reported apart
and never changes the verdict: per partition the longest stretch without an acknowledged write (max gap), and,
from the brokers' logs, which fencings hit a broker that no fault had touched.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from jepsen_like.checker import checker_line, op_stats, ops_lines, summarise, valid_line
from jepsen_like.history import Op, split_send_value
from jepsen_like.stream import decode_value, is_idempotent

BAD = ("lost", "duplicate-idempotent", "reordered", "inconsistent-offsets", "group-skip", "garbage-read")
REPORTED_ONLY = ("duplicate-non-idempotent",)
ANOMALIES = BAD[:2] + REPORTED_ONLY + BAD[2:]


@dataclass
class Send:
    partition: int
    value: str
    outcome: str                 # ok | info | fail
    offset: int | None           # from the delivery report (ok only)
    time_ns: int


@dataclass
class Reads:
    """Everything read from one partition: by the group during the run and by the final reader."""
    final: dict[int, str]                  # offset -> value (the log)
    all: dict[int, set]                    # offset -> values, every read
    group_offsets: set


def collect_sends(ops: list[Op]) -> tuple[dict[str, Send], set]:
    """value -> its send's outcome (an ok report wins over any other), and every value ever invoked."""
    sends: dict[str, Send] = {}
    invoked: set = set()
    for op in ops:
        if op.f != "send":
            continue
        for partition, payload in op.value or []:
            offset, value = split_send_value(payload)
            if op.type == "invoke":
                invoked.add(value)
            elif value not in sends or op.type == "ok":
                sends[value] = Send(partition, value, op.type, offset, op.time_ns)
    return sends, invoked


def collect_reads(ops: list[Op]) -> dict[int, Reads]:
    reads: dict[int, Reads] = defaultdict(lambda: Reads({}, defaultdict(set), set()))
    for op in ops:
        if op.f != "poll" or op.type != "ok":
            continue
        final = bool(op.extra.get("final"))
        for partition, pairs in (op.value or {}).items():
            mine = reads[partition]
            for offset, value in pairs:
                mine.all[offset].add(value)
                if final:
                    mine.final[offset] = value
                else:
                    mine.group_offsets.add(offset)
    return reads


def final_read_result(ops: list[Op]) -> dict:
    """The final-read op's value with integer partition keys; {} if the run never got that far."""
    done = [op for op in ops if op.f == "final-read" and op.type == "ok"]
    if not done:
        return {}
    raw = done[-1].value
    return {"complete": raw.get("complete", False),
            "high_watermark": {int(p): hw for p, hw in raw.get("high_watermark", {}).items()},
            "reached": {int(p): r for p, r in raw.get("reached", {}).items()}}


def offsets_of(final: dict[int, str]) -> dict[str, list[int]]:
    out: dict[str, list[int]] = defaultdict(list)
    for offset in sorted(final):
        out[final[offset]].append(offset)
    return out


# -- the rules (each returns error dicts for one partition) ---------------------------------------------------

def lost(partition: int, acked: list[Send], where: dict[str, list[int]]) -> list[dict]:
    return [{"partition": partition, "value": s.value, "offset": s.offset} for s in acked if s.value not in where]


def duplicated(partition: int, where: dict[str, list[int]], idempotent: bool) -> list[dict]:
    out = []
    for value, offsets in where.items():
        decoded = decode_value(value)
        if len(offsets) > 1 and decoded is not None and is_idempotent(decoded[0]) == idempotent:
            out.append({"partition": partition, "value": value, "offsets": offsets})
    return out


def reordered(partition: int, acked: list[Send], where: dict[str, list[int]]) -> list[dict]:
    """Per idempotent producer: its acknowledged values in sequence order must sit at increasing offsets."""
    by_producer: dict[str, list[tuple[int, str, int]]] = defaultdict(list)
    for s in acked:
        decoded = decode_value(s.value)
        if decoded is not None and is_idempotent(decoded[0]) and s.value in where:
            by_producer[decoded[0]].append((decoded[1], s.value, where[s.value][0]))
    out = []
    for producer, entries in sorted(by_producer.items()):
        entries.sort()
        for (_, v1, o1), (_, v2, o2) in zip(entries, entries[1:], strict=False):
            if o2 <= o1:
                out.append({"partition": partition, "producer": producer, "values": [v1, v2], "offsets": [o1, o2]})
    return out


def inconsistent(partition: int, acked: list[Send], reads: Reads, where: dict[str, list[int]]) -> list[dict]:
    out = []
    for s in acked:
        if s.offset is not None and s.value in where and s.offset not in where[s.value]:
            out.append({"partition": partition, "value": s.value, "acknowledged_offset": s.offset,
                        "final_offsets": where[s.value]})
    for offset in sorted(reads.all):
        if len(reads.all[offset]) > 1:
            out.append({"partition": partition, "offset": offset, "values": sorted(reads.all[offset])})
    return out


def group_skips(partition: int, reads: Reads) -> list[dict]:
    """Offsets of the final log below the group's highest read offset that no member read."""
    if not reads.group_offsets:
        return []
    highest = max(reads.group_offsets)
    skipped = [o for o in sorted(reads.final) if o < highest and o not in reads.group_offsets]
    return [{"partition": partition, "offset": o, "value": reads.final[o], "group_highest_offset": highest}
            for o in skipped]


def garbage(partition: int, reads: Reads, invoked: set) -> list[dict]:
    return [{"partition": partition, "offset": o, "value": v}
            for o in sorted(reads.all) for v in sorted(reads.all[o]) if v not in invoked]


# -- availability ---------------------------------------------------------------------------------------------

def max_ack_gaps(sends: dict[str, Send], partitions: list[int], start_ns: int, end_ns: int) -> dict[int, dict]:
    """partition -> the longest stretch of the workload without an acknowledged write, and when it began."""
    times: dict[int, list[int]] = defaultdict(list)
    for s in sends.values():
        if s.outcome == "ok":
            times[s.partition].append(s.time_ns)
    out = {}
    for p in partitions:
        points = [start_ns, *sorted(t for t in times[p] if start_ns <= t <= end_ns), end_ns]
        gap, began = max((b - a, a) for a, b in zip(points, points[1:], strict=False))
        out[p] = {"max_gap_s": round(gap / 1e9, 3), "from_s": round(began / 1e9, 3)}
    return out


def unexpected_fencing(fencings: list[dict], windows: list[dict], slack_s: float = 5.0) -> list[dict]:
    """Fencings of a broker that was neither paused nor dead at the time (nor in the `slack_s` after, while a
    resumed or restarted broker finds the controller again): a broker that kept running and heartbeating must
    stay unfenced.  `fencings`: [{"at_s", "brokers"}] on the history's clock; `windows`: fault_windows()."""
    touched = [w for w in windows if w["kind"] in ("kill", "pause", "lose-unfsynced") and w.get("node")]
    out = []
    for fence in fencings:
        for broker in fence["brokers"]:
            node = f"n{broker}"
            excused = any(w["node"] == node and w["start_s"] <= fence["at_s"] <= w["end_s"] + slack_s
                          for w in touched)
            if not excused:
                out.append({"broker": broker, "at_s": fence["at_s"], "line": fence.get("line")})
    return out


# -- putting it together --------------------------------------------------------------------------------------

def check_stream(history: list[Op]) -> dict:
    ops = [op for op in history if op.process != "nemesis"]
    sends, invoked = collect_sends(ops)
    reads = collect_reads(ops)
    final = final_read_result(ops)
    partitions = sorted(set(final.get("high_watermark", {})) | {s.partition for s in sends.values()} | set(reads))
    errors: dict[str, list] = {name: [] for name in ANOMALIES}
    per_partition = {}
    for p in partitions:
        acked = sorted((s for s in sends.values() if s.partition == p and s.outcome == "ok"), key=lambda s: s.time_ns)
        mine = reads[p]
        where = offsets_of(mine.final)
        found = {
            "lost": lost(p, acked, where) if final.get("reached", {}).get(p) else [],
            "duplicate-idempotent": duplicated(p, where, idempotent=True),
            "duplicate-non-idempotent": duplicated(p, where, idempotent=False),
            "reordered": reordered(p, acked, where),
            "inconsistent-offsets": inconsistent(p, acked, mine, where),
            "group-skip": group_skips(p, mine),
            "garbage-read": garbage(p, mine, invoked),
        }
        for name, errs in found.items():
            errors[name].extend(errs)
        per_partition[p] = {"acknowledged": len(acked),
                            "info": sum(1 for s in sends.values() if s.partition == p and s.outcome == "info"),
                            "final_records": len(mine.final),
                            "high_watermark": final.get("high_watermark", {}).get(p),
                            "final_read_reached": final.get("reached", {}).get(p, False),
                            **{name: len(errs) for name, errs in found.items()}}
    # From the first send to the last delivery report: records still pending after the workload stopped (drained
    # after healing) count, so a cluster that stays unavailable after the faults end shows as a long gap.
    send_times = [op.time_ns for op in ops if op.f == "send"]
    gaps = max_ack_gaps(sends, partitions, min(send_times, default=0), max(send_times, default=0))
    for p, gap in gaps.items():
        per_partition[p]["max_ack_gap_s"] = gap["max_gap_s"]

    error_types = sorted(name for name, errs in errors.items() if errs)
    bad = [name for name in error_types if name in BAD]
    if bad:
        valid = False
    elif not final.get("complete"):
        valid = "unknown"
    else:
        valid = True
    anomalies = {name: summarise(name, errs, name not in BAD or not errs) for name, errs in errors.items()}
    client_ops = [op for op in ops if op.f in ("send", "poll", "assign")]
    return {
        "workload": "stream",
        "valid?": valid,
        "error-types": error_types,
        "bad-error-types": bad,
        "anomalies": anomalies,
        "acknowledged": sum(1 for s in sends.values() if s.outcome == "ok"),
        "partitions": per_partition,
        "final-read": final,
        "availability": {"max-ack-gap": gaps},
        "stats": op_stats(client_ops),
        "info-causes": sorted({str(op.extra.get("error")) for op in ops if op.type == "info" and op.f == "send"})[:50],
        "op-count": len(history),
    }


def summary(results: dict) -> str:
    lines = [*ops_lines(results), f"acknowledged records: {results['acknowledged']}"]
    columns = ("acknowledged", "info", "final_records", "lost", "duplicate-idempotent", "duplicate-non-idempotent",
               "reordered", "inconsistent-offsets", "group-skip", "max_ack_gap_s")
    lines.append("partition  " + "  ".join(columns))
    for p, row in sorted(results["partitions"].items(), key=lambda item: int(item[0])):
        lines.append(f"{p:>9}  " + "  ".join(f"{row.get(c)!s:>{len(c)}}" for c in columns))
    lines.append(checker_line(results))
    fencing = results.get("availability", {}).get("unexpected-fencing")
    if fencing is not None:
        lines.append(f"unexpected fencing (a broker no fault touched): {len(fencing)}"
                     + (f"  e.g. broker {fencing[0]['broker']} at {fencing[0]['at_s']:.1f}s" if fencing else ""))
    if not results.get("final-read", {}).get("complete"):
        lines.append("final read did not reach every partition's high_watermark")
    lines.append(valid_line(results))
    return "\n".join(lines)
