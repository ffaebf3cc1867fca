"""The run as a board: one line per guest with its phase, time in it and counts, and the totals.

Why apart from the renderers: the terminal board and the plain log must say the same thing,
so both render this one state and its wording; it is tested with a fake clock, no terminal.
Events arrive from the main thread and from background boot threads, hence the lock.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field

from harness.progress.events import CellDone, GuestPhase, Planned, RunDone, RunEvent
from harness.report.model import counts_line
from harness.results.record import FAILING

RECENT_FAILURES = 5  # shown under the terminal board
WAITING = "waiting"
TESTS = "tests"
DONE = "done"
# How a phase reads while it lasts, and once it is over (the plain log says both).
NOW = {"image": "image", "boot": "booting", "ssh": "ssh", "probe": "probe", "event": "event", TESTS: "tests"}
OVER = {"image": "image ready in", "boot": "booted in", "ssh": "ssh in", "probe": "probe ran in",
        TESTS: "tests took"}


def seconds(s: float, *, precise: bool = True) -> str:
    """``4.2s``, ``37s``, ``2m05s``: short, and a tenth only where it matters."""
    if s < 10 and precise:
        return f"{s:.1f}s"
    if s < 60:
        return f"{s:.0f}s"
    m, rest = divmod(round(s), 60)
    return f"{m}m{rest:02d}s"


@dataclass
class GuestLine:
    """One guest of the run (a pooled guest, or the dedicated guest of a lifecycle event)."""

    name: str
    planned: int = 0
    phase: str = WAITING
    detail: str = ""
    since: float = 0.0  # when the current phase began
    started: float | None = None  # its first phase
    finished: float | None = None
    counts: Counter[str] = field(default_factory=Counter)

    @property
    def ran(self) -> int:
        return sum(self.counts.values())

    @property
    def busy(self) -> bool:
        return self.phase not in (WAITING, DONE)

    @property
    def failing(self) -> bool:
        return any(self.counts[k] for k in FAILING)

    def describe(self, now: float) -> str:
        """The phase in words, with the seconds spent in it so far (``booting 12s``)."""
        if self.phase == WAITING:
            return WAITING
        if self.phase == DONE:
            took = (self.finished or now) - (self.started or now)
            return f"done in {seconds(took)}"
        word = NOW[self.phase] + (f" {self.detail}" if self.detail else "")
        return word if self.phase == TESTS else f"{word} {seconds(now - self.since, precise=False)}"

    def results(self) -> str:
        """``12/40: 11 passed, 1 failed`` (``0/40`` before any test finished)."""
        of = f"/{self.planned}" if self.planned else ""
        return f"{self.ran}{of}" + (f": {counts_line(self.counts)}" if self.ran else "")


@dataclass(frozen=True)
class Row:
    """One guest line as a display shows it (a copy: the board goes on changing)."""

    guest: str
    phase: str
    doing: str  # the phase in words, with its seconds so far
    results: str
    failing: bool


@dataclass(frozen=True)
class View:
    """Everything a display shows at one moment."""

    totals: str
    rows: tuple[Row, ...]
    failures: tuple[str, ...]  # the most recent ones
    status: str | None  # set once the run ended
    run_id: str


class Board:
    """The state of one run, updated from events; ``apply`` also says what changed, in words."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.started = clock()
        self.run_id = ""
        self.status: str | None = None
        self.lines: dict[str, GuestLine] = {}
        self.counts: Counter[str] = Counter()
        self.planned = 0
        self.failures: deque[str] = deque(maxlen=RECENT_FAILURES)
        self._lock = threading.RLock()  # the views call totals() while holding it

    def apply(self, event: RunEvent) -> list[str]:
        """Take ``event`` in; return its lines for a log (one per thing that happened)."""
        with self._lock:
            now = self.clock()
            if isinstance(event, Planned):
                return self._planned(event)
            if isinstance(event, GuestPhase):
                return self._phase(event, now)
            if isinstance(event, CellDone):
                return self._cell(event, now)
            return self._done(event, now)

    def _line(self, name: str) -> GuestLine:
        if name not in self.lines:
            self.lines[name] = GuestLine(name)
        return self.lines[name]

    def _planned(self, event: Planned) -> list[str]:
        self.run_id = event.run_id
        for name, n in event.tests.items():
            self._line(name).planned = n
        self.planned = sum(line.planned for line in self.lines.values())
        guests = f"{len(event.tests)} guest{'' if len(event.tests) == 1 else 's'}"
        return [f"run {event.run_id}: {self.planned} tests on {guests}"]

    def _phase(self, event: GuestPhase, now: float) -> list[str]:
        line = self._line(event.guest)
        if line.phase == DONE:  # e.g. a background boot of a guest whose tests needed none: keep "done"
            return [f"{line.name}: {NOW[event.phase]} (its tests are done)"]
        before = self._ended(line, now)
        line.phase, line.detail, line.since = event.phase, event.detail, now
        if line.started is None:
            line.started = now
        return [f"{line.name}: {NOW[event.phase]}{f' {event.detail}' if event.detail else ''}{before}"]

    def _cell(self, event: CellDone, now: float) -> list[str]:
        line = self._line(event.guest)
        out = []
        if line.phase not in (TESTS, DONE, "event"):  # the first test result: the probe (if any) is over
            before = self._ended(line, now)
            line.phase, line.detail, line.since = TESTS, "", now
            if before:
                out.append(f"{line.name}: tests{before}")
        if line.started is None:
            line.started = now
        line.counts[event.outcome] += 1
        self.counts[event.outcome] += 1
        if event.outcome in FAILING:
            out.append(f"{line.name}: {event.outcome.upper()} {event.name}" + (f": {event.reason}" if event.reason
                                                                                else ""))
            self.failures.append(out[-1])
        if line.planned and line.ran >= line.planned and line.phase != DONE:
            before = self._ended(line, now) if line.phase == "event" else ""  # else "done in" says it
            line.phase, line.detail, line.finished = DONE, "", now
            out.append(f"{line.name}: {line.describe(now)}: {counts_line(line.counts)}{before} "
                       f"· run {self.totals(now)}")
        return out

    def _done(self, event: RunDone, now: float) -> list[str]:
        self.status = event.status
        run = f"run {self.run_id}" if self.run_id else "run"
        return [f"{run} {event.status}: {self.totals(now)}"]

    @staticmethod
    def _ended(line: GuestLine, now: float) -> str:
        """`` (booted in 5.3s)`` for the phase ``line`` is leaving, or nothing."""
        if not line.busy:
            return ""
        what = f"{line.detail} took" if line.phase == "event" else OVER[line.phase]
        return f" ({what} {seconds(now - line.since)})"

    # -- views, under the lock: boot threads go on emitting while a display reads ---------------

    def totals(self, now: float | None = None) -> str:
        """``52/237 tests: 50 passed, 2 failed · 1m02s``."""
        with self._lock:
            now = self.clock() if now is None else now
            ran = sum(self.counts.values())
            of = f"/{self.planned}" if self.planned else ""
            counts = f": {counts_line(self.counts)}" if ran else ""
            return f"{ran}{of} tests{counts} · {seconds(now - self.started, precise=False)}"

    def view(self) -> View:
        """What a display shows now: totals, a row per guest (busy, then waiting, then done), failures."""
        with self._lock:
            now = self.clock()
            order = sorted(self.lines.values(), key=lambda ln: (not ln.busy, ln.phase == DONE))
            rows = tuple(Row(ln.name, ln.phase, ln.describe(now), ln.results(), ln.failing) for ln in order)
            return View(self.totals(now), rows, tuple(self.failures), self.status, self.run_id)

    def busy(self) -> str:
        """``kl-a booting 31s, kl-b probe 2s`` (empty when no guest is busy)."""
        with self._lock:
            now = self.clock()
            return ", ".join(f"{ln.name} {ln.describe(now)}" for ln in self.lines.values() if ln.busy)
