"""PNG plots of a run, drawn from its history alone: latency (raw and quantiles) and throughput, each with
the fault windows shaded, as Jepsen's checker/perf.clj draws them.

A reader of a failing run first wants to see *when* things went wrong relative to the faults; the plots
answer that at a glance.  matplotlib is optional (the test extra installs it): without it `plot()` returns
a message saying the plots were skipped, and the run is otherwise unaffected.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from jepsen_like.nemesis import fault_windows

FAULT_COLOURS = {"kill": "#E9A4A0", "pause": "#A0B1E9", "partition": "#E9DCA0", "clock": "#A0E9E3",
                 "disk": "#B0B0B0", "lose-unfsynced": "#D86A6A", "delay": "#C6E9A0", "loss": "#E9A0D8"}
TYPE_COLOURS = {"ok": "#2E7D32", "info": "#F9A825", "fail": "#C62828"}
MARKERS = {"send": "o", "poll": "^", "assign": "s", "subscribe": "D", "txn": "x"}
QUANTILES = (0.5, 0.95, 0.99, 1.0)
PLOTS = ("latency-raw.png", "latency-quantiles.png", "rate.png")


def completions(history) -> list[tuple[float, float, str, str]]:
    """(completion time s, latency ms, f, type) for every completed client op.  An op's invoke is the last
    invoke of its process, or of its process and "id" where one process has many ops in flight (stream)."""
    invoked: dict = {}
    out = []
    for op in history:
        if not op.is_client:
            continue
        key = (op.process, op.extra.get("id"))
        if op.type == "invoke":
            invoked[key] = op
            continue
        start = invoked.pop(key, None)
        if start is not None:
            out.append((op.time_ns / 1e9, (op.time_ns - start.time_ns) / 1e6, op.f, op.type))
    return out


def _quantile(sorted_values: list[float], q: float) -> float:
    return sorted_values[min(len(sorted_values) - 1, int(q * (len(sorted_values) - 1) + 0.5))]


def _shade(ax, windows) -> None:
    seen = set()
    for w in windows:
        label = w["kind"] if w["kind"] not in seen else None
        seen.add(w["kind"])
        ax.axvspan(w["start_s"], w["end_s"], color=FAULT_COLOURS.get(w["kind"], "#CCCCCC"), alpha=0.6,
                   label=label, zorder=0)
        ax.axvline(w["start_s"], color="#888888", linewidth=0.5, zorder=0)


def plot(history, run_dir: Path, bucket_s: float = 1.0) -> str:
    """Writes the PNGs into run_dir; returns a one-line message for the summary."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "plots skipped: matplotlib is not installed (pip install matplotlib, or the [test] extra)"
    points = completions(history)
    windows = fault_windows(history)

    fig, ax = plt.subplots(figsize=(10, 5))
    _shade(ax, windows)
    groups = defaultdict(list)
    for t, ms, f, kind in points:
        groups[(f, kind)].append((t, ms))
    for (f, kind), pts in sorted(groups.items()):
        ax.scatter([p[0] for p in pts], [max(p[1], 0.01) for p in pts], s=6, marker=MARKERS.get(f, "."),
                   color=TYPE_COLOURS.get(kind, "black"), label=f"{f} {kind}", alpha=0.7)
    ax.set_yscale("log")
    ax.set(xlabel="time (s)", ylabel="latency (ms)", title="latency, raw")
    ax.legend(fontsize="small", loc="upper right")
    fig.savefig(run_dir / "latency-raw.png", dpi=100)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(10, 5))
    _shade(ax, windows)
    buckets: dict[int, list[float]] = defaultdict(list)
    for t, ms, _f, _kind in points:
        buckets[int(t // bucket_s)].append(ms)
    xs = sorted(buckets)
    for q in QUANTILES:
        ys = [_quantile(sorted(buckets[b]), q) for b in xs]
        ax.plot([(b + 0.5) * bucket_s for b in xs], [max(y, 0.01) for y in ys], label=f"q {q}", marker=".")
    ax.set_yscale("log")
    ax.set(xlabel="time (s)", ylabel="latency (ms)", title=f"latency quantiles per {bucket_s:g} s")
    ax.legend(fontsize="small", loc="upper right")
    fig.savefig(run_dir / "latency-quantiles.png", dpi=100)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(10, 5))
    _shade(ax, windows)
    rates: dict[tuple, dict[int, int]] = defaultdict(lambda: defaultdict(int))
    for t, _ms, f, kind in points:
        rates[(f, kind)][int(t // bucket_s)] += 1
    last = max(xs, default=0)
    for (f, kind), counts in sorted(rates.items()):
        ax.plot([(b + 0.5) * bucket_s for b in range(last + 1)],
                [counts.get(b, 0) / bucket_s for b in range(last + 1)], label=f"{f} {kind}",
                color=TYPE_COLOURS.get(kind), linestyle={"send": "-", "poll": "--"}.get(f, ":"))
    ax.set(xlabel="time (s)", ylabel="completions / s", title="throughput")
    ax.legend(fontsize="small", loc="upper right")
    fig.savefig(run_dir / "rate.png", dpi=100)
    plt.close(fig)
    return f"plots: {', '.join(PLOTS)} ({len(windows)} fault windows shaded)"
