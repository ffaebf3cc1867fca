"""``klharness run [CONFIG]``: run the catalogue on the matrix and print a table per guest.

Why through pytest: ``klharness run configs/ci.yaml`` and ``pytest testcases/
--kl-config configs/ci.yaml`` must give the same verdicts, so there is one
path — the plugin — and this command only chooses its options and summarises
the run record it wrote.
"""

from __future__ import annotations

import argparse
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from harness.paths import REPO_DIR
from harness.results.record import load_record, new_run_id

DEFAULT_CONFIG = REPO_DIR / "configs" / "ci.yaml"


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("run", help="run the Key Locker catalogue on a matrix (default configs/ci.yaml)")
    p.add_argument("config", nargs="?", type=Path, default=DEFAULT_CONFIG, help="matrix config")
    p.add_argument("--profile", help="expectation profile (default: run.profile of the config)")
    p.add_argument("--uri", help="libvirt URI (default: run.uri of the config)")
    p.add_argument("--keep", choices=("failed", "all", "none"), help="whose artifacts to keep")
    p.add_argument("--results", type=Path, help="results root (default: run.results of the config)")
    p.add_argument("-k", dest="keyword", help="only tests matching this pytest -k expression")
    p.add_argument("--pytest-arg", action="append", default=[], help="extra argument for pytest (repeatable)")
    p.set_defaults(func=run)
    plan = sub.add_parser("plan", help="list the cells of a matrix with their ids")
    plan.add_argument("config", nargs="?", type=Path, default=DEFAULT_CONFIG)
    plan.set_defaults(func=run_plan)


def pytest_args(args: argparse.Namespace, run_id: str, results_root: Path) -> list[str]:
    out = [str(REPO_DIR / "testcases"), f"--kl-config={args.config}", f"--kl-run-id={run_id}",
           f"--kl-results={results_root}", f"--junitxml={results_root / run_id / 'junit.xml'}",
           "-o", "junit_family=xunit2", "-p", "no:cacheprovider", "-q", "-rfE"]
    for opt, value in (("--kl-profile", args.profile), ("--kl-uri", args.uri), ("--kl-keep", args.keep)):
        if value:
            out.append(f"{opt}={value}")
    if args.keyword:
        out += ["-k", args.keyword]
    return out + list(args.pytest_arg)


def run(args: argparse.Namespace) -> int:
    import pytest

    from harness.config import load_config

    config = load_config(args.config)  # errors here read better than pytest's UsageError
    results_root = (args.results or Path(config.run.results)).resolve()
    run_id = new_run_id()
    code = int(pytest.main(pytest_args(args, run_id, results_root)))
    record_path = results_root / run_id / "record.json"
    if record_path.exists():
        print()
        print(summarize(load_record(record_path)))
        print(f"\nrun record: {record_path}\nJUnit: {results_root / run_id / 'junit.xml'}")
        from harness.report.write import after_run
        print(after_run(results_root / run_id))
    return code


def summarize(record: dict[str, Any]) -> str:
    """One table per guest: backend, accelerator, boot phases, verdict counts, failures with reasons."""
    tests_by_guest: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for t in record.get("tests", []):
        tests_by_guest[t["guest"]].append(t)
    lines = [f"run {record['run_id']} ({record['status']}), profile {record.get('profile')}, "
             f"accel {record.get('host', {}).get('accel', {}).get('accel', '?')}"]
    guests = record.get("guests", {})
    for name in sorted(tests_by_guest):
        tests = tests_by_guest[name]
        counts = Counter(t["outcome"] for t in tests)
        g = guests.get(name, {})
        t = g.get("timings", {})
        boot = f"boot->ssh {t['ssh_ready']:.1f}s" if "ssh_ready" in t else "not booted"
        probe = g.get("probe") if isinstance(g.get("probe"), dict) else {}
        seen = f" (probe saw KL {probe['backend']})" if probe.get("backend") else ""
        lines.append(f"\n{name}: VMM backend {g.get('backend', '-')}{seen}, host {g.get('host', '-')}, {boot}, "
                     f"probe {g.get('probe_seconds', '-')}s")
        lines.append("  " + ", ".join(f"{counts[k]} {k}" for k in ("passed", "failed", "skipped", "error")
                                      if counts[k]))
        for test in tests:
            if test["outcome"] in ("failed", "error"):
                what = test.get("check") or test.get("event") or test["test"]
                lines.append(f"  FAIL {what}: {test.get('reason', '')}")
        skipped = {t.get("reason", "") for t in tests if t["outcome"] == "skipped"}
        lines.extend(f"  skip: {reason}" for reason in sorted(skipped))
    for name, g in sorted(guests.items()):
        if name not in tests_by_guest and "timings" in g:
            t = g["timings"]
            lines.append(f"\n{name}: boot->ssh {t.get('ssh_ready', 0):.1f}s (lifecycle guest)")
    return "\n".join(lines)


def run_plan(args: argparse.Namespace) -> int:
    from harness.config import load_config
    from harness.matrix import cells, plan

    config = load_config(args.config)
    plans = {p.name: p for p in plan(config)}
    for cell in cells(config):
        p = plans[cell.guest]
        note = f"  (refused: {p.refused})" if p.refused and cell.kind == "probe" else ""
        helper = " klhelper" if p.helper else ""
        print(f"{cell.id:32} {cell.kind:10} vmm={p.vmm:8} backend={p.backend:9} "
              f"kl={'on' if p.spec.kl.enabled else 'off'}{helper}{note}")
    return 0
