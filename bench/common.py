"""Helpers for benchmarks: percentiles and a table that names the machine it ran on."""

from __future__ import annotations

import os
import platform
import statistics


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = (len(ordered) - 1) * q / 100
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def machine() -> str:
    mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{os.cpu_count()} cores ({cpu}), {mem_gib:.0f} GiB, Python {platform.python_version()}"


def table(rows: list[tuple[str, list[float]]], unit: str = "ms", scale: float = 1000.0) -> str:
    """Markdown table of p50/p95/p99/mean per row (values in seconds, shown in `unit`)."""
    lines = [
        f"| stage | n | p50 {unit} | p95 {unit} | p99 {unit} | mean {unit} |",
        "|---|---|---|---|---|---|",
    ]
    for name, values in rows:
        if not values:
            continue
        p = [percentile(values, q) * scale for q in (50, 95, 99)]
        mean = statistics.fmean(values) * scale
        lines.append(f"| {name} | {len(values)} | {p[0]:.1f} | {p[1]:.1f} | {p[2]:.1f} | {mean:.1f} |")
    return "\n".join(lines)
