"""How the benchmark scripts print a paired ratio, so they all judge one the same way.

A ratio comes from a C benchmark as ``{"median", "p10", "p90", "rounds"}``: the median and p10-p90 of
per-round ratios, measured as benchmarks/bench_util.h describes, and with every round's A and B times
and the host's yardstick (``a_ns``, ``b_ns``, ``yardstick_ns``).  A ratio whose spread is wider than
SPREAD_BOUND is printed as "UNSTABLE" instead of a verdict, and ``--runs N`` compares the runs' medians
against the same bound.

Why host states: the host drops, for ~0.05-0.5 s at a time, from a fast into a slow state in which
the ratio *itself* differs (the emulator's loops slow ~1.5x, AES-NI's hardly), so one median over both
is a mix whose value depends on how a run's rounds happened to fall, and runs disagree.  Each round is
therefore put in a state by the yardstick, a fixed loop timed in the same round that is no part of any
ratio; each state gets its own median and verdict, and runs are compared state by state.  The rule is
meant to be explained in one sentence: sort the rounds' yardstick times, find the largest gap between
neighbours (in log time) that leaves at least MIN_STATE_ROUNDS rounds on either side, and call the two
sides two states if that gap is wider than STATE_GAP, else everything is one state.

The scripts import this as a sibling module: a script's own directory is ``sys.path[0]``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

SPREAD_BOUND = 0.20  # (p90 - p10) / median of the paired ratios above this: "unstable", not a verdict
MIN_STATE_ROUNDS = 10  # a state needs this many rounds: to be found at all, and in a run to be judged
# Measured on 2026-12-08 over 55 batches of 5 runs: the widest gap was 1.08-1.46x when rounds of both states
# were present and at most 1.01x when not (the yardstick's p01-p99 inside the fast state: 1.4%).
STATE_GAP = 1.05


@dataclass(frozen=True)
class Figure:
    """The median and p10-p90 of some per-round ratios, as the C side computes them."""

    median: float
    p10: float
    p90: float
    rounds: int

    @property
    def spread(self) -> float:
        return (self.p90 - self.p10) / self.median


@dataclass(frozen=True)
class Split:
    """Where a ratio's rounds divide into host states, by their yardstick times.

    ``cut`` is None when the rounds are one state; otherwise a round whose yardstick is below it ran in
    the fast state.  ``gap`` is the widest gap the rule found (a factor), shown so a reader can see how
    clear the split was.
    """

    cut: float | None
    gap: float


def quantile(sorted_values: Sequence[float], p: float) -> float:
    """The p-quantile as bench_util.h's quantile() takes it, so a figure is the same from either side."""
    return sorted_values[int(p * (len(sorted_values) - 1) + 0.5)]


def figure(ratios: Iterable[float]) -> Figure:
    values = sorted(ratios)
    return Figure(quantile(values, 0.5), quantile(values, 0.1), quantile(values, 0.9), len(values))


def has_rounds(r: dict[str, Any]) -> bool:
    """Whether a ratio carries its rounds: older output (and other programs' JSON) has the summary only."""
    return all(key in r for key in ("a_ns", "b_ns", "yardstick_ns"))


def round_ratios(r: dict[str, Any]) -> list[float]:
    return [a / b for a, b in zip(r["a_ns"], r["b_ns"], strict=True)]


def host_split(yardsticks: Sequence[float]) -> Split:
    """The rule of the module docstring: the widest gap with MIN_STATE_ROUNDS on each side, if > STATE_GAP.

    Log time, so a gap is a factor whatever the loop's speed; the rounds-on-each-side condition keeps a
    few stray rounds (every try of a round disturbed) from passing for a state.
    """
    logs = sorted(math.log(y) for y in yardsticks)
    best_gap, best_i = 0.0, -1
    for i in range(MIN_STATE_ROUNDS - 1, len(logs) - MIN_STATE_ROUNDS):
        if logs[i + 1] - logs[i] > best_gap:
            best_gap, best_i = logs[i + 1] - logs[i], i
    gap = math.exp(best_gap)
    if best_i < 0 or gap <= STATE_GAP:
        return Split(None, gap)
    return Split(math.exp((logs[best_i] + logs[best_i + 1]) / 2), gap)


