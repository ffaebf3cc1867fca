"""What changed between two runs: verdicts, provenance, performance judged against its own noise.

Tests are matched by node id (guest and check are part of it).  Verdicts:

- regression: passed → failed/error;  fix: failed/error → passed;  new skip: ran → skipped;
- new failure: a test absent or skipped in the base that fails now (shown, not counted as a regression:
  nothing it did before was lost);
- known: a change a known issue covers (see harness.report.known_issues), shown but not counted.

Provenance: a test whose observation came from the real instruction (``native``) and now comes
from anything else is flagged loudly and counts like a regression: the run lost real Key Locker
coverage even if every test still passes.

Performance, the noise rule.  A probe timing figure is the median of ``reps`` repetitions with
its 10th and 90th percentiles.  Its noise is the half-width of that central 80 %:
``hw = (p90 - p10) / 2``.  A change of medians is significant only when

    |median_new - median_base| > K * sqrt(hw_base² + hw_new²)      (K = 1)

and above a resolution floor of 2 % of the base median (which only matters when p10 = p90).
Why this threshold: for a normal spread hw ≈ 1.28 σ, so the bar is ≈ 1.8 σ of a single
repetition, about 8 standard errors of a 31-rep median — safely above sampling noise, and it
still admits the run-to-run (boot-to-boot) noise that a within-run standard error would miss.
A noisy figure (the probe marks a spread > 25 % untrustworthy) needs a large move to count;
a figure that moves within its own spread is never flagged.  Figures whose provenance changed
are not compared (an emulated figure measures the emulator).

Boot timings (start → SSH and probe ready) are judged twice.  All guests of a run boot the same
image, so the run's boot times across guests are repeated samples: the ``(all guests)`` figure
compares their medians with the same rule (p10/p90 across guests; floor 0.5 s) and catches a
slower image, kernel or host.  Per guest there is one sample per run, so there is no spread to
use within a run: the base is the base run together with any earlier runs given as ``history``
(the nightly passes the retained runs; their p10–p90 is used from 3 earlier runs on), and a change
counts only above a noise floor of max(2 s, 100 % of the base median) — a doubling.  The floor is
wide on purpose: under TCG on a shared host, with guests booting two at a time, the same guest's
boot→SSH went from 3.0 s one night to 10.6 s the next here, and from 11.2 s to 6.8 s.

A rerun (``klharness rerun``: the new record's ``rerun_of`` names the base run) is compared over
the cells it reran only: with ``--failed`` those are the base's failed and errored cells, so the
cells it did not rerun are neither "gone" nor anything else, the ``(all guests)`` boot row (other
guests, other samples) is left out, and the cells that fail again are listed as still failing.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from harness.report import model
from harness.report.known_issues import KnownIssue, KnownIssues

NOISE_K = 1.0
FIGURE_FLOOR_REL = 0.02
BOOT_FLOOR_S = 2.0
BOOT_FLOOR_REL = 1.0
BOOT_ALL_FLOOR_S = 0.5
HISTORY_MIN = 3  # earlier samples needed before their spread is used for boot timings


@dataclass(frozen=True)
class Stats:
    median: float
    p10: float
    p90: float

    @property
    def half_width(self) -> float:
        return max(0.0, self.p90 - self.p10) / 2

    @classmethod
    def of_samples(cls, samples: Sequence[float]) -> Stats:
        s = sorted(samples)
        return cls(statistics.median(s), _quantile(s, 0.10), _quantile(s, 0.90))


def _quantile(sorted_values: Sequence[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default)."""
    if len(sorted_values) == 1:
        return sorted_values[0]
    pos = q * (len(sorted_values) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


def threshold(base: Stats, new: Stats, *, floor: float) -> float:
    """The smallest change of medians that counts as real (see the module docstring)."""
    return max(NOISE_K * math.hypot(base.half_width, new.half_width), floor)


@dataclass(frozen=True)
class Delta:
    """A performance figure (or boot timing) in both runs and whether its change is beyond the noise."""

    guest: str
    name: str
    unit: str
    base: Stats
    new: Stats
    threshold: float
    note: str = ""  # why it was not compared

    @property
    def change(self) -> float:
        return self.new.median - self.base.median

    @property
    def relative(self) -> float:
        return self.change / self.base.median if self.base.median else math.inf

    @property
    def significant(self) -> bool:
        return not self.note and abs(self.change) > self.threshold

    @property
    def direction(self) -> str:
        if not self.significant:
            return "within noise" if not self.note else "not compared"
        return "slower" if self.change > 0 else "faster"


@dataclass(frozen=True)
class TestChange:
    nodeid: str
    label: str
    before: str | None  # outcome in the base run (None: not there)
    after: str | None
    reason: str = ""  # the new run's reason (failure or skip), one line
    known: KnownIssue | None = None


@dataclass(frozen=True)
class ProvenanceChange:
    nodeid: str
    label: str
    before: str
    after: str

    @property
    def loud(self) -> bool:
        """Executed Key Locker lost: native (silicon) or vmm (qemu-kl) before, something else now."""
        return self.before in ("native", "vmm") and self.after != self.before


@dataclass(frozen=True)
class Comparison:
    base_run: str
    new_run: str
    regressions: tuple[TestChange, ...] = ()
    fixes: tuple[TestChange, ...] = ()
    new_skips: tuple[TestChange, ...] = ()
    new_failures: tuple[TestChange, ...] = ()
    known: tuple[TestChange, ...] = ()
    provenance: tuple[ProvenanceChange, ...] = ()
    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    perf: tuple[Delta, ...] = ()
    boot: tuple[Delta, ...] = ()
    rerun: bool = False  # NEW is a rerun of BASE
    failed_only: bool = False  # ... of its failed cells only: compared over those
    scope: int = 0  # how many cells were compared
    still_failing: tuple[TestChange, ...] = ()  # a rerun's cells that failed both times

    @property
    def provenance_lost(self) -> tuple[ProvenanceChange, ...]:
        return tuple(p for p in self.provenance if p.loud)

    @property
    def failed(self) -> bool:
        """What makes ``report compare`` and the nightly exit 1: regressions, or real KL lost."""
        return bool(self.regressions or self.provenance_lost)

    @property
    def significant_perf(self) -> tuple[Delta, ...]:
        return tuple(d for d in (*self.perf, *self.boot) if d.significant)


def compare(base: model.Record, new: model.Record, known_issues: KnownIssues | None = None, *,
            history: Sequence[model.Record] = ()) -> Comparison:
    """Compare two run records; ``history``: earlier runs (oldest first) that widen the boot-time base."""
    known = known_issues or KnownIssues()
    before = {t.nodeid: t for t in base.tests}
    after = {t.nodeid: t for t in new.tests}
    link = new.rerun_of
    rerun = link is not None and link.run_id == base.run_id
    failed_only = link is not None and rerun and link.failed_only
    if failed_only:
        cells = {n for n, t in before.items() if model.failing(t)}
        before = {n: t for n, t in before.items() if n in cells}
        after = {n: t for n, t in after.items() if n in cells or n not in before}
    still: list[TestChange] = []
    buckets: dict[str, list[TestChange]] = {k: [] for k in ("regressions", "fixes", "new_skips", "new_failures",
                                                            "known")}
    provenance: list[ProvenanceChange] = []
    for nodeid, t in after.items():
        b = before.get(nodeid)
        was = b.outcome if b else None
        now = t.outcome
        issue = known.match(t, model.environment(new, t))
        change = TestChange(nodeid, model.label(t), was, now, model.one_line(t.reason), issue)
        kind = _classify(was, now, issue)
        if kind:
            buckets[kind].append(change)
        elif rerun and was in model.FAILING and now in model.FAILING:
            still.append(change)
        if b is not None and model.provenance(b) != model.provenance(t) and b.provenance and t.provenance:
            provenance.append(ProvenanceChange(nodeid, model.label(t), model.provenance(b), model.provenance(t)))
    return Comparison(
        base_run=base.run_id, new_run=new.run_id,
        **{k: tuple(v) for k, v in buckets.items()},
        provenance=tuple(provenance),
        added=tuple(sorted(set(after) - set(before))), removed=tuple(sorted(set(before) - set(after))),
        perf=tuple(_figure_deltas(base, new)), boot=tuple(_boot_deltas(base, new, history, across=not failed_only)),
        rerun=rerun, failed_only=failed_only, scope=len(set(before) | set(after)), still_failing=tuple(still))


def _classify(was: str | None, now: str | None, issue: KnownIssue | None) -> str | None:
    failing_now = now in model.FAILING
    if was == "passed" and failing_now:
        return "known" if issue else "regressions"
    if was in model.FAILING and now == "passed":
        return "known" if issue is not None and issue.intermittent else "fixes"
    if was in ("passed", *model.FAILING) and now == "skipped":
        return "new_skips"
    if was in (None, "skipped") and failing_now:
        return "known" if issue else "new_failures"
    return None


def _figure_deltas(base: model.Record, new: model.Record) -> list[Delta]:
    old = {(f.guest, f.name): f for f in model.figures(base)}
    out = []
    for f in model.figures(new):
        b = old.get((f.guest, f.name))
        if b is None:
            continue
        bs, ns = Stats(b.median, b.p10, b.p90), Stats(f.median, f.p10, f.p90)
        note = "" if b.provenance == f.provenance else f"provenance {b.provenance} → {f.provenance}"
        out.append(Delta(f.guest, f.name, f.unit, bs, ns, threshold(bs, ns, floor=FIGURE_FLOOR_REL * b.median), note))
    return out


def _boot_deltas(base: model.Record, new: model.Record, history: Sequence[model.Record], *,
                 across: bool = True) -> list[Delta]:
    out = []
    samples = [[s for g in r.guests.values() for s in [model.boot_seconds(g)] if s is not None]
               for r in (base, new)]
    if across and all(len(s) >= HISTORY_MIN for s in samples):
        bs, ns = Stats.of_samples(samples[0]), Stats.of_samples(samples[1])
        out.append(Delta("(all guests)", "boot→ssh", "s", bs, ns, threshold(bs, ns, floor=BOOT_ALL_FLOOR_S)))
    for guest, g in sorted(new.guests.items()):
        now = model.boot_seconds(g)
        was = model.boot_seconds(base.guest(guest))
        if now is None or was is None:
            continue
        earlier = [s for r in history if r.run_id not in (base.run_id, new.run_id)
                   for s in [model.boot_seconds(r.guest(guest))] if s is not None]
        bs = Stats.of_samples([*earlier, was]) if len(earlier) >= HISTORY_MIN else Stats(was, was, was)
        ns = Stats(now, now, now)
        floor = max(BOOT_FLOOR_S, BOOT_FLOOR_REL * bs.median)
        out.append(Delta(guest, "boot→ssh", "s", bs, ns, threshold(bs, ns, floor=floor)))
    return out
