"""The dashboard check itself: PromQL name extraction, exposition suffixes, and a broken dashboard failing."""

from __future__ import annotations

import copy
import json
from pathlib import Path

from cluster.observability import BrokerMetrics
from cluster.observability.dashboard import (
    exported_metrics,
    metric_names,
    missing_metrics,
    referenced_metrics,
)

DASHBOARD = Path(__file__).resolve().parents[3] / "deploy" / "grafana" / "kraftpy-dashboard.json"


def test_metric_names_skip_functions_keywords_labels_and_durations():
    expr = ('histogram_quantile(0.99, sum by (api, le) (rate(kraftpy_request_latency_seconds_bucket'
            '{api="Produce", job=~"kraft.*"}[$__rate_interval]))) / on(instance) group_left kraftpy_up_x'
            ' offset 5m')
    assert metric_names(expr) == {"kraftpy_request_latency_seconds_bucket", "kraftpy_up_x"}
    assert metric_names("sum(kraftpy_a) or max without (topic) (kraftpy_b) > bool 1e3") == {"kraftpy_a",
                                                                                          "kraftpy_b"}


def test_exported_names_include_derived_suffixes_and_empty_families():
    metrics = BrokerMetrics()
    exported = exported_metrics(metrics.exposition().decode())
    # Families with labels and no samples yet still count (their # TYPE line is there).
    assert {"kraftpy_requests_total", "kraftpy_request_latency_seconds_bucket",
            "kraftpy_request_latency_seconds_sum", "kraftpy_request_latency_seconds_count",
            "kraftpy_isr_shrinks_total", "kraftpy_isr_expands_total"} <= exported
    assert "kraftpy_request_latency_seconds_total" not in exported   # a histogram has no _total


def test_dashboard_has_the_panels_the_issue_asks_for():
    dashboard = json.loads(DASHBOARD.read_text())
    names = referenced_metrics(dashboard)
    for wanted in ("kraftpy_topic_bytes_in_total", "kraftpy_topic_bytes_out_total", "kraftpy_topic_messages_in_total",
                   "kraftpy_requests_total", "kraftpy_request_latency_seconds_bucket",
                   "kraftpy_under_replicated_partitions", "kraftpy_offline_partitions", "kraftpy_isr_shrinks_total",
                   "kraftpy_isr_expands_total", "kraftpy_raft_leader_id", "kraftpy_raft_epoch",
                   "kraftpy_raft_commit_lag", "kraftpy_group_rebalances_total", "kraftpy_consumer_group_lag"):
        assert wanted in names, wanted


def test_a_broken_dashboard_is_caught():
    dashboard = json.loads(DASHBOARD.read_text())
    exposition = "# TYPE kraftpy_requests_total counter\nkraftpy_requests_total{api=\"Fetch\"} 1.0\n"
    broken = copy.deepcopy(dashboard)
    broken["panels"].append({"type": "row", "panels": [
        {"type": "timeseries", "targets": [{"expr": "rate(kraftpy_bytes_in_typo_total[5m])"}]}]})
    assert "kraftpy_bytes_in_typo_total" in missing_metrics(broken, exposition)
    assert "kraftpy_bytes_in_typo_total" not in missing_metrics(dashboard, exposition)