def pooled_split(runs: Sequence[dict[str, Any]], name: str) -> Split:
    """One split for a ratio over all runs' rounds, so "fast" means the same rounds in every run."""
    return host_split([y for run in runs for y in run["ratios"][name]["yardstick_ns"]])


def pooled_splits(runs: Sequence[dict[str, Any]]) -> dict[str, Split]:
    """pooled_split for every ratio that carries its rounds (for the scripts' last-run report)."""
    return {name: pooled_split(runs, name) for name in runs[0]["ratios"]
            if all(has_rounds(run["ratios"][name]) for run in runs)}


def state_names(split: Split) -> tuple[str, ...]:
    return ("one state",) if split.cut is None else ("fast", "slow")


def state_rounds(r: dict[str, Any], split: Split) -> dict[str, list[int]]:
    """Each state's round indices in this ratio (a round at the cut itself counts as slow)."""
    if split.cut is None:
        return {"one state": list(range(len(r["yardstick_ns"])))}
    cut = split.cut
    return {"fast": [i for i, y in enumerate(r["yardstick_ns"]) if y < cut],
            "slow": [i for i, y in enumerate(r["yardstick_ns"]) if y >= cut]}


def state_figures(r: dict[str, Any], split: Split) -> dict[str, tuple[Figure | None, float]]:
    """Per state: its ratio figure (None with fewer than MIN_STATE_ROUNDS rounds) and its rounds' yardstick
    median (ns; nan when it has no rounds)."""
    ratios, yard = round_ratios(r), r["yardstick_ns"]
    out: dict[str, tuple[Figure | None, float]] = {}
    for state, idx in state_rounds(r, split).items():
        fig = figure(ratios[i] for i in idx) if len(idx) >= MIN_STATE_ROUNDS else None
        out[state] = (fig, quantile(sorted(yard[i] for i in idx), 0.5) if idx else math.nan)
    return out


def verdict(fig: Figure, goal: float | None, *, unit: str, what: str = "paired rounds") -> str:
    """A figure with its spread, and its verdict only when the spread allows one."""
    text = f"{fig.median:.2f} x {unit} (p10 {fig.p10:.2f}, p90 {fig.p90:.2f}, {fig.rounds} {what})"
    if fig.spread > SPREAD_BOUND:
        return f"{text}: UNSTABLE (spread {fig.spread:.0%} > {SPREAD_BOUND:.0%}; rerun on a quieter host)"
    if goal is None:
        return f"{text} (spread {fig.spread:.0%})"
    return f"{text}: {'meets' if fig.median >= goal else 'misses'} the goal >= {goal:.2f} (spread {fig.spread:.0%})"


def paired(r: dict[str, Any], goal: float | None, *, unit: str, split: Split | None = None) -> str:
    """A paired ratio with its verdict, and when its rounds fall into two host states, one line per state.

    ``split`` is the batch's (pooled_splits) so a run's states are the ones the agreement compares; without
    it the run's own rounds are split.  Later lines are indented to follow a ``  -> ... = `` line.
    """
    overall = verdict(Figure(r["median"], r["p10"], r["p90"], r["rounds"]), goal, unit=unit)
    if not has_rounds(r):
        return overall
    if split is None:
        split = host_split(r["yardstick_ns"])
    if split.cut is None:
        return (f"{overall}\n       (one host state: no yardstick gap wider than {STATE_GAP:.2f}x with >= "
                f"{MIN_STATE_ROUNDS} rounds either side; widest {split.gap:.2f}x)")
    figs, counts = state_figures(r, split), state_rounds(r, split)
    present = [state for state in figs if counts[state]]
    if len(present) == 1:  # the batch saw two states, this run only one: nothing is mixed here
        [state] = present
        return f"{overall}\n       (all rounds in the {state} host state, yardstick {figs[state][1]:.2f} ns/op)"
    lines = [f"all rounds, MIXING 2 host states: {overall}"]
    for state, (fig, yard) in figs.items():
        label = f"{state} host state (yardstick {yard:.2f} ns/op)"
        if fig is None:
            n = len(counts[state])
            lines.append(f"{label}: {n} round{'' if n == 1 else 's'}, fewer than {MIN_STATE_ROUNDS}: no figure")
        else:
            lines.append(f"{label}: {verdict(fig, goal, unit=unit, what='rounds')}")
    return "\n         ".join(lines)


