"""The stream workload's checker on small hand-written histories (one per anomaly, each shown reported, and a
clean one shown valid), the role nemeses' schedule and target resolution with a stand-in cluster, and the
`broken` campaign's symptom rules.  The end-to-end stream smoke run is in test_harness_smoke.py."""

from __future__ import annotations

import threading

from jepsen_like.campaign import broken_symptoms
from jepsen_like.checker import exit_code
from jepsen_like.history import HistoryRecorder, Op, read_history, write_history
from jepsen_like.nemesis import ROLE_TARGETS, NemesisThread, build_schedule, fault_windows
from jepsen_like.stream import close_bounded, decode_value, encode_value
from jepsen_like.stream_checker import check_stream, collect_sends, max_ack_gaps, unexpected_fencing


class StreamHistory:
    """Builder: sends (invoke + delivery report), group polls, final-read polls, and the final-read verdict."""

    def __init__(self) -> None:
        self.ops: list[Op] = []

    def _op(self, process, kind, f, value, **extra) -> None:
        self.ops.append(Op(len(self.ops), len(self.ops) * 1_000_000, process, kind, f, value, extra))

    def send(self, process, partition, value, offset=None, kind="ok"):
        self._op(process, "invoke", "send", [(partition, value)], id=value)
        payload = (offset, value) if kind == "ok" else value
        self._op(process, kind, "send", [(partition, payload)], id=value)
        return self

    def poll(self, process, reads, final=False):
        self._op(process, "ok", "poll", {p: [tuple(x) for x in pairs] for p, pairs in reads.items()},
                 **({"final": True} if final else {}))
        return self

    def final(self, reads, high_watermark=None, reached=None):
        self.poll(9, reads, final=True)
        hw = high_watermark or {p: max((o for o, _ in pairs), default=-1) + 1 for p, pairs in reads.items()}
        reached = reached or {p: True for p in hw}
        self._op(9, "ok", "final-read", {"high_watermark": hw, "reached": reached, "complete": all(reached.values())})
        return self


def clean() -> StreamHistory:
    """Idempotent i0 and plain n1 on partitions 0 and 1; the group reads part; the final read has all."""
    h = StreamHistory()
    h.send(0, 0, "i0-0:0", 0).send(0, 0, "i0-0:1", 1).send(1, 0, "n1-0:0", 2).send(0, 1, "i0-0:2", 0)
    h.send(1, 1, "n1-0:1", None, kind="info")          # indeterminate; it did land (read below)
    h.poll(7, {0: [(0, "i0-0:0"), (1, "i0-0:1")]})
    h.final({0: [(0, "i0-0:0"), (1, "i0-0:1"), (2, "n1-0:0")], 1: [(0, "i0-0:2"), (1, "n1-0:1")]})
    return h


def test_values_encode_producer_and_sequence():
    assert decode_value(encode_value("i3-1", 42)) == ("i3-1", 42)
    assert decode_value("garbage") is None


def test_a_hanging_consumer_close_is_abandoned():
    class Hangs:
        def close(self):
            threading.Event().wait(5)

    class Closes:
        def close(self):
            pass

    assert close_bounded(Hangs(), timeout_s=0.1) is False
    assert close_bounded(Closes(), timeout_s=5) is True


def test_clean_history_is_valid_and_counts_per_partition():
    results = check_stream(clean().ops)
    assert results["valid?"] is True and results["bad-error-types"] == [] and exit_code(results) == 0
    assert results["acknowledged"] == 4
    assert results["partitions"][0]["acknowledged"] == 3 and results["partitions"][1]["info"] == 1
    assert all(a["count"] == 0 for a in results["anomalies"].values())


def test_idempotent_duplicate_is_invalid_non_idempotent_duplicate_only_reported():
    h = StreamHistory()
    h.send(0, 0, "i0-0:0", 0).send(1, 0, "n1-0:0", 1)
    h.final({0: [(0, "i0-0:0"), (1, "n1-0:0"), (2, "n1-0:0")]})
    results = check_stream(h.ops)
    assert results["valid?"] is True
    assert results["anomalies"]["duplicate-non-idempotent"]["count"] == 1
    assert results["partitions"][0]["duplicate-non-idempotent"] == 1

    h = StreamHistory()
    h.send(0, 0, "i0-0:0", 0).send(0, 0, "i0-0:1", 1)
    h.final({0: [(0, "i0-0:0"), (1, "i0-0:1"), (2, "i0-0:0")]})
    results = check_stream(h.ops)
    assert results["valid?"] is False and results["bad-error-types"] == ["duplicate-idempotent"]
    assert results["anomalies"]["duplicate-idempotent"]["examples"][0]["offsets"] == [0, 2]


