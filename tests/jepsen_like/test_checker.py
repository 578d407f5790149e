"""The queue checker on small hand-written histories: one per anomaly, each shown detected, and a valid
history shown valid (so no rule fires on a correct run)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from jepsen_like.checker import check, exit_code
from jepsen_like.history import Op, read_history, write_history

REPO_ROOT = Path(__file__).resolve().parents[2]


class H:
    """Tiny builder: each call appends one completed op (with its invoke) for a process."""

    def __init__(self) -> None:
        self.ops: list[Op] = []

    def _add(self, process, kind, f, invoke_value, value, **extra):
        self.ops.append(Op(len(self.ops), len(self.ops) * 10, process, "invoke", f, invoke_value))
        self.ops.append(Op(len(self.ops), len(self.ops) * 10, process, kind, f, value, extra))
        return self

    def send(self, p, k, offset, v, kind="ok"):
        return self._add(p, kind, "send", [(k, v)], [(k, (offset, v) if offset is not None else v)])

    def sends(self, p, k, pairs, kind="ok"):
        return self._add(p, kind, "send", [(k, v) for _, v in pairs], [(k, tuple(pair)) for pair in pairs])

    def poll(self, p, reads: dict, kind="ok", **extra):
        return self._add(p, kind, "poll", None, {k: [tuple(x) for x in pairs] for k, pairs in reads.items()},
                         **extra)

    def assign(self, p, keys, kind="ok"):
        return self._add(p, kind, "assign", list(keys), list(keys))

    def txn(self, p, mops, kind="ok"):
        return self._add(p, kind, "txn", mops, mops)


def bad(results) -> list[str]:
    return results["bad-error-types"]


def valid_history() -> H:
    h = H()
    h.assign(1, [0, 1]).send(0, 0, 0, 10).send(0, 0, 1, 11).send(0, 1, 5, 20)
    h.poll(1, {0: [(0, 10), (1, 11)], 1: [(5, 20)]})
    h.send(0, 0, 3, 12)   # offset 2 is a transaction marker: a gap, not a skip
    h.poll(1, {0: [(3, 12)]})
    return h


def test_valid_history_is_valid():
    results = check(valid_history().ops)
    assert results["valid?"] is True
    assert results["error-types"] == []
    assert all(a["valid?"] is True and a["count"] == 0 for a in results["anomalies"].values())
    assert exit_code(results) == 0
    assert results["stats"]["send"]["ok"] == 4


def test_inconsistent_offsets():
    h = H().send(0, 0, 0, 10).send(0, 0, 1, 11).poll(1, {0: [(0, 10), (1, 99)]})
    h.send(2, 0, None, 99, kind="info")
    results = check(h.ops)
    assert "inconsistent-offsets" in bad(results)
    example = results["anomalies"]["inconsistent-offsets"]["examples"][0]
    assert example["key"] == 0 and example["offset"] == 1 and example["values"] == [11, 99]
    assert exit_code(results) == 1


def test_duplicate():
    h = H().send(0, 0, 0, 10).send(0, 0, 1, 11).poll(1, {0: [(0, 10), (1, 11), (2, 10)]})
    results = check(h.ops)
    assert "duplicate" in bad(results)
    assert results["anomalies"]["duplicate"]["examples"][0] == {"key": 0, "value": 10, "count": 2, "offsets": [0, 2]}


def test_aborted_read():
    h = H().send(0, 0, None, 10, kind="fail").send(0, 0, 1, 11).poll(1, {0: [(0, 10), (1, 11)]})
    results = check(h.ops)
    assert bad(results) == ["aborted-read"]
    assert results["anomalies"]["aborted-read"]["examples"][0]["value"] == 10


def test_precommitted_read():
    h = H().txn(0, [("send", 0, (0, 10)), ("poll", {0: [(0, 10)]})])
    results = check(h.ops)
    assert bad(results) == ["precommitted-read"]


def test_lost_write():
    # 11 acknowledged at offset 1; a poll shows offset 2, so offset 1 must have been readable: never read.
    h = H().send(0, 0, 0, 10).send(0, 0, 1, 11).send(0, 0, 2, 12)
    h.assign(1, [0]).poll(1, {0: [(0, 10), (2, 12)]})
    results = check(h.ops)
    assert "lost-write" in bad(results)
    example = results["anomalies"]["lost-write"]["examples"][0]
    assert example["value"] == 11 and example["index"] == 1 and example["max_read_index"] == 2
    assert "poll-skip" not in bad(results) and "int-poll-skip" in bad(results)


def test_info_send_read_later_counts_as_committed_for_lost_write():
    h = H().send(0, 0, 0, 10, kind="info").send(2, 0, 1, 11).poll(1, {0: [(0, 10)]})
    h.poll(3, {0: [(1, 11)]})
    h.send(4, 0, 2, 12).poll(5, {0: [(2, 12)]})
    assert check(h.ops)["valid?"] is True
    # Without anyone reading 11, it is lost: something later (12) was read.
    h2 = H().send(2, 0, 1, 11).send(4, 0, 2, 12).poll(5, {0: [(2, 12)]})
    assert bad(check(h2.ops)) == ["lost-write", "unseen"]


def test_unseen_alone_is_unknown():
    h = H().send(0, 0, 0, 10).send(0, 0, 1, 11).poll(1, {0: [(0, 10)]})
    results = check(h.ops)
    assert bad(results) == ["unseen"]
    assert results["valid?"] == "unknown" and exit_code(results) == 2
    assert results["anomalies"]["unseen"]["examples"] == [{"key": 0, "count": 1, "values": [11]}]
    assert results["anomalies"]["unseen"]["valid?"] == "unknown"


def test_poll_skip():
    h = H().sends(0, 0, [(0, 10), (1, 11), (2, 12)]).assign(1, [0])
    h.poll(1, {0: [(0, 10)]}).poll(1, {0: [(2, 12)]}).poll(2, {0: [(1, 11)]})
    results = check(h.ops)
    assert bad(results) == ["poll-skip"]
    example = results["anomalies"]["poll-skip"]["examples"][0]
    assert example["skipped"] == [11] and example["delta"] == 2


def test_poll_skip_allowed_with_subscribe():
    h = H().sends(0, 0, [(0, 10), (1, 11), (2, 12)])._add(1, "ok", "subscribe", [0], [0])
    h.poll(1, {0: [(0, 10)]}).poll(1, {0: [(2, 12)]}).poll(2, {0: [(1, 11)]})
    results = check(h.ops)
    assert results["valid?"] is True and results["error-types"] == ["poll-skip"]


def test_reassign_forgets_dropped_keys():
    h = H().sends(0, 0, [(0, 10), (1, 11)]).assign(1, [0])
    h.poll(1, {0: [(0, 10), (1, 11)]}).assign(1, [1]).assign(1, [0]).poll(1, {0: [(0, 10)]})
    assert check(h.ops)["valid?"] is True


def test_nonmonotonic_poll():
    h = H().sends(0, 0, [(0, 10), (1, 11)]).assign(1, [0])
    h.poll(1, {0: [(0, 10), (1, 11)]}).poll(1, {0: [(1, 11)]})
    results = check(h.ops)
    assert bad(results) == ["nonmonotonic-poll"]
    assert results["anomalies"]["nonmonotonic-poll"]["examples"][0]["delta"] == 0


def test_int_poll_skip_and_nonmonotonic():
    h = H().sends(0, 0, [(0, 10), (1, 11), (2, 12)]).poll(1, {0: [(0, 10), (2, 12)]})
    h.poll(2, {0: [(1, 11), (0, 10)]})
    results = check(h.ops)
    assert set(bad(results)) == {"int-poll-skip", "int-nonmonotonic-poll"}


def test_int_poll_ignored_for_rebalanced_keys():
    h = H().sends(0, 0, [(0, 10), (1, 11), (2, 12)]).poll(1, {0: [(0, 10), (2, 12)]}, rebalance_log=[{"keys": [0]}])
    h.poll(2, {0: [(1, 11)]})
    assert check(h.ops)["valid?"] is True


def test_nonmonotonic_send():
    h = H().send(0, 0, 1, 11).send(0, 0, 0, 10).poll(1, {0: [(0, 10), (1, 11)]})
    results = check(h.ops)
    assert bad(results) == ["nonmonotonic-send"]
    assert results["anomalies"]["nonmonotonic-send"]["examples"][0]["values"] == [11, 10]


def test_int_nonmonotonic_send_and_allowed_int_send_skip():
    h = H().sends(0, 0, [(1, 11), (0, 10)]).poll(1, {0: [(0, 10), (1, 11)]})
    assert bad(check(h.ops)) == ["int-nonmonotonic-send"]
    h2 = H().sends(0, 0, [(0, 10), (2, 12)]).send(2, 0, 1, 11).poll(1, {0: [(0, 10), (1, 11), (2, 12)]})
    results = check(h2.ops)
    assert results["error-types"] == ["int-send-skip"] and results["valid?"] is True


def test_garbage_read():
    h = H().send(0, 0, 0, 10).poll(1, {0: [(0, 10), (1, 77)]})
    assert bad(check(h.ops)) == ["garbage-read"]


def test_nemesis_ops_are_ignored():
    h = valid_history()
    h.ops.append(Op(len(h.ops), 999, "nemesis", "info", "kill", {"node": "n1"}))
    assert check(h.ops)["valid?"] is True


def test_history_roundtrip_and_cli(tmp_path):
    h = H().send(0, 0, 0, 10).send(0, 0, 1, 11).send(0, 0, 2, 12).poll(1, {0: [(0, 10), (2, 12)]})
    path = tmp_path / "history.jsonl"
    write_history(path, h.ops)
    reloaded = [json.loads(json.dumps(op.to_json())) for op in read_history(path)]
    assert reloaded == [json.loads(line) for line in path.read_text().splitlines()]
    assert read_history(path)[-1].value == {0: [(0, 10), (2, 12)]}
    proc = subprocess.run([sys.executable, "-m", "jepsen_like", "check", str(path)], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    results = json.loads((tmp_path / "results.json").read_text())
    assert "lost-write" in results["bad-error-types"]
    assert "Analysis invalid!" in proc.stdout


@pytest.mark.parametrize("content", ["not json\n", '{"index": 0}\n'])
def test_cli_harness_error_on_bad_history(tmp_path, content):
    path = tmp_path / "history.jsonl"
    path.write_text(content)
    proc = subprocess.run([sys.executable, "-m", "jepsen_like", "check", str(path)], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 3, proc.stdout + proc.stderr
