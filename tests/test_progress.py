"""Live progress (harness/progress/): the board's state and wording with a fake clock, the line log and
the terminal board, the pytest bridge with pytester, and ``klharness run`` itself in a pipe and on a
pseudo-terminal — without libvirt (a stock-kvm matrix skips every Key Locker cell before a boot).
The phases a real boot goes through are seen by tests/test_run_real.py (integration)."""

from __future__ import annotations

import io
import json
import os
import pty
import re
import select
import subprocess
import sys
import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from harness.progress.board import Board
from harness.progress.display import open_display
from harness.progress.events import CellDone, GuestPhase, Planned, RunDone, RunEvent
from harness.progress.live import render
from harness.progress.plain import LineLog
from harness.progress.pytest_plugin import ProgressPlugin
from harness.timeouts import Timeouts

REPO = Path(__file__).resolve().parent.parent
KLHARNESS = [sys.executable, "-m", "harness.cli"]
KL_ONLY = """
run: {profile: stock-kvm, kl_backend: emulated}
guests:
  - name: kl-a
    vcpus: 2
    max_vcpus: 3
    kl: {enabled: true}
lifecycle: [save-restore, vcpu-hotplug]
"""


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now

    def tick(self, seconds: float) -> None:
        self.now += seconds


def play(board: Board, clock: Clock, steps: list[tuple[float, RunEvent]]) -> list[str]:
    out: list[str] = []
    for wait, event in steps:
        clock.tick(wait)
        out += board.apply(event)
    return out


# -- the board: what each event says ------------------------------------------------------------------------------

def test_each_phase_line_says_how_long_the_phase_before_it_took() -> None:
    clock = Clock()
    board = Board(clock)
    lines = play(board, clock, [
        (0, Planned("r1", {"kl-a": 2})),
        (1, GuestPhase("kl-a", "image", "mini")),
        (0.5, GuestPhase("kl-a", "boot")),
        (5.25, GuestPhase("kl-a", "ssh")),
        (1, GuestPhase("kl-a", "probe")),
        (2, CellDone("kl-a", "passed", "ud.loadiwkey")),
        (0.5, CellDone("kl-a", "failed", "encodekey128.zf", "ZF was 1, profile expects 0")),
    ])
    assert lines == [
        "run r1: 2 tests on 1 guest",
        "kl-a: image mini",
        "kl-a: booting (image ready in 0.5s)",
        "kl-a: ssh (booted in 5.2s)",
        "kl-a: probe (ssh in 1.0s)",
        "kl-a: tests (probe ran in 2.0s)",
        "kl-a: FAILED encodekey128.zf: ZF was 1, profile expects 0",
        "kl-a: done in 9.2s: 1 failed, 1 passed · run 2/2 tests: 1 failed, 1 passed · 10s",
    ]


def test_a_busy_guest_shows_the_seconds_of_its_phase_so_far() -> None:
    clock = Clock()
    board = Board(clock)
    play(board, clock, [(0, Planned("r1", {"kl-a": 3, "kl-b": 1})), (2, GuestPhase("kl-a", "boot"))])
    clock.tick(12.4)
    view = board.view()
    assert [(r.guest, r.doing, r.results) for r in view.rows] == [("kl-a", "booting 12s", "0/3"),
                                                                ("kl-b", "waiting", "0/1")]
    assert view.totals == "0/4 tests · 14s"
    assert board.busy() == "kl-a booting 12s"


def test_a_lifecycle_guest_is_done_when_its_event_cell_is_with_the_events_duration() -> None:
    clock = Clock()
    board = Board(clock)
    lines = play(board, clock, [
        (0, Planned("r1", {"kl-a-reboot": 1})),
        (0, GuestPhase("kl-a-reboot", "boot")),
        (4, GuestPhase("kl-a-reboot", "ssh")),
        (1, GuestPhase("kl-a-reboot", "event", "reboot")),
        (20, CellDone("kl-a-reboot", "passed", "reboot")),
    ])
    assert lines[-2] == "kl-a-reboot: event reboot (ssh in 1.0s)"
    assert lines[-1].startswith("kl-a-reboot: done in 25s: 1 passed (reboot took 20s) · run 1/1 tests")