def test_acknowledged_value_missing_from_the_final_read_is_lost():
    h = StreamHistory()
    h.send(0, 0, "i0-0:0", 0).send(0, 0, "i0-0:1", 1).send(1, 0, "n1-0:0", None, kind="info")
    h.final({0: [(0, "i0-0:0")]})
    results = check_stream(h.ops)
    assert results["bad-error-types"] == ["lost"] and exit_code(results) == 1
    assert [e["value"] for e in results["anomalies"]["lost"]["examples"]] == ["i0-0:1"]   # info ones may vanish


def test_unfinished_final_read_gives_unknown_not_lost():
    h = StreamHistory()
    h.send(0, 0, "i0-0:0", 0).send(0, 0, "i0-0:1", 1)
    h.final({0: [(0, "i0-0:0")]}, high_watermark={0: 2}, reached={0: False})
    results = check_stream(h.ops)
    assert results["valid?"] == "unknown" and results["anomalies"]["lost"]["count"] == 0 and exit_code(results) == 2


def test_idempotent_producer_out_of_sequence_order_is_reordered():
    h = StreamHistory()
    h.send(0, 0, "i0-0:0", 1).send(0, 0, "i0-0:1", 0)
    h.final({0: [(0, "i0-0:1"), (1, "i0-0:0")]})
    results = check_stream(h.ops)
    assert results["bad-error-types"] == ["reordered"]
    assert results["anomalies"]["reordered"]["examples"][0]["values"] == ["i0-0:0", "i0-0:1"]
    # the same from a producer without idempotence is allowed (retries reorder)
    h = StreamHistory()
    h.send(1, 0, "n1-0:0", 1).send(1, 0, "n1-0:1", 0)
    h.final({0: [(0, "n1-0:1"), (1, "n1-0:0")]})
    assert check_stream(h.ops)["valid?"] is True


def test_delivery_offset_differing_from_the_final_read_is_inconsistent():
    h = StreamHistory()
    h.send(0, 0, "i0-0:0", 5)
    h.final({0: [(0, "i0-0:0")]})
    results = check_stream(h.ops)
    assert results["bad-error-types"] == ["inconsistent-offsets"]
    assert results["anomalies"]["inconsistent-offsets"]["examples"][0]["acknowledged_offset"] == 5


def test_two_reads_disagreeing_about_an_offset_are_inconsistent():
    h = StreamHistory()
    h.send(0, 0, "i0-0:0", 0).send(1, 0, "n1-0:0", None, kind="info")
    h.poll(7, {0: [(0, "i0-0:0"), (1, "n1-0:0")]})
    h.send(0, 0, "i0-0:1", 1)                      # the log was rewritten at offset 1
    h.final({0: [(0, "i0-0:0"), (1, "i0-0:1")]})
    results = check_stream(h.ops)
    assert "inconsistent-offsets" in results["bad-error-types"]
    assert {"partition": 0, "offset": 1, "values": ["i0-0:1", "n1-0:0"]} in \
        results["anomalies"]["inconsistent-offsets"]["examples"]


def test_group_skip_and_garbage_read():
    h = StreamHistory()
    for seq in range(3):
        h.send(0, 0, f"i0-0:{seq}", seq)
    h.poll(7, {0: [(0, "i0-0:0")]}).poll(8, {0: [(2, "i0-0:2")]})   # nobody in the group read offset 1
    h.final({0: [(0, "i0-0:0"), (1, "i0-0:1"), (2, "i0-0:2"), (3, "x9:0")]})
    results = check_stream(h.ops)
    assert results["bad-error-types"] == ["garbage-read", "group-skip"]
    assert results["anomalies"]["group-skip"]["examples"][0]["offset"] == 1


def test_history_round_trips_through_jsonl(tmp_path):
    write_history(tmp_path / "h.jsonl", clean().ops)
    assert check_stream(read_history(tmp_path / "h.jsonl"))["valid?"] is True


def test_max_ack_gap_per_partition():
    h = StreamHistory()
    h.send(0, 0, "i0-0:0", 0).send(0, 1, "i0-0:1", 0)
    sends, _ = collect_sends(h.ops)
    gaps = max_ack_gaps(sends, [0, 1], 0, 10_000_000_000)
    assert gaps[0]["max_gap_s"] > 9.9 and gaps[0]["from_s"] < 0.01
    assert gaps[1]["max_gap_s"] > 9.9


def test_fencing_of_a_broker_no_fault_touched_is_unexpected():
    windows = [{"kind": "pause", "node": "n1", "start_s": 5.0, "end_s": 15.0}]
    fencings = [{"at_s": 14.0, "brokers": [1]},          # paused at the time: expected
                {"at_s": 18.0, "brokers": [1]},          # just resumed, within the slack: expected
                {"at_s": 14.0, "brokers": [2, 3]},       # kept running: the new controller's short session
                {"at_s": 40.0, "brokers": [1]}]          # long after the pause
    found = unexpected_fencing(fencings, windows)
    assert [(f["broker"], f["at_s"]) for f in found] == [(2, 14.0), (3, 14.0), (1, 40.0)]


