"""Checks that a Grafana dashboard asks only for metrics the broker exports.

A dashboard panel whose PromQL names a metric nobody exports shows "No data" forever, and nothing fails: a
renamed counter silently blinds the operator.  ``missing_metrics`` turns that into a test failure: it pulls the
metric names out of every panel's ``expr`` and compares them with a ``/metrics`` exposition, knowing the
suffixes Prometheus derives from one family (a histogram's ``_bucket``/``_sum``/``_count``, a counter's
``_total``).  Run it by hand with ``python -m cluster.observability.dashboard DASHBOARD.json METRICS_URL``.
"""

from __future__ import annotations

import json
import re
import sys
import urllib.request
from collections.abc import Iterator

# PromQL words that look like identifiers but are not metric names.
_PROMQL_WORDS = frozenset({
    "by", "without", "on", "ignoring", "group_left", "group_right", "bool", "offset", "and", "or", "unless",
    "inf", "nan", "sum", "min", "max", "avg", "count", "stddev", "stdvar", "topk", "bottomk", "quantile",
    "count_values", "group", "atan2",
})
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'')
_BRACES = re.compile(r"\{[^{}]*\}")
_RANGE = re.compile(r"\[[^\]]*\]")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_VARIABLE = re.compile(r"\$\{?[A-Za-z_][A-Za-z0-9_]*\}?")
_IDENTIFIER = re.compile(r"(?<![A-Za-z0-9_:.])([A-Za-z_:][A-Za-z0-9_:]*)(\s*\()?")
_HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")


def dashboard_expressions(dashboard: dict) -> Iterator[str]:
    """Every PromQL ``expr`` of every panel (rows' nested panels included)."""
    def walk(panels):
        for panel in panels or ():
            for target in panel.get("targets") or ():
                if target.get("expr"):
                    yield target["expr"]
            yield from walk(panel.get("panels"))
    yield from walk(dashboard.get("panels"))


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (function names, keywords and labels left out)."""
    text = _STRING.sub('""', expr)
    text = _VARIABLE.sub("1m", text)
    text = _RANGE.sub("", text)
    while _BRACES.search(text):
        text = _BRACES.sub(" ", text)
    text = _GROUPING.sub(" ", text)
    names = set()
    for match in _IDENTIFIER.finditer(text):
        name, call = match.group(1), match.group(2)
        if call or name.lower() in _PROMQL_WORDS:
            continue
        names.add(name)
    return names


def referenced_metrics(dashboard: dict) -> set[str]:
    names: set[str] = set()
    for expr in dashboard_expressions(dashboard):
        names |= metric_names(expr)
    return names


def exported_metrics(exposition: str) -> set[str]:
    """Every sample name a Prometheus text exposition can contain, including families without samples yet
    (a labelled counter nobody has incremented still has ``# TYPE`` lines)."""
    names: set[str] = set()
    for line in exposition.splitlines():
        if line.startswith("# TYPE "):
            parts = line.split()
            if len(parts) < 4:
                continue
            name, kind = parts[2], parts[3]
            names.add(name)
            if kind == "histogram":
                names.update(name + suffix for suffix in _HISTOGRAM_SUFFIXES)
            elif kind == "summary":
                names.update((name + "_sum", name + "_count"))
            elif kind == "counter":
                names.add(name if name.endswith("_total") else name + "_total")
        elif line and not line.startswith("#"):
            names.add(re.split(r"[{\s]", line, maxsplit=1)[0])
    return names


def missing_metrics(dashboard: dict, exposition: str) -> set[str]:
    """Names the dashboard's expressions reference that ``exposition`` does not export."""
    return referenced_metrics(dashboard) - exported_metrics(exposition)


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python -m cluster.observability.dashboard DASHBOARD.json http://host:port/metrics",
              file=sys.stderr)
        return 2
    with open(argv[0], encoding="utf-8") as file:
        dashboard = json.load(file)
    with urllib.request.urlopen(argv[1], timeout=10) as response:
        exposition = response.read().decode()
    missing = missing_metrics(dashboard, exposition)
    for name in sorted(missing):
        print(f"not exported: {name}")
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
