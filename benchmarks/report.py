"""Markdown tables from stored `benchmarks/run.py` results, so every figure in
docs/benchmarks.md can be regenerated from a file in benchmarks/results/.

    .venv/bin/python benchmarks/report.py benchmarks/results/full-5.json

A result file holds one invocation of run.py: either one run (the older format, with
"brokers" at the top) or several (`--runs N`, a "runs" list, each with the order in which the
brokers went). With several runs each cell is "median (min-max)" over the runs; the header
says how many runs and which broker went first in each.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any

Json = dict[str, Any]

PHASE_ROWS = (
    ("mb_per_s", "MB/s", ".1f"),
    ("records_per_s", "records/s", ",.0f"),
    ("broker_cpu_s_per_gb", "broker CPU-s per GB", ".2f"),
    ("broker_cpu_util_pct", "broker CPU use (% of one core)", ".0f"),
    ("broker_kernel_pct", "of which in the kernel (%)", ".0f"),
    ("client_cpu_s_per_gb", "client CPU-s per GB", ".2f"),
    ("machine_cpu_busy_pct", "machine CPU busy (% of all cores)", ".0f"),
    ("other_cpu_s", "other processes' CPU-s (noise)", ".1f"),
    ("broker_rss_peak_mb", "broker peak RSS (MB)", ".0f"),
)
E2E_ROWS = (
    ("p50_ms", "p50 (ms)", ".1f"),
    ("p99_ms", "p99 (ms)", ".1f"),
    ("p999_ms", "p99.9 (ms)", ".1f"),
    ("max_ms", "max (ms)", ".1f"),
    ("broker_cpu_util_pct", "broker CPU use (% of one core)", ".0f"),
)
LIMIT_ROWS = (
    ("seq_write_then_fsync_mb_s", "disk: 1 MiB writes, one fsync at the end (MB/s)", ".0f"),
    ("write_fsync_each_1mib_mb_s", "disk: 1 MiB write + fsync each (MB/s)", ".0f"),
    ("fsync_4k_appends_per_s", "disk: 4 KiB append + fsync (fsyncs/s)", ",.0f"),
    ("fsync_64k_appends_per_s", "disk: 64 KiB append + fsync (fsyncs/s)", ",.0f"),
)


def runs_of(results: Json) -> list[Json]:
    """Each run as {"order": [...], "brokers": [...]}, for both file formats."""
    if "runs" in results:
        runs: list[Json] = results["runs"]
        return runs
    return [{"order": [b["broker"] for b in results["brokers"]], "brokers": results["brokers"]}]


def broker_names(results: Json) -> list[str]:
    names: list[str] = []
    for run in runs_of(results):
        for b in run["brokers"]:
            if b["broker"] not in names:
                names.append(b["broker"])
    return names


def _value(b: Json | None, path: tuple[str, ...], key: str) -> float | None:
    node: Any = b
    for part in path:
        if not isinstance(node, dict) or "error" in node:
            return None
        node = node.get(part)
    if not isinstance(node, dict) or "error" in node:
        return None
    v = node.get(key)
    return float(v) if isinstance(v, (int, float)) else None


def values(results: Json, broker: str, path: tuple[str, ...], key: str) -> list[float]:
    """The value of `key` at `path` for `broker` in every run that has it."""
    out: list[float] = []
    for run in runs_of(results):
        for b in run["brokers"]:
            if b["broker"] == broker:
                v = _value(b, path, key)
                if v is not None:
                    out.append(v)
    return out


def cell(vals: list[float], fmt: str, scale: float = 1.0) -> str:
    if not vals:
        return "-"
    scaled = sorted(v * scale for v in vals)
    med = format(statistics.median(scaled), fmt)
    if len(scaled) == 1:
        return med
    return f"{med} ({format(scaled[0], fmt)}-{format(scaled[-1], fmt)})"


def markdown(results: Json) -> str:
    names = broker_names(results)
    runs = runs_of(results)
    lines = []
    if len(runs) > 1:
        order = "; ".join(f"run {i + 1}: {' then '.join(r['order'])}" for i, r in enumerate(runs))
        lines += [f"{len(runs)} runs, each cell median (min-max). Order: {order}.", ""]
    lines += [
        "| scenario | metric | " + " | ".join(names) + " |",
        "|---|---|" + "---|" * len(names),
    ]

    def row(scenario: str, metric: str, path: tuple[str, ...], key: str, fmt: str, scale: float = 1.0) -> None:
        cells = [cell(values(results, n, path, key), fmt, scale) for n in names]
        lines.append(f"| {scenario} | {metric} | " + " | ".join(cells) + " |")

    row("start-up", "process start -> Metadata answered (ms)", (), "startup_s", ".0f", 1000)
    row("idle", "RSS (MB)", (), "idle_rss_mb", ".0f")
    for size in results["settings"]["sizes"]:
        label = "1 KiB" if size == 1024 else f"{size} B"
        for phase in ("produce", "consume"):
            for key, metric, fmt in PHASE_ROWS:
                row(f"{phase} {label}", metric, (str(size), phase), key, fmt)
        rate = results["settings"].get("e2e_rate", 5000)
        for key, metric, fmt in E2E_ROWS:
            row(f"e2e {label} @ {rate}/s", metric, (str(size), "e2e"), key, fmt)
    row("whole run", "broker peak RSS (MB)", (), "peak_rss_mb", ".0f")
    row("whole run", "graceful shutdown (ms)", (), "shutdown_s", ".0f", 1000)
    limits = results.get("limits")
    if limits:
        disk = limits.get("disk", {})
        lines += ["", "| machine limit | value |", "|---|---|"]
        for key, metric, fmt in LIMIT_ROWS:
            v = disk.get(key)
            lines.append(f"| {metric} | {'-' if v is None else format(v, fmt)} |")
        lo = limits.get("loopback", {}).get("tcp_mb_s")
        lines.append(f"| loopback TCP, one connection, 1 MiB sendall (MB/s) | {'-' if lo is None else format(lo, '.0f')} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Markdown tables from benchmarks/run.py results")
    ap.add_argument("files", nargs="+", help="result JSON files written by run.py --out")
    args = ap.parse_args(argv)
    for name in args.files:
        results = json.loads(Path(name).read_text())
        m = results.get("machine", {})
        print(f"## {name}: {results.get('date')}, riverbed {m.get('riverbed_commit', '?')}"
              f"{' (dirty src)' if m.get('riverbed_src_dirty') else ''}, {m.get('tansu', '')}\n")  # fmt: skip
        print(markdown(results))
        print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