# -- role nemeses ---------------------------------------------------------------------------------------------

def test_role_faults_are_seeded_paired_long_and_name_a_partition():
    nodes = ["n1", "n2", "n3"]
    kinds = list(ROLE_TARGETS)
    a = build_schedule(4, kinds, 120.0, 3.0, nodes, topic_partitions=6)
    assert a == build_schedule(4, kinds, 120.0, 3.0, nodes, topic_partitions=6)
    starts, stops = a["events"][::2], a["events"][1::2]
    assert {s["target"] for s in starts[:len(kinds)]} == {"controller", "leader", "both"}
    for start, stop in zip(starts, stops, strict=True):
        assert start["pair"] == stop["pair"] and start["target"] == stop["target"]
        assert (start["f"], stop["f"]) in (("pause", "resume"), ("kill", "start"))
        assert stop["at_s"] == 120.0 or 10.0 <= stop["at_s"] - start["at_s"] <= 15.0
        assert ("partition" in start) == (start["target"] != "controller")
        assert 0 <= start.get("partition", 0) < 6
    short = build_schedule(4, ["pause-controller"], 30.0, 3.0, nodes, role_fault_s=(2.0, 3.0))
    assert all(2.0 <= b["at_s"] - a["at_s"] <= 3.0 for a, b in zip(short["events"][::2], short["events"][1::2],
                                                                   strict=True))


class FakeNode:
    def __init__(self) -> None:
        self.calls: list[str] = []

    def pause(self):
        self.calls.append("pause")

    def resume(self):
        self.calls.append("resume")


class FakeCluster:
    def __init__(self, controller, leaders) -> None:
        self.nodes = {n: FakeNode() for n in ("n1", "n2", "n3")}
        self.controller, self.leaders = controller, leaders

    def leader(self):
        return self.controller

    def metadata_roles(self, topic):
        return self.controller, dict(self.leaders)


def run_events(cluster, events) -> list[Op]:
    recorder = HistoryRecorder()
    nemesis = NemesisThread({"seed": 1, "events": events}, cluster, recorder, 0.0, threading.Event(), topic="t")
    for event in events:
        nemesis.apply(event)
    return recorder.ops


def test_pause_both_hits_the_controller_and_a_leader_elsewhere_and_resumes_the_same_nodes():
    cluster = FakeCluster("n2", {0: "n2", 1: "n3", 2: "n1"})
    ops = run_events(cluster, [{"at_s": 0, "f": "pause", "target": "both", "pair": 0, "partition": 0},
                               {"at_s": 1, "f": "resume", "target": "both", "pair": 0}])
    cluster.controller, cluster.leaders = "n1", {0: "n1"}          # roles moved meanwhile: heal the same nodes
    assert cluster.nodes["n2"].calls == ["pause", "resume"] and cluster.nodes["n3"].calls == ["pause", "resume"]
    assert cluster.nodes["n1"].calls == []
    resolved = [op.value for op in ops if op.f == "resolve-role"]
    assert resolved == [{"target": "both", "pair": 0, "controller": "n2", "leader": "n3", "partition": 0,
                         "nodes": ["n2", "n3"], "fallback": False}]
    windows = fault_windows(ops)
    assert sorted(w["node"] for w in windows) == ["n2", "n3"] and all(w["kind"] == "pause" for w in windows)


def test_unresolvable_role_falls_back_to_a_seeded_node():
    cluster = FakeCluster(None, {})
    ops = run_events(cluster, [{"at_s": 0, "f": "pause", "target": "controller", "pair": 3}])
    resolved = [op.value for op in ops if op.f == "resolve-role"][0]
    assert resolved["fallback"] is True and len(resolved["nodes"]) == 1
    assert run_events(FakeCluster(None, {}), [{"at_s": 0, "f": "pause", "target": "controller", "pair": 3}])[0].value \
        == ops[0].value


def test_broken_symptoms_per_variant():
    dup = {"bad-error-types": ["duplicate-idempotent"], "availability": {"unexpected-fencing": []}}
    fenced = {"bad-error-types": [], "availability": {"unexpected-fencing": [{"broker": 2}]}}
    assert broken_symptoms(dup, "drop_producer_state_on_become_leader") == ["duplicate-idempotent"]
    assert broken_symptoms(fenced, "drop_producer_state_on_become_leader") == []
    assert broken_symptoms(fenced, "short_session_on_new_controller") == ["unexpected-fencing 1"]
    assert broken_symptoms(dup, "short_session_on_new_controller") == []
