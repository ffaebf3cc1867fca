"""benchmarks/bench_report.py: putting rounds in host states, per-state figures, and agreement across runs.

On synthetic rounds, so no C build and no timing: the rule must find two states only when the yardstick
really has two modes, give each state its own median, and judge agreement state by state.
"""

from __future__ import annotations

import random
import sys
from pathlib import Path
from typing import Any

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
if str(BENCHMARKS) not in sys.path:  # the scripts import it as a sibling; so do we
    sys.path.insert(0, str(BENCHMARKS))

import bench_report as br  # noqa: E402

FAST_YARD, SLOW_YARD = 1.355, 2.05  # ns per yardstick op, about what this host shows in its two states
FAST_RATIO, SLOW_RATIO = 0.62, 0.40


def ratio(states: str, *, fast: float = FAST_RATIO, slow: float = SLOW_RATIO, jitter: float = 0.005,
          seed: int = 0) -> dict[str, Any]:
    """A ratio as emu_bench prints it: one round per letter of ``states`` ("f" fast, "s" slow)."""
    rnd = random.Random(seed)
    a_ns, b_ns, yard = [], [], []
    for state in states:
        b = 18.7 * rnd.uniform(1 - jitter, 1 + jitter)
        target = fast if state == "f" else slow
        a_ns.append(b * target * rnd.uniform(1 - jitter, 1 + jitter))
        b_ns.append(b)
        yard.append((FAST_YARD if state == "f" else SLOW_YARD) * rnd.uniform(1, 1.01))
    summary = br.figure(a / b for a, b in zip(a_ns, b_ns, strict=True))
    return {"median": summary.median, "p10": summary.p10, "p90": summary.p90, "rounds": summary.rounds,
            "a_ns": a_ns, "b_ns": b_ns, "yardstick_ns": yard}


def run(states: str, **kw: Any) -> dict[str, Any]:
    return {"ratios": {"wide8": ratio(states, **kw)}}


def state_line(lines: list[str], state: str) -> str:
    [line] = [line for line in lines if line.strip().startswith(state)]
    return line


def test_quantile_rounds_like_bench_util() -> None:
    # bench_util.h: sorted[(int)(p * (n - 1) + 0.5)]
    assert br.quantile([1.0, 2.0, 3.0, 4.0], 0.5) == 3.0
    assert br.quantile(list(map(float, range(51))), 0.1) == 5.0


def test_bimodal_yardstick_splits_into_two_states() -> None:
    r = ratio("f" * 40 + "s" * 11)
    split = br.host_split(r["yardstick_ns"])
    assert split.cut is not None and FAST_YARD * 1.01 < split.cut < SLOW_YARD
    assert split.gap > 1.4
    counts = {state: len(idx) for state, idx in br.state_rounds(r, split).items()}
    assert counts == {"fast": 40, "slow": 11}


def test_unimodal_yardstick_is_one_state() -> None:
    r = ratio("f" * 51)
    split = br.host_split(r["yardstick_ns"])
    assert split.cut is None
    assert split.gap < br.STATE_GAP
    assert br.state_names(split) == ("one state",)


def test_a_few_stray_rounds_are_not_a_state() -> None:
    # Fewer than MIN_STATE_ROUNDS slow rounds: however wide the gap, not a mode.
    r = ratio("f" * (51 - br.MIN_STATE_ROUNDS + 1) + "s" * (br.MIN_STATE_ROUNDS - 1))
    assert br.host_split(r["yardstick_ns"]).cut is None


def test_split_ignores_the_ratio() -> None:
    # Same yardstick, wildly bimodal ratio: still one state, the classifier never looks at the ratio.
    r = ratio("f" * 51)
    r["a_ns"] = [b * (0.62 if i % 2 else 0.30) for i, b in enumerate(r["b_ns"])]
    assert br.host_split(r["yardstick_ns"]).cut is None


def test_each_state_has_its_own_median() -> None:
    r = ratio("fs" * 15 + "f" * 21)  # interleaved, as flips inside a run are
    figs = br.state_figures(r, br.host_split(r["yardstick_ns"]))
    fast, fast_yard = figs["fast"]
    slow, slow_yard = figs["slow"]
    assert fast is not None and slow is not None
    assert fast.median == pytest.approx(FAST_RATIO, rel=0.02) and fast.rounds == 36
    assert slow.median == pytest.approx(SLOW_RATIO, rel=0.02) and slow.rounds == 15
    assert fast_yard == pytest.approx(FAST_YARD, rel=0.01) and slow_yard == pytest.approx(SLOW_YARD, rel=0.01)