def range_verdict(medians: Sequence[float]) -> str:
    """Whether medians agree: their range over their median, against SPREAD_BOUND."""
    spread = (max(medians) - min(medians)) / sorted(medians)[len(medians) // 2]
    return f"range {spread:.0%}: {'agree' if spread <= SPREAD_BOUND else 'DISAGREE'} (bound {SPREAD_BOUND:.0%})"


def state_agreement(runs: Sequence[dict[str, Any]], name: str, width: int) -> list[str]:
    """One ratio's lines per host state: each run's median in it ("-": too few rounds there), the rounds
    each run had in it, and agree/DISAGREE among the runs with enough rounds."""
    split = pooled_split(runs, name)
    per_run = [state_figures(run["ratios"][name], split) for run in runs]
    counts = [state_rounds(run["ratios"][name], split) for run in runs]
    yard = {state: sorted(run["ratios"][name]["yardstick_ns"][i] for run, c in zip(runs, counts, strict=True)
                          for i in c[state]) for state in state_names(split)}
    head = (f"  {name:<{width}} " + ("one host state" if split.cut is None else
            f"2 host states, split at yardstick {split.cut:.2f} ns/op") + f" (widest gap {split.gap:.2f}x)")
    lines = [head]
    for state in state_names(split):
        medians = [figs[state][0] for figs in per_run]
        seen = [i + 1 for i, fig in enumerate(medians) if fig is not None]
        texts = [f"{fig.median:.2f}" if fig else "-" for fig in medians]
        cells = " ".join(t.rjust(max(map(len, texts))) for t in texts)
        rounds = " ".join(str(len(c[state])) for c in counts)
        text = (f"    {state:<9} {cells}  (yardstick {quantile(yard[state], 0.5):.2f} ns/op; rounds {rounds}; "
                f"runs {','.join(map(str, seen)) or 'none'})")
        if len(seen) >= 2:
            judged = [fig.median for fig in medians if fig is not None]
            unstable = [i + 1 for i, fig in enumerate(medians) if fig is not None and fig.spread > SPREAD_BOUND]
            text += f"  {range_verdict(judged)}"
            if unstable:
                text += f"; UNSTABLE inside run {','.join(map(str, unstable))}"
        elif len(seen) == 1:
            text += ": seen in 1 run: no agreement to judge"
        else:
            text += f": no run had {MIN_STATE_ROUNDS} rounds in it: no agreement to judge"
        lines.append(text)
    return lines


def agreement(runs: list[dict[str, Any]]) -> list[str]:
    """Whether consecutive runs agree: per host state (when the rounds carry a yardstick), and over all
    rounds as before, which mixes the states and so may disagree when the states' shares differ."""
    names = list(runs[0]["ratios"])
    width = max(map(len, names))
    lines = [f"across {len(runs)} runs in a row (median of each run, all rounds: MIXES the host's states):"]
    for name in names:
        medians = [run["ratios"][name]["median"] for run in runs]
        lines.append(f"  {name:<{width}} {' '.join(f'{m:.2f}' for m in medians)}  {range_verdict(medians)}")
    with_rounds = [name for name in names if all(has_rounds(run["ratios"][name]) for run in runs)]
    if with_rounds:
        lines.append(f"per host state (rounds put in a state by the yardstick; a run's median needs "
                     f">= {MIN_STATE_ROUNDS} rounds in the state):")
        for name in with_rounds:
            lines.extend(state_agreement(runs, name, width))
    return lines
