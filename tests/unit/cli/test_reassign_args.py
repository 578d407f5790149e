"""``kraftpy topics reassign`` / ``elect-leaders`` argument handling (no broker needed)."""

from __future__ import annotations

import argparse
import json

import pytest

from cluster.cli.common import UsageError
from cluster.cli.reassign import _reassign_targets, _replica_list, load_reassignment_plan


def test_plan_in_kafka_reassign_partitions_format():
    plan = {"version": 1, "partitions": [
        {"topic": "a", "partition": 0, "replicas": [2, 3, 1], "log_dirs": ["any", "any", "any"]},
        {"topic": "b", "partition": 4, "replicas": [1]}]}
    assert load_reassignment_plan(json.dumps(plan)) == {("a", 0): [2, 3, 1], ("b", 4): [1]}


@pytest.mark.parametrize("text", [
    "not json", "{}", '{"partitions": []}', '{"partitions": [{"topic": "a", "partition": 0}]}',
    '{"partitions": [{"topic": "a", "partition": 0, "replicas": [1]}, {"topic": "a", "partition": 0, "replicas": [2]}]}',
])
def test_bad_plans_are_usage_errors(text):
    with pytest.raises(UsageError):
        load_reassignment_plan(text)


def test_replica_list():
    assert _replica_list("2,3,1") == [2, 3, 1]
    for bad in ("", "a,b", ","):
        with pytest.raises(argparse.ArgumentTypeError):
            _replica_list(bad)


def _args(**kw):
    base = {"plan": None, "topic": None, "partition": None, "replicas": None, "cancel": False}
    return argparse.Namespace(**{**base, **kw})


def test_targets_from_flags(tmp_path):
    assert _reassign_targets(_args(topic="t", partition=1, replicas=[3])) == {("t", 1): [3]}
    assert _reassign_targets(_args(topic="t", partition=1, cancel=True)) == {("t", 1): None}
    plan = tmp_path / "p.json"
    plan.write_text(json.dumps({"version": 1, "partitions": [{"topic": "t", "partition": 0, "replicas": [1]}]}))
    assert _reassign_targets(_args(plan=str(plan), cancel=True)) == {("t", 0): None}
    for bad in (_args(topic="t"), _args(topic="t", partition=0), _args(plan=str(plan), topic="t"),
                _args(topic="t", partition=0, replicas=[1], cancel=True), _args(plan=str(tmp_path / "none"))):
        with pytest.raises(UsageError):
            _reassign_targets(bad)
