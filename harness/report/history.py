"""The last N runs of a results directory, per test and per performance figure.

A results directory holds one subdirectory per run with its ``record.json``
(what ``klharness run --results DIR`` and the nightly produce); run ids are
timestamps, so directory names sort oldest first.

What it makes visible:
- a *flaky* test: it went both ways within the window (pass→fail→pass or fail→pass→fail; the
  number of flips is shown); a test that changed once is marked REGRESSED or FIXED;
- a *drift*: a probe figure (or a guest's boot→ssh) whose newer half of the window differs from
  its older half beyond the noise rule of harness.report.compare — each half summarised by the
  median of its medians, p10s and p90s — something no night-to-night comparison flags when it
  creeps a little every night.  Fewer than four runs with the figure: no verdict (two nights are a
  comparison, not a trend).
"""

from __future__ import annotations

import itertools
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape
from pathlib import Path

from harness.errors import HostError
from harness.report import model, svg
from harness.report.compare import BOOT_FLOOR_REL, BOOT_FLOOR_S, FIGURE_FLOOR_REL, Delta, Stats, threshold
from harness.results.record import load_record

DEFAULT_RUNS = 10
DRIFT_MIN = 4  # runs with a figure before its drift is judged
Point = tuple[float, float, float]  # median, p10, p90


@dataclass(frozen=True)
class TestHistory:
    nodeid: str
    label: str
    outcomes: tuple[str | None, ...]  # per run, oldest first; None: not in that run

    @property
    def flaky(self) -> bool:
        """Went both ways within the window (pass→fail→pass or fail→pass→fail): one change is not a flake."""
        return self.flips >= 2

    @property
    def trend(self) -> str:
        """``FLAKY``, ``REGRESSED`` / ``FIXED`` (changed once), ``NEW`` / ``GONE``, or empty."""
        if self.flaky:
            return f"FLAKY ({self.flips} flips)"
        if self.flips == 1:
            last = next(o for o in reversed(self.outcomes) if o in ("passed", *model.FAILING))
            return "REGRESSED" if last in model.FAILING else "FIXED"
        if self.outcomes and self.outcomes[-1] is None:
            return "GONE"
        if self.outcomes and self.outcomes[0] is None:
            return "NEW"
        return ""

    @property
    def flips(self) -> int:
        states = ["fail" if o in model.FAILING else o for o in self.outcomes if o in ("passed", *model.FAILING)]
        return sum(1 for a, b in itertools.pairwise(states) if a != b)

    @property
    def always_passed(self) -> bool:
        return all(o == "passed" for o in self.outcomes)


@dataclass(frozen=True)
class SeriesHistory:
    guest: str
    name: str
    unit: str
    points: tuple[Point | None, ...]  # per run, oldest first
    drift: Delta | None  # newer half vs older half (None: fewer than DRIFT_MIN points)


@dataclass(frozen=True)
class History:
    runs: tuple[str, ...]
    tests: tuple[TestHistory, ...]
    figures: tuple[SeriesHistory, ...]
    boot: tuple[SeriesHistory, ...]
    skipped: tuple[str, ...] = ()  # run directories whose record could not be read

    @property
    def flaky(self) -> tuple[TestHistory, ...]:
        return tuple(t for t in self.tests if t.flaky)

    def series(self) -> list[SeriesHistory]:
        """Probe figures then boot times, the drifting ones first."""
        return sorted((*self.figures, *self.boot), key=lambda s: not (s.drift is not None and s.drift.significant))


def run_dirs(directory: Path) -> list[Path]:
    """Run directories (with a record.json) under ``directory``, oldest first."""
    if not directory.is_dir():
        raise HostError(f"{directory}: not a results directory (expected one subdirectory per run)")
    return sorted(p for p in directory.iterdir()
                  if p.is_dir() and not p.is_symlink() and (p / "record.json").is_file())  # not 'latest'



def load_history(directory: Path, n: int = DEFAULT_RUNS) -> History:
    records, skipped = [], []
    for d in run_dirs(directory)[-n:] if n > 0 else []:
        try:
            records.append(load_record(d))
        except HostError as err:
            skipped.append(f"{d.name}: {err}")
    return build_history(records, skipped=skipped)


def build_history(records: Sequence[model.Record], *, skipped: Sequence[str] = ()) -> History:
    """The history of ``records`` (oldest first)."""
    runs = tuple(r.run_id for r in records)
    labels: dict[str, str] = {}
    outcomes: list[dict[str, str]] = []
    for r in records:
        now = {}
        for t in r.tests:
            labels[t.nodeid] = model.label(t)
            now[t.nodeid] = t.outcome
        outcomes.append(now)
    tests = tuple(TestHistory(nodeid, labels[nodeid], tuple(o.get(nodeid) for o in outcomes))
                  for nodeid in sorted(labels, key=lambda k: labels[k]))
    fig_points: dict[tuple[str, str], list[Point | None]] = {}
    units: dict[tuple[str, str], str] = {}
    boot_points: dict[str, list[Point | None]] = {}
    for i, r in enumerate(records):
        for f in model.figures(r):
            key = (f.guest, f.name)
            fig_points.setdefault(key, [None] * len(records))[i] = (f.median, f.p10, f.p90)
            units[key] = f.unit
        for guest, g in r.guests.items():
            s = model.boot_seconds(g)
            if s is not None:
                boot_points.setdefault(guest, [None] * len(records))[i] = (s, s, s)
    figures = tuple(SeriesHistory(g, name, units[(g, name)], tuple(p), _drift(g, name, units[(g, name)], p, boot=False))
                    for (g, name), p in sorted(fig_points.items()))
    boot = tuple(SeriesHistory(g, "boot→ssh", "s", tuple(p), _drift(g, "boot→ssh", "s", p, boot=True))
                 for g, p in sorted(boot_points.items()))
    return History(runs, tests, figures, boot, tuple(skipped))