def test_paired_gives_a_verdict_per_state() -> None:
    text = br.paired(ratio("f" * 30 + "s" * 21), 0.5, unit="AES-NI")
    lines = [line.strip() for line in text.splitlines()]
    assert lines[0].startswith("all rounds, MIXING 2 host states:")
    assert "meets the goal >= 0.50" in state_line(lines, "fast")
    assert "misses the goal >= 0.50" in state_line(lines, "slow")


def test_paired_one_state_keeps_the_old_verdict() -> None:
    text = br.paired(ratio("f" * 51), 0.5, unit="AES-NI")
    assert text.splitlines()[0].startswith("0.62 x AES-NI")
    assert "meets the goal" in text and "one host state" in text and "MIXING" not in text


def test_paired_state_too_small_gets_no_figure() -> None:
    r = ratio("f" * 45 + "s" * 6)
    split = br.host_split(r["yardstick_ns"] + [SLOW_YARD] * 20)  # a batch's split found the slow state
    assert split.cut is not None
    text = br.paired(r, 0.5, unit="AES-NI", split=split)
    assert "6 rounds, fewer than 10: no figure" in state_line([t.strip() for t in text.splitlines()], "slow")


def test_spread_over_the_bound_is_unstable_per_state() -> None:
    # The slow state's rounds scatter by +-30%: that state is UNSTABLE, the fast one still has a verdict.
    r = ratio("f" * 30 + "s" * 21)
    rnd = random.Random(1)
    for i in range(30, 51):
        r["a_ns"][i] = r["b_ns"][i] * SLOW_RATIO * rnd.uniform(0.7, 1.3)
    lines = [line.strip() for line in br.paired(r, 0.5, unit="AES-NI").splitlines()]
    assert "UNSTABLE" in state_line(lines, "slow")
    assert "UNSTABLE" not in state_line(lines, "fast") and "meets" in state_line(lines, "fast")


def test_agreement_per_state_and_a_state_seen_in_one_run() -> None:
    # Run 1 spends most rounds slow: the all-rounds medians disagree, the fast state's agree,
    # and the slow state, seen in one run only, is not called agreeing.
    runs = [run("s" * 30 + "f" * 21, seed=1), *(run("f" * 51, seed=s) for s in range(2, 6))]
    lines = br.agreement(runs)
    overall = next(line for line in lines if line.strip().startswith("wide8") and "range" in line)
    assert "DISAGREE" in overall
    assert "2 host states" in next(line for line in lines if "host states, split at" in line)
    fast, slow = state_line(lines, "fast"), state_line(lines, "slow")
    assert "agree" in fast and "DISAGREE" not in fast and "runs 1,2,3,4,5" in fast
    assert "rounds 21 51 51 51 51" in fast
    assert "seen in 1 run: no agreement to judge" in slow and "runs 1)" in slow
    assert "agree (" not in slow


def test_agreement_states_that_differ_between_runs_disagree() -> None:
    runs = [run("f" * 25 + "s" * 26, seed=1), run("f" * 25 + "s" * 26, slow=0.55, seed=2)]
    lines = br.agreement(runs)
    assert "DISAGREE" in state_line(lines, "slow")
    assert "agree" in state_line(lines, "fast") and "DISAGREE" not in state_line(lines, "fast")


def test_agreement_flags_a_run_unstable_inside_a_state() -> None:
    runs = [run("f" * 51, seed=1), run("f" * 51, seed=2, jitter=0.2)]
    line = state_line(br.agreement(runs), "one state")
    assert "UNSTABLE inside run 2" in line


def test_output_without_rounds_is_judged_as_before() -> None:
    old = {"median": 0.62, "p10": 0.61, "p90": 0.63, "rounds": 51}
    assert br.paired(old, 0.5, unit="AES-NI") == (
        "0.62 x AES-NI (p10 0.61, p90 0.63, 51 paired rounds): meets the goal >= 0.50 (spread 3%)")
    lines = br.agreement([{"ratios": {"wide8": old}}, {"ratios": {"wide8": dict(old, median=0.40)}}])
    assert len(lines) == 2 and "DISAGREE" in lines[1]


def test_paired_run_inside_one_state_of_a_two_state_batch_is_not_mixing() -> None:
    r = ratio("f" * 51)
    split = br.host_split(r["yardstick_ns"] + [SLOW_YARD] * 20)
    text = br.paired(r, 0.5, unit="AES-NI", split=split)
    assert "MIXING" not in text and "all rounds in the fast host state" in text and "nan" not in text
