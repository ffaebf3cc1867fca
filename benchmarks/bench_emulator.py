"""How fast is the Key Locker emulator next to plain AES-NI?

Builds benchmarks/emu_bench.c against the emulator sources, runs it (once on
the AES-NI path, and with ``--portable`` also on the portable path) and
prints, from one run each:

  (a) AESENCWIDE128KL throughput vs 8 interleaved AES-NI blocks (goal >= 1/2)
  (b) AESENC128KL on a dependent chain vs an AES-NI chain       (goal >= 1/3)
  (c) the cold cost: a new handle every call (every call unwraps)

Run: ``python benchmarks/bench_emulator.py [--portable]``.
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


def report(f: dict[str, Any]) -> str:
    def row(label: str, key: str, unit: str) -> str:
        return f"  {label:<44} {f[key]['ns']:9.2f} ns {f[key]['ticks']:9.1f} TSC ticks  per {unit}"

    # The goals are for the AES-NI path; the portable path is a fallback.
    goal = (lambda g: f" (goal >= {g:.2f})") if f["impl"] != "portable" else (lambda g: "")
    wide = f["native_wide8"]["ns"] / f["emu_wide8"]["ns"]
    chain = f["native_chain"]["ns"] / f["emu_chain"]["ns"]
    chain_exec = f["native_chain"]["ns"] / f["emu_chain_exec"]["ns"]
    cold = f["emu_cold"]["ns"] / f["emu_chain"]["ns"]
    lines = [
        f"emulator path: {f['impl']}   (median of 15 runs after a warm-up; errors: {f['errors']})",
        "(a) 8 independent AES-128 blocks",
        row("AES-NI, 8 blocks interleaved", "native_wide8", "8 blocks"),
        row("emulated AESENCWIDE128KL", "emu_wide8", "8 blocks"),
        f"  -> emulated throughput = {wide:.2f} x AES-NI{goal(0.5)}",
        "(b) dependent chain of single blocks",
        row("AES-NI, single block", "native_chain", "block"),
        row("emulated AESENC128KL (klemu_aeskl)", "emu_chain", "block"),
        row("emulated AESENC128KL (klemu_exec, reg file)", "emu_chain_exec", "block"),
        f"  -> emulated speed = {chain:.2f} x AES-NI{goal(1 / 3)}; via klemu_exec {chain_exec:.2f} x",
        "(c) cold: a new handle every call (cache miss)",
        row("emulated AESENC128KL, unwrap every call", "emu_cold", "block"),
        f"  -> a miss costs {cold:.1f} x a hit; unwraps per call: {f['cold_unwraps_per_op']:.2f}",
    ]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--portable", action="store_true", help="also measure KLEMU_FORCE_PORTABLE=1")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="klemu-bench-") as tmp:
        binary = build(Path(tmp))
        print(report(run(binary, portable=False)))
        if args.portable:
            print()
            print(report(run(binary, portable=True)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