def test_rows_list_busy_guests_first_then_waiting_then_done_with_recent_failures() -> None:
    clock = Clock()
    board = Board(clock)
    play(board, clock, [
        (0, Planned("r1", {"done": 1, "waiting": 1, "busy": 1})),
        (1, CellDone("done", "error", "test_x", "boot timed out")),
        (1, GuestPhase("busy", "probe")),
    ])
    view = board.view()
    assert [r.guest for r in view.rows] == ["busy", "waiting", "done"]
    assert view.rows[2].failing and not view.rows[0].failing
    assert view.failures == ("done: ERROR test_x: boot timed out",)


def test_a_guest_whose_tests_are_done_stays_done_when_a_late_boot_reports() -> None:
    clock = Clock()
    board = Board(clock)
    lines = play(board, clock, [(0, Planned("r1", {"g": 1})), (1, CellDone("g", "passed", "plan_only")),
                                (1, GuestPhase("g", "boot"))])
    assert lines[-1] == "g: booting (its tests are done)"
    assert board.view().rows[0].doing == "done in 0.0s"


def test_the_end_of_the_run_says_its_status_and_totals() -> None:
    clock = Clock()
    board = Board(clock)
    lines = play(board, clock, [(0, Planned("r9", {"g": 1})), (3, CellDone("g", "skipped", "x")),
                                (61, RunDone("interrupted"))])
    assert lines[-1] == "run r9 interrupted: 1/1 tests: 1 skipped · 1m04s"
    assert board.view().status == "interrupted"


# -- the line log and the terminal board ---------------------------------------------------------------------

def test_the_line_log_stamps_each_line_with_the_elapsed_time() -> None:
    clock = Clock()
    out = io.StringIO()
    log = LineLog(out, clock=clock, heartbeat=0)
    clock.tick(3.2)
    log.emit(GuestPhase("kl-a", "boot"))
    assert out.getvalue() == "[  3.2s] kl-a: booting\n"


def test_the_line_log_names_each_busy_guest_with_its_seconds_while_nothing_else_happens() -> None:
    out = io.StringIO()
    log = LineLog(out, heartbeat=0.05)
    log.start()
    try:
        log.emit(GuestPhase("kl-stuck", "boot"))
        deadline = time.monotonic() + 5
        while "still running" not in out.getvalue() and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        log.close()
    assert "still running: kl-stuck booting 0s · run 0 tests" in out.getvalue()


def test_the_line_log_never_fails_the_run_when_its_stream_is_gone() -> None:
    out = io.StringIO()
    log = LineLog(out, heartbeat=0)
    out.close()
    log.emit(GuestPhase("kl-a", "boot"))  # must not raise
    log.emit(CellDone("kl-a", "failed", "x"))
    assert log.board.counts["failed"] == 1


def test_the_terminal_board_shows_each_guest_its_phase_and_the_run_totals() -> None:
    clock = Clock()
    board = Board(clock)
    play(board, clock, [(0, Planned("r1", {"kl-a": 40, "kl-b": 40})), (1, GuestPhase("kl-a", "boot")),
                        (2, GuestPhase("kl-b", "probe")), (1, CellDone("kl-b", "failed", "ud.x", "no #UD"))])
    clock.tick(7)
    console = Console(file=io.StringIO(), width=100, color_system=None)
    console.print(render(board.view()))
    text = console.file.getvalue()  # type: ignore[attr-defined]
    assert "klharness run r1 running: 1/80 tests: 1 failed · 11s" in text
    assert [ln.split() for ln in text.splitlines() if ln.startswith("kl-")] == [
        ["kl-a", "booting", "10s", "0/40"], ["kl-b", "tests", "1/40:", "1", "failed"], ["kl-b:", "FAILED", "ud.x:",
                                                                                         "no", "#UD"]]