def _summary(points: Sequence[Point], *, samples: bool) -> Stats:
    if samples:  # one value per run (boot): the spread of the values is the noise
        return Stats.of_samples([p[0] for p in points])
    return Stats(statistics.median(p[0] for p in points), statistics.median(p[1] for p in points),
                 statistics.median(p[2] for p in points))


def _drift(guest: str, name: str, unit: str, points: Sequence[Point | None], *, boot: bool) -> Delta | None:
    present = [p for p in points if p is not None]
    if len(present) < DRIFT_MIN:
        return None
    half = len(present) // 2
    older, newer = present[:half], present[-half:]
    base, new = _summary(older, samples=boot), _summary(newer, samples=boot)
    floor = max(BOOT_FLOOR_S, BOOT_FLOOR_REL * base.median) if boot else FIGURE_FLOOR_REL * base.median
    return Delta(guest, name, unit, base, new, threshold(base, new, floor=floor))


# -- rendering ---------------------------------------------------------------------------------------------

LETTER = {"passed": "P", "failed": "F", "error": "E", "skipped": "s", None: "."}


def render_table(h: History, *, all_tests: bool = False) -> str:
    """Plain text for a terminal: runs, the tests worth a look, figures with drift."""
    lines = [f"{len(h.runs)} runs, oldest first:"]
    lines += [f"  {i + 1:>2} {r}" for i, r in enumerate(h.runs)]
    lines += [f"  unreadable: {s}" for s in h.skipped]
    shown = [t for t in h.tests if all_tests or not t.always_passed]
    lines.append(f"\ntests ({len(shown)} of {len(h.tests)} shown{'' if all_tests else ': not always passed'}; "
                 "P passed F failed E error s skipped . absent):")
    for t in shown:
        marks = " ".join(LETTER.get(o, "?") for o in t.outcomes)
        lines.append(f"  {marks}  {t.trend:17} {t.label}")
    lines.append("\nfigures (median, oldest → newest; drift = newer half vs older half beyond noise):")
    for s in h.series():
        meds = [svg.fmt(p[0]) if p else "-" for p in s.points]
        verdict = s.drift.direction if s.drift else f"(drift needs {DRIFT_MIN} runs)"
        flag = "DRIFT " if s.drift and s.drift.significant else ""
        lines.append(f"  {s.guest:30} {s.name:20} {' '.join(meds):40} {flag}{verdict}")
    return "\n".join(lines)


def render_history_html(h: History, *, source: str = "", all_tests: bool = False) -> str:
    """A self-contained page: outcome grid of the tests worth a look, sparklines per figure."""
    shown = [t for t in h.tests if all_tests or not t.always_passed]
    parts = ['<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">',
             f"<title>klharness history {escape(source)}</title><style>{_CSS}</style></head><body>",
             f"<h1>klharness history: {len(h.runs)} runs</h1>",
             f"<p class='meta'>{escape(source)} · {escape(h.runs[0] if h.runs else '—')} → "
             f"{escape(h.runs[-1] if h.runs else '—')} · {len(h.flaky)} flaky tests · "
             f"{sum(1 for s in (*h.figures, *h.boot) if s.drift and s.drift.significant)} drifting figures</p>",
             f"<h2>Tests: {len(shown)} of {len(h.tests)} {'shown' if all_tests else 'not always passing'}</h2>"]
    if shown:
        rows = [((t.trend.split(" (")[0] + " " if t.trend else "") + t.label, t.outcomes) for t in shown]
        parts.append(svg.outcome_grid("Test outcomes per run (oldest left)", h.runs, rows))
    parts.append("<h2>Figures</h2><table><tr><th>guest</th><th>figure</th><th>trend (median, p10–p90 band)</th>"
                 "<th>older half</th><th>newer half</th><th>verdict</th></tr>")
    for s in h.series():
        d = s.drift
        verdict = ("<b>DRIFT " + escape(d.direction) + "</b>" if d.significant else escape(d.direction)) if d else "—"
        parts.append(f"<tr><td>{escape(s.guest)}</td><td>{escape(s.name)} ({escape(s.unit)})</td>"
                     f"<td>{svg.sparkline(s.points, label=f'{s.guest} {s.name}')}</td>"
                     f"<td>{escape(svg.fmt(d.base.median)) if d else ''}</td>"
                     f"<td>{escape(svg.fmt(d.new.median)) if d else ''}</td><td>{verdict}</td></tr>")
    parts.append("</table><p class='small'>Drift: the newer half of the window against the older half, each "
                 "summarised by the median of its medians/p10s/p90s, judged by the noise rule of "
                 "harness/report/compare.py.</p></body></html>")
    return "\n".join(parts)


_CSS = ("body{font:14px/1.45 system-ui,sans-serif;margin:0 auto;max-width:1400px;padding:0 20px 40px}"
        "table{border-collapse:collapse}th,td{border:1px solid #e0e0e0;padding:3px 7px;text-align:left}"
        ".meta,.small{color:#555}.small{font-size:12px}")
