"""What does one trapped Key Locker instruction cost next to calling the emulator directly?

Builds benchmarks/trap_bench.c against the emulator and trap-layer sources,
runs it and prints, from one run:

  - the direct emulated call (klemu_aeskl, and klemu_exec on a register file);
  - the same AESENC128KL executed for real and completed by the SIGILL trap
    (a signal round trip: #UD, kernel signal frame, decode, klemu_exec, sigreturn);
  - ENCODEKEY128 under the trap;
  - UD2 with an empty handler: the kernel's signal round trip alone;

and the ratios trapped / direct and bare signal / trapped (with two more:
klemu_exec / klemu_aeskl, trapped ENCODEKEY128 / trapped AESENC128KL).

Each ratio is paired, as in bench_emulator.py: both sides alternate in short tries within every round
on one pinned CPU (each keeping its fastest try), the figure is the median of the per-round ratios
with its p10-p90, and a spread wider than SPREAD_BOUND is printed as "UNSTABLE".  ``--runs N`` runs
the measurement N times in a row and says whether the runs' medians agree within the same bound.

Run: ``python benchmarks/bench_trap.py [--runs N]``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # runnable from a plain checkout, not only when installed
    sys.path.insert(0, str(REPO))

from bench_report import (  # noqa: E402  (a sibling: a script's directory is sys.path[0])
    Split,
    agreement,
    paired,
    pooled_splits,
)

from harness import proc  # noqa: E402
from harness.cbuild import COMMON_FLAGS, compiler  # noqa: E402
from harness.paths import CSRC_DIR  # noqa: E402

BENCH_C = Path(__file__).resolve().parent / "trap_bench.c"


def build(out_dir: Path) -> Path:
    binary = out_dir / "trap_bench"
    sources = [*sorted(CSRC_DIR.glob("klemu*.c")), BENCH_C]
    proc.run([compiler(), *COMMON_FLAGS, "-pthread", f"-I{CSRC_DIR}", "-o", str(binary), *map(str, sources)],
             timeout=180)
    return binary


def run(binary: Path) -> dict[str, Any]:
    figures: dict[str, Any] = json.loads(proc.run([binary], timeout=600).stdout)
    return figures


def report(f: dict[str, Any], splits: dict[str, Split] | None = None) -> str:
    """One run's figures; ``splits`` (pooled over a batch of runs) keep its host states the batch's."""
    def row(label: str, key: str) -> str:
        return f"  {label:<52} {f[key]['ns']:10.1f} ns {f[key]['ticks']:10.0f} TSC ticks"

    def ratio(name: str, goal: float | None, unit: str) -> str:
        return paired(f["ratios"][name], goal, unit=unit, split=(splits or {}).get(name))

    lines = [
        f"emulator path: {f['impl']}   (pinned to one CPU; {f['rounds']} paired rounds per ratio after a warm-up; "
        f"errors: {f['errors']}; instructions trapped: {f['trapped_instructions']})",
        row("direct call: klemu_aeskl (AESENC128KL)", "direct_aeskl"),
        row("direct call: klemu_exec on a register file", "direct_exec"),
        row("trapped AESENC128KL (SIGILL round trip + emulation)", "trapped_aeskl"),
        row("trapped ENCODEKEY128", "trapped_encode"),
        row("bare SIGILL round trip (UD2, handler skips it)", "bare_sigill"),
        f"  -> one trapped AESENC128KL = {ratio('trapped_over_direct', None, 'the direct call')}",
        f"  -> the bare signal round trip = {ratio('sigill_share', None, 'a trapped AESENC128KL')}",
        f"  -> klemu_exec = {ratio('exec_over_aeskl', None, 'klemu_aeskl')}",
        f"  -> trapped ENCODEKEY128 = {ratio('encode_over_aesenc', None, 'a trapped AESENC128KL')}",
    ]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1, help="run the measurement this many times in a row "
                        "and say whether the runs agree (default 1)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="klemu-trap-bench-") as tmp:
        binary = build(Path(tmp))
        runs = [run(binary) for _ in range(max(1, args.runs))]
        print(report(runs[-1], pooled_splits(runs)))
        if len(runs) > 1:
            print("\n".join(agreement(runs)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