def _read_all(fd: int, *, until: float) -> bytes:
    data = b""
    while time.monotonic() < until:
        ready, _, _ = select.select([fd], [], [], 0.1)
        if not ready:
            continue
        try:
            chunk = os.read(fd, 65536)
        except OSError:  # EIO: the other side closed
            break
        if not chunk:
            break
        data += chunk
    return data


def test_a_terminal_gets_the_board_redrawn_in_place_and_a_pipe_gets_lines(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TERM", "xterm-256color")
    master, slave = pty.openpty()
    with os.fdopen(slave, "w") as tty:
        display = open_display(tty)
        display.start()
        display.emit(Planned("r1", {"kl-a": 1}))
        display.emit(GuestPhase("kl-a", "boot"))
        time.sleep(0.6)  # a few refreshes
        display.emit(CellDone("kl-a", "passed", "x"))
        display.emit(RunDone("complete"))
        display.close()
    seen = _read_all(master, until=time.monotonic() + 2).decode(errors="replace")
    os.close(master)
    assert "\x1b[" in seen and "\x1b[1A" in seen  # styled, and redrawn over itself
    assert "booting" in seen and "klharness run r1 complete: 1/1 tests: 1 passed" in seen

    read, write = os.pipe()
    with os.fdopen(write, "w") as pipe:
        display = open_display(pipe)
        display.start()
        display.emit(GuestPhase("kl-a", "boot"))
        display.close()
    with os.fdopen(read) as lines:
        assert lines.read().endswith("] kl-a: booting\n")


def test_a_dumb_terminal_gets_lines_not_a_board(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TERM", "dumb")
    master, slave = pty.openpty()
    with os.fdopen(slave, "w") as tty:
        display = open_display(tty)
        display.start()
        display.emit(GuestPhase("kl-a", "boot"))
        display.close()
    seen = _read_all(master, until=time.monotonic() + 2).decode(errors="replace")
    os.close(master)
    assert seen.endswith("] kl-a: booting\r\n") and "\x1b[" not in seen


# -- the session and the boot code emit the phases --------------------------------------------------------------

@dataclass
class Recorder:
    events: list[RunEvent] = field(default_factory=list)

    def emit(self, event: RunEvent) -> None:
        self.events.append(event)


def test_boot_reports_booting_before_the_domain_starts_and_ssh_before_connecting(monkeypatch: pytest.MonkeyPatch,
                                                                               tmp_path: Path) -> None:
    from harness.config.model import Config, GuestConfig, KlConfig, RunSettings
    from harness.guest import probeguest as guestrun
    from harness.plan.matrix import plan

    progress = Recorder()
    seen: list[str] = []

    class FakeGuest:
        timings: dict[str, float] = {}  # noqa: RUF012

    deadlines: list[Any] = []

    def fake_launch(*args: Any, **kwargs: Any) -> FakeGuest:
        seen.append(f"launch after {[e.phase for e in progress.events]}")  # type: ignore[union-attr]
        deadlines.append(kwargs["deadline"])
        return FakeGuest()

    def fake_connect(self: guestrun.ProbeGuest, deadline: Any = None) -> None:
        seen.append(f"connect after {[e.phase for e in progress.events]}")  # type: ignore[union-attr]
        deadlines.append(deadline)

    monkeypatch.setattr(guestrun, "launch", fake_launch)
    monkeypatch.setattr(guestrun.ProbeGuest, "connect", fake_connect)

    class Conn:
        def getURI(self) -> str:
            return "qemu:///system"

    class Keys:
        public_line = "ssh-ed25519 AAAA test"

    config = Config("t.yaml", RunSettings(kl_backend="emulated"),
                    (GuestConfig(name="kl-a", kl=KlConfig(enabled=True)),))
    p = plan(config)[0]
    ctx = guestrun.RunContext("r1", Conn(), Keys(), Timeouts(boot=77.0), None, tmp_path,  # type: ignore[arg-type]
                              None, tmp_path, progress=progress)  # type: ignore[arg-type]
    guestrun.boot(ctx, p, None, suffix="-reboot")  # type: ignore[arg-type]
    assert progress.events == [GuestPhase("kl-a-reboot", "boot"), GuestPhase("kl-a-reboot", "ssh")]
    assert seen == ["launch after ['boot']", "connect after ['boot', 'ssh']"]
    # One boot budget for the console marker and the SSH greeting, not one each.
    assert deadlines[0] is deadlines[1] and deadlines[0].seconds == 77.0


def test_the_session_reports_the_probe_once_per_pooled_guest(tmp_path: Path) -> None:
    from harness.config.model import Config, GuestConfig, KlConfig, RunSettings
    from harness.guest.probeguest import ProbeRun
    from harness.plan.profiles import load_profile
    from harness.run.artifacts import Artifacts
    from harness.run.session import KlSession

    progress = Recorder()
    config = Config("t.yaml", RunSettings(kl_backend="emulated"),
                    (GuestConfig(name="kl-a", kl=KlConfig(enabled=True)),))
    s = KlSession(config, load_profile("emulated"), persist=False, progress=progress)

    class Spec:
        name = "kl-a"

    class Pooled:
        class guest:
            spec = Spec()

        def probe(self) -> ProbeRun:
            return ProbeRun(None, "{}", 0.1)  # type: ignore[arg-type]

    done: Future[Any] = Future()
    done.set_result(Pooled())
    s.pool.entries["kl-a"].future = done
    try:
        s.pool.artifacts = Artifacts(tmp_path, "none")
        s.pool.probe("kl-a")
        s.pool.probe("kl-a")
    finally:
        s.pool.entries["kl-a"].future = None
        s.close("complete")
    assert progress.events == [GuestPhase("kl-a", "probe")]


# -- through pytest, and through klharness run ------------------------------------------------------------------

def catalogue(pytester: pytest.Pytester) -> Path:
    for name in ("test_instructions.py", "test_lifecycle.py", "test_exposure.py"):
        pytester.makepyfile(**{name[:-3]: (REPO / "testcases" / name).read_text()})
    return pytester.makefile(".yaml", matrix=KL_ONLY)


def test_the_plugin_tells_the_display_each_guest_line_and_blanks_pytests_letters(pytester: pytest.Pytester) -> None:
    cfg = catalogue(pytester)
    out = io.StringIO()
    result = pytester.runpytest("-q", f"--kl-config={cfg}", f"--kl-results={pytester.path / 'res'}",
                                "--kl-run-id=p1", "-p", "no:cacheprovider", "-o", "console_output_style=classic",
                                plugins=[ProgressPlugin(LineLog(out, heartbeat=0))])
    lines = out.getvalue().splitlines()
    tests = json.loads((pytester.path / "res" / "p1" / "record.json").read_text())["tests"]
    pooled = sum(1 for t in tests if t["guest"] == "kl-a" and not t["event"])
    assert any(ln.endswith(f"run p1: {len(tests)} tests on 3 guests") for ln in lines), lines
    assert any("kl-a: done in" in ln and f": {pooled} skipped ·" in ln for ln in lines), lines
    assert any("kl-a-vcpu-hotplug: done in" in ln and ": 1 skipped ·" in ln for ln in lines), lines
    # The elapsed time is whatever this host took (a loaded host needs more than a second): its form only.
    n = len(tests)
    assert re.search(rf"run p1 complete: {n}/{n} tests: {n} skipped · (\d+m)?\d+s$", lines[-1]), lines
    assert "sss" not in result.stdout.str()  # no letters drawn through the display
    assert result.ret == 0


def test_pytest_used_directly_keeps_its_own_output(pytester: pytest.Pytester) -> None:
    cfg = catalogue(pytester)
    result = pytester.runpytest("-q", f"--kl-config={cfg}", f"--kl-results={pytester.path / 'res'}",
                                "-p", "no:cacheprovider")
    assert "s" * 40 in result.stdout.str()
    assert "tests on" not in result.stdout.str()


def _kl_only(tmp_path: Path) -> Path:
    cfg = tmp_path / "kl-only.yaml"
    cfg.write_text(KL_ONLY)
    return cfg


def test_klharness_run_in_a_pipe_logs_a_line_per_event(tmp_path: Path) -> None:
    res = subprocess.run([*KLHARNESS, "run", str(_kl_only(tmp_path)), "--results", str(tmp_path / "res")],
                         capture_output=True, text=True, cwd=REPO, timeout=300, check=False)
    assert res.returncode == 0, res.stdout + res.stderr
    lines = res.stdout.splitlines()
    assert any(ln.startswith("[") and ln.endswith("tests on 3 guests") for ln in lines), res.stdout
    assert any("] kl-a: done in" in ln and "· run" in ln for ln in lines), res.stdout
    assert any(re.search(r" complete: (\d+)/\1 tests: \1 skipped", ln) for ln in lines), res.stdout
    assert "sss" not in res.stdout
    assert "\x1b[" not in res.stdout  # plain text for a log


def test_klharness_run_quiet_shows_neither_the_board_nor_the_log(tmp_path: Path) -> None:
    res = subprocess.run([*KLHARNESS, "run", str(_kl_only(tmp_path)), "-q", "--results", str(tmp_path / "res")],
                         capture_output=True, text=True, cwd=REPO, timeout=300, check=False)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "tests on 3 guests" not in res.stdout and "done in" not in res.stdout
    assert "s" * 40 in res.stdout  # pytest's own quiet output, as before


def _klharness_on_a_terminal(args: list[str], *, timeout: float) -> tuple[int, str]:
    """``klharness ARGS`` with a pseudo-terminal as stdout and stderr: its exit code and all it wrote."""
    master, slave = pty.openpty()
    env = {**os.environ, "COLUMNS": "120", "LINES": "40", "TERM": "xterm-256color"}
    env.pop("NO_COLOR", None)
    proc = subprocess.Popen([*KLHARNESS, *args], stdin=subprocess.DEVNULL, stdout=slave, stderr=slave, cwd=REPO,
                            env=env)
    os.close(slave)
    try:
        seen = _read_all(master, until=time.monotonic() + timeout).decode(errors="replace")
    finally:
        os.close(master)
        proc.wait(timeout=60)
    return proc.returncode, seen


def test_klharness_run_on_a_terminal_draws_the_live_board(tmp_path: Path) -> None:
    rc, seen = _klharness_on_a_terminal(["run", str(_kl_only(tmp_path)), "--results", str(tmp_path / "res")],
                                        timeout=240)
    assert rc == 0, seen
    board = seen.split("klharness run record")[0]
    assert "\x1b[" in board and "klharness run " in board
    assert re.search(r"complete: (\d+)/\1 tests: \1 skipped", board), board
    assert "kl-a-save-restore" in board and "done in" in board
    assert "] kl-a: done" not in board  # the board, not the line log
    assert "sss" not in seen


def test_a_usage_error_on_a_terminal_leaves_the_error_and_no_empty_board(tmp_path: Path) -> None:
    rc, seen = _klharness_on_a_terminal(["run", str(_kl_only(tmp_path)), "--profile", "nope", "--results",
                                         str(tmp_path / "res")], timeout=120)
    assert rc == 4, seen
    assert "profile 'nope': no configs/profiles/nope.yaml" in seen
    assert "klharness run running" not in seen and "\x1b[?25l" not in seen  # no board was ever drawn
