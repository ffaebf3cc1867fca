"""How fast is the Key Locker emulator next to plain AES-NI?

Builds benchmarks/emu_bench.c against the emulator sources, runs it (once on
the AES-NI path, and with ``--portable`` also on the portable path) and
prints, from one run each:

  (a) AESENCWIDE128KL throughput vs 8 interleaved AES-NI blocks (goal >= 1/2)
  (b) AESENC128KL on a dependent chain vs an AES-NI chain       (goal >= 1/3)
  (c) the cold cost: a new handle every call (every call unwraps)

Each ratio is paired: both sides alternate in short tries within every round on one pinned CPU (each
keeping its fastest try), the figure is the median of the per-round ratios with its p10-p90, and a
spread wider than SPREAD_BOUND is printed as "UNSTABLE" instead of a verdict.  ``--runs N`` runs the
measurement N times in a row and says whether the runs' medians agree within the same bound.

The host flips between a fast and a slow state in which the ratios themselves differ, so every round also
times a fixed yardstick loop; bench_report.py puts each round in a host state by it and gives, and
compares across runs, a median and verdict per state (the all-rounds median mixes them).

Run: ``python benchmarks/bench_emulator.py [--portable] [--runs N] [--json FILE]``.
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

BENCH_C = Path(__file__).resolve().parent / "emu_bench.c"
EMULATOR_SOURCES = ("klemu.c", "klemu_aes.c", "klemu_cache.c", "klemu_dispatch.c", "klemu_polyval.c", "klemu_wrap.c")


def build(out_dir: Path) -> Path:
    binary = out_dir / "emu_bench"
    sources = [*(CSRC_DIR / name for name in EMULATOR_SOURCES), BENCH_C]
    proc.run([compiler(), *COMMON_FLAGS, f"-I{CSRC_DIR}", "-o", str(binary), *map(str, sources)], timeout=180)
    return binary


def run(binary: Path, *, portable: bool) -> dict[str, Any]:
    result = proc.run([binary], env={"KLEMU_FORCE_PORTABLE": "1" if portable else "0"}, timeout=600)
    figures: dict[str, Any] = json.loads(result.stdout)
    return figures


def report(f: dict[str, Any], splits: dict[str, Split] | None = None) -> str:
    """One run's figures; ``splits`` (pooled over a batch of runs) keep its host states the batch's."""
    def row(label: str, key: str, unit: str) -> str:
        return f"  {label:<44} {f[key]['ns']:9.2f} ns {f[key]['ticks']:9.1f} TSC ticks  per {unit}"

    def ratio(name: str, goal: float | None, unit: str) -> str:
        return paired(f["ratios"][name], goal, unit=unit, split=(splits or {}).get(name))

    # The goals are for the AES-NI path; the portable path is a fallback.
    aesni = f["impl"] != "portable"
    lines = [
        f"emulator path: {f['impl']}   (pinned to one CPU; {f['rounds']} paired rounds per ratio after a warm-up; "
        f"errors: {f['errors']})",
        "(a) 8 independent AES-128 blocks",
        row("AES-NI, 8 blocks interleaved", "native_wide8", "8 blocks"),
        row("emulated AESENCWIDE128KL", "emu_wide8", "8 blocks"),
        f"  -> emulated throughput = {ratio('wide8', 0.5 if aesni else None, 'AES-NI')}",
        "(b) dependent chain of single blocks",
        row("AES-NI, single block", "native_chain", "block"),
        row("emulated AESENC128KL (klemu_aeskl)", "emu_chain", "block"),
        row("emulated AESENC128KL (klemu_exec, reg file)", "emu_chain_exec", "block"),
        f"  -> emulated speed = {ratio('chain', 1 / 3 if aesni else None, 'AES-NI')}",
        f"     via klemu_exec  = {ratio('chain_exec', None, 'AES-NI')}",
        f"(c) cold: a new handle every call (cache miss; unwraps per call: {f['cold_unwraps_per_op']:.2f})",
        row("emulated AESENC128KL, unwrap every call", "emu_cold", "block"),
        f"  -> a miss costs {ratio('cold_over_hit', None, 'a hit')}",
    ]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--portable", action="store_true", help="also measure KLEMU_FORCE_PORTABLE=1")
    parser.add_argument("--runs", type=int, default=1, help="run the AES-NI measurement this many times in a row "
                        "and say whether the runs agree (default 1)")
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write every run's figures, rounds included, "
                        "to FILE (to look at the rounds behind a verdict)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="klemu-bench-") as tmp:
        binary = build(Path(tmp))
        runs = [run(binary, portable=False) for _ in range(max(1, args.runs))]
        if args.json:
            args.json.write_text(json.dumps(runs, indent=1) + "\n")
        print(report(runs[-1], pooled_splits(runs)))
        if len(runs) > 1:
            print("\n".join(agreement(runs)))
        if args.portable:
            print()
            print(report(run(binary, portable=True)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
