"""CI matrix wall time, pooled vs naive, and harness overhead per test (issue: performance).

Runs the catalogue twice in one invocation on the same matrix and the same
test selection:
  pooled — what `klharness run` does: one boot per guest spec, guests booted
           in the background (run.parallel at a time), one probe run per guest,
           one SSH connection per guest;
  naive  — `--kl-no-pool`: a cold boot and a probe run for every test, serial.
Then boots one guest and times 50 trivial commands over the reused SSH
connection.  Prints figures and ratios measured in this run.

    python benchmarks/bench_matrix.py [--config configs/ci.yaml] [-k EXPR] [--skip-naive]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def run_catalogue(config: Path, results: Path, run_id: str, extra: list[str]) -> tuple[float, dict[str, Any]]:
    argv = [sys.executable, "-m", "pytest", str(REPO / "testcases"), f"--kl-config={config}",
            f"--kl-results={results}", f"--kl-run-id={run_id}", "-p", "no:cacheprovider", "-q", *extra]
    start = time.monotonic()
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=3600)
    wall = time.monotonic() - start
    if proc.returncode not in (0, 1):
        sys.exit(f"catalogue run failed ({proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    return wall, json.loads((results / run_id / "record.json").read_text())


def judge_only_overhead(record: dict[str, Any]) -> list[float]:
    """Durations of check tests that only judge an already-fetched probe document (pure harness time)."""
    seen: set[str] = set()
    out = []
    for t in record["tests"]:
        if t["test"] == "test_check" and t["outcome"] == "passed":
            if t["guest"] in seen:
                out.append(t["duration"])
            seen.add(t["guest"])
    return out


def ssh_overhead(samples: int = 50) -> list[float]:
    from harness import cbuild
    from harness.config import load_config
    from harness.guest.probeguest import RunContext, boot
    from harness.guest.ssh import generate_keypair
    from harness.images import build_image
    from harness.kl.emuconfig import private_runtime_dir
    from harness.plan.matrix import plan
    from harness.results.record import new_run_id
    from harness.timeouts import Timeouts
    from harness.virt.accel import choose_accel
    from harness.virt.connection import connect
    from harness.virt.registry import RunGuests

    run_id = new_run_id()
    conn = connect("qemu:///system")
    p = plan(load_config(REPO / "configs/ci.yaml"))[1]
    with RunGuests(run_id) as reg:
        kp = generate_keypair(private_runtime_dir(run_id) / "ssh", f"klharness-{run_id}")
        ctx = RunContext(run_id, conn, kp, Timeouts(), reg, cbuild.build("klprobe"), choose_accel("auto"),
                         Path(tempfile.mkdtemp()))
        pg = boot(ctx, p, build_image("mini"))
        try:
            times = []
            for _ in range(samples):
                t = time.monotonic()
                pg.run(["true"], check=True)
                times.append(time.monotonic() - t)
            return times
        finally:
            pg.teardown(keep=False)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", type=Path, default=REPO / "configs/ci.yaml")
    ap.add_argument("-k", dest="keyword", help="pytest -k selection for both runs")
    ap.add_argument("--skip-naive", action="store_true")
    args = ap.parse_args()
    extra = ["-k", args.keyword] if args.keyword else []
    with tempfile.TemporaryDirectory() as tmp:
        results = Path(tmp)
        pooled_wall, pooled = run_catalogue(args.config, results, "bench-pooled", extra)
        tests = len(pooled["tests"])
        print(f"pooled : {pooled_wall:7.1f} s wall for {tests} tests "
              f"({len(pooled['guests'])} guests booted)")
        overhead = judge_only_overhead(pooled)
        if overhead:
            print(f"harness overhead per test (judging a fetched probe document): median "
                  f"{statistics.median(overhead) * 1000:.1f} ms, p95 "
                  f"{sorted(overhead)[int(len(overhead) * 0.95)] * 1000:.1f} ms over {len(overhead)} tests")
        if not args.skip_naive:
            naive_wall, naive = run_catalogue(args.config, results, "bench-naive", [*extra, "--kl-no-pool"])
            print(f"naive  : {naive_wall:7.1f} s wall for {len(naive['tests'])} tests "
                  "(a cold boot + probe per test, serial)")
            print(f"speed-up pooled vs naive: {naive_wall / pooled_wall:.1f}x (goal >= 3x)")
    ssh = ssh_overhead()
    print(f"guest command on a reused SSH connection ('true'): median {statistics.median(ssh) * 1000:.1f} ms, "
          f"p95 {sorted(ssh)[int(len(ssh) * 0.95)] * 1000:.1f} ms over {len(ssh)} runs")


if __name__ == "__main__":
    main()
