"""``klharness run [CONFIG]``: run the catalogue on the matrix and print a table per guest.

Why through pytest: ``klharness run configs/ci.yaml`` and ``pytest testcases/
--kl-config configs/ci.yaml`` must give the same verdicts, so there is one
path — the plugin — and this command only chooses its options and summarises
the run record it wrote.  While it runs, it shows each guest's phase (harness.progress: a live
board on a terminal, a line per event otherwise, nothing with ``-q``) and hands the plugin its
invocation to record, so that ``klharness rerun`` can start the same run again.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter, defaultdict
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from harness.config.model import KEEP_POLICIES
from harness.paths import REPO_DIR
from harness.results.invocation import Invocation
from harness.results.record import load_record, new_run_id
from harness.results.schema import GuestEntry, RunRecord, TestEntry

if TYPE_CHECKING:
    import pytest

DEFAULT_CONFIG = REPO_DIR / "configs" / "ci.yaml"


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("run", help="run the Key Locker catalogue on a matrix (default configs/ci.yaml)")
    p.add_argument("config", nargs="?", type=Path, default=DEFAULT_CONFIG, help="matrix config")
    p.add_argument("--profile", help="expectation profile (default: run.profile of the config)")
    p.add_argument("--uri", help="libvirt URI (default: run.uri of the config)")
    p.add_argument("--keep", choices=KEEP_POLICIES, help="whose artifacts to keep")
    p.add_argument("--results", type=Path, help="results root (default: run.results of the config)")
    p.add_argument("-k", dest="keyword", help="only tests matching this pytest -k expression")
    p.add_argument("--pytest-arg", action="append", default=[], help="extra argument for pytest (repeatable)")
    add_quiet(p)
    p.set_defaults(func=run)
    plan = sub.add_parser("plan", help="list the cells of a matrix with their ids")
    plan.add_argument("config", nargs="?", type=Path, default=DEFAULT_CONFIG)
    plan.set_defaults(func=run_plan)


def add_quiet(p: argparse.ArgumentParser) -> None:
    p.add_argument("-q", "--quiet", action="store_true",
                   help="no progress (neither the live board on a terminal nor the line log): pytest's own "
                        "quiet output, as before")


def invocation_of(args: argparse.Namespace) -> Invocation:
    """The run as typed, with paths made absolute (recorded for klharness rerun)."""
    return Invocation(config=str(Path(args.config).resolve()), profile=args.profile, uri=args.uri, keep=args.keep,
                      results=str(Path(args.results).resolve()) if args.results else None, keyword=args.keyword,
                      pytest_args=tuple(args.pytest_arg), argv=tuple(getattr(args, "command_line", ())),
                      cwd=str(Path.cwd()))


def pytest_args(inv: Invocation, run_id: str, results_root: Path) -> list[str]:
    targets = list(inv.tests) or [str(REPO_DIR / "testcases")]
    out = [*targets, f"--kl-config={inv.config}", f"--kl-run-id={run_id}",
           f"--kl-results={results_root}", f"--junitxml={results_root / run_id / 'junit.xml'}",
           "-o", "junit_family=xunit2", "-p", "no:cacheprovider", "-q", "-rfE"]
    for opt, value in (("--kl-profile", inv.profile), ("--kl-uri", inv.uri), ("--kl-keep", inv.keep)):
        if value:
            out.append(f"{opt}={value}")
    if inv.keyword:
        out += ["-k", inv.keyword]
    if inv.rootdir:  # a rerun: node ids relative to the first run's rootdir, wherever this one starts
        out.append(f"--rootdir={inv.rootdir}")
    return out + list(inv.pytest_args)


class InvocationPlugin:
    """Hands the invocation to harness.plugin, which records it when the run starts."""

    def __init__(self, invocation: Invocation) -> None:
        self.invocation = invocation

    def pytest_kl_invocation(self, config: pytest.Config) -> Invocation:
        return replace(self.invocation, rootdir=str(config.rootpath))


def run(args: argparse.Namespace) -> int:
    return execute(invocation_of(args), quiet=args.quiet)


def execute(inv: Invocation, *, quiet: bool = False) -> int:
    """Run the catalogue as ``inv`` says (klharness run and rerun), then print the summary and reports."""
    import pytest

    from harness.config import load_config
    from harness.progress.display import open_display
    from harness.progress.pytest_plugin import ProgressPlugin

    config = load_config(inv.config)  # errors here read better than pytest's UsageError
    results_root = Path(inv.results or config.run.results).resolve()
    run_id = new_run_id()
    plugins: list[object] = [InvocationPlugin(inv)]
    display = None if quiet else open_display(sys.stdout)
    args = pytest_args(inv, run_id, results_root)
    if display is not None:
        plugins.append(ProgressPlugin(display))
        args += ["-o", "console_output_style=classic"]  # no [ 42%] columns beside the display
        display.start()
    try:
        code = int(pytest.main(args, plugins=plugins))
    finally:
        if display is not None:
            display.close()
    record_path = results_root / run_id / "record.json"
    if record_path.exists():
        print()
        print(summarize(load_record(record_path)))
        print(f"\nrun record: {record_path}\nJUnit: {results_root / run_id / 'junit.xml'}")
        from harness.report.write import after_run
        print(after_run(results_root / run_id))
    return code


def summarize(record: RunRecord) -> str:
    """One table per guest: backend, accelerator, boot phases, verdict counts, failures with reasons
    and the command that reproduces each."""
    from harness.report import model
    from harness.report.reproduce import reproduce_command

    tests_by_guest: dict[str, list[TestEntry]] = defaultdict(list)
    for t in record.tests:
        tests_by_guest[t.guest].append(t)
    lines = [f"run {record.run_id} ({record.status}), profile {record.profile}, "
             f"accel {model.host_accel(record) or '?'}"]
    rerun = record.rerun_of
    if rerun is not None:
        only = " (its failed cells only)" if rerun.failed_only else ""
        lines.append(f"rerun of {rerun.run_id}{only}")
    for host, why in sorted((record.hosts_down or {}).items()):
        lines.append(f"host {host} left out (its guests ran on the other hosts): {why}")
    for what in record.teardown_errors or ():
        lines.append(f"teardown: {what}")
    for name in sorted(tests_by_guest):
        tests = tests_by_guest[name]
        counts = Counter(t.outcome for t in tests)
        g = record.guest(name)
        timings = g.timings or {}
        boot = f"boot->ssh {timings['ssh_ready']:.1f}s" if "ssh_ready" in timings else "not booted"
        probe = g.probe if isinstance(g.probe, Mapping) else {}
        seen = f" (probe saw KL {probe['backend']})" if probe.get("backend") else ""
        lines.append(f"\n{name}: VMM backend {_or(g.backend, '-')}{seen}, host {_or(g.host, '-')}, "
                     f"{_kernel(g)}{boot}, probe {_or(g.probe_seconds, '-')}s")
        lines.append("  " + ", ".join(f"{counts[k]} {k}" for k in ("passed", "failed", "skipped", "error")
                                      if counts[k]))
        for test in tests:
            if model.failing(test):
                lines.append(f"  FAIL {test.check or test.event or test.test}: {_or(test.reason, '')}")
                lines.append(f"    reproduce: {reproduce_command(record, test)}")
        skipped = {t.reason or "" for t in tests if t.outcome == "skipped"}
        lines.extend(f"  skip: {reason}" for reason in sorted(skipped))
    for name, g in sorted(record.guests.items()):
        if name not in tests_by_guest and g.timings is not None:
            lines.append(f"\n{name}: {_kernel(g)}boot->ssh {g.timings.get('ssh_ready', 0):.1f}s (lifecycle guest)")
    return "\n".join(lines)


def _kernel(g: GuestEntry) -> str:
    """``kernel 6.1.192-klh, `` — the release the guest booted (the record has its origin too), or nothing."""
    return f"kernel {g.kernel.split(' ', 1)[0]}, " if g.kernel else ""


def _or(value: object, default: object) -> object:
    """A field of the record, or ``default`` when the record does not have it."""
    return default if value is None else value


def run_plan(args: argparse.Namespace) -> int:
    from harness.config import load_config
    from harness.plan.matrix import cells, plan

    config = load_config(args.config)
    plans = {p.name: p for p in plan(config)}
    for cell in cells(config):
        p = plans[cell.guest]
        note = f"  (refused: {p.refused})" if p.refused and cell.kind == "probe" else ""
        helper = " klhelper" if p.helper else ""
        print(f"{cell.id:32} {cell.kind:10} vmm={p.vmm:8} backend={p.backend:9} "
              f"kl={'on' if p.spec.kl.enabled else 'off'}{helper}{note}")
    return 0
