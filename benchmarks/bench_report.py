"""How the benchmark scripts print a paired ratio, so they all judge one the same way.

A ratio comes from a C benchmark as ``{"median", "p10", "p90", "rounds"}``: the median and p10-p90 of
per-round ratios, measured as benchmarks/bench_util.h describes.  A ratio whose spread is wider than
SPREAD_BOUND is printed as "UNSTABLE" instead of a verdict, and ``--runs N`` compares the runs' medians
against the same bound.

The scripts import this as a sibling module: a script's own directory is ``sys.path[0]``.
"""

from __future__ import annotations

from typing import Any

SPREAD_BOUND = 0.20  # (p90 - p10) / median of the paired ratios above this: "unstable", not a verdict


def paired(r: dict[str, Any], goal: float | None, *, unit: str) -> str:
    """A paired ratio with its spread, and its verdict only when the spread allows one."""
    spread = (r["p90"] - r["p10"]) / r["median"]
    text = f"{r['median']:.2f} x {unit} (p10 {r['p10']:.2f}, p90 {r['p90']:.2f}, {r['rounds']} paired rounds)"
    if spread > SPREAD_BOUND:
        return f"{text}: UNSTABLE (spread {spread:.0%} > {SPREAD_BOUND:.0%}; rerun on a quieter host)"
    if goal is None:
        return f"{text} (spread {spread:.0%})"
    return f"{text}: {'meets' if r['median'] >= goal else 'misses'} the goal >= {goal:.2f} (spread {spread:.0%})"


def agreement(runs: list[dict[str, Any]]) -> list[str]:
    """Whether consecutive runs agree: each ratio's medians across the runs, against SPREAD_BOUND."""
    names = list(runs[0]["ratios"])
    width = max(map(len, names))
    lines = [f"across {len(runs)} runs in a row (median of each run):"]
    for name in names:
        medians = [run["ratios"][name]["median"] for run in runs]
        spread = (max(medians) - min(medians)) / sorted(medians)[len(medians) // 2]
        verdict = "agree" if spread <= SPREAD_BOUND else "DISAGREE"
        lines.append(f"  {name:<{width}} {' '.join(f'{m:.2f}' for m in medians)}  range {spread:.0%}: {verdict} "
                     f"(bound {SPREAD_BOUND:.0%})")
    return lines
