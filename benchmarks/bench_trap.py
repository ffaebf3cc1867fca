"""What does one trapped Key Locker instruction cost next to calling the emulator directly?

Builds benchmarks/trap_bench.c against the emulator and trap-layer sources,
runs it once and prints, from that one run:

  - the direct emulated call (klemu_aeskl, and klemu_exec on a register file);
  - the same AESENC128KL executed for real and completed by the SIGILL trap
    (a signal round trip: #UD, kernel signal frame, decode, klemu_exec, sigreturn);
  - ENCODEKEY128 under the trap;
  - UD2 with an empty handler: the kernel's signal round trip alone;

and the ratios trapped / direct and trapped / bare signal.

Run: ``python benchmarks/bench_trap.py``.
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


def report(f: dict[str, Any]) -> str:
    def row(label: str, key: str) -> str:
        return f"  {label:<52} {f[key]['ns']:10.1f} ns {f[key]['ticks']:10.0f} TSC ticks"

    trapped, direct = f["trapped_aeskl"]["ns"], f["direct_aeskl"]["ns"]
    lines = [
        f"emulator path: {f['impl']}   (median of 15 runs after a warm-up; errors: {f['errors']}; "
        f"instructions trapped: {f['trapped_instructions']})",
        row("direct call: klemu_aeskl (AESENC128KL)", "direct_aeskl"),
        row("direct call: klemu_exec on a register file", "direct_exec"),
        row("trapped AESENC128KL (SIGILL round trip + emulation)", "trapped_aeskl"),
        row("trapped ENCODEKEY128", "trapped_encode"),
        row("bare SIGILL round trip (UD2, handler skips it)", "bare_sigill"),
        f"  -> one trapped AESENC128KL = {trapped / direct:.0f} x the direct call; "
        f"the signal round trip is {f['bare_sigill']['ns'] / trapped:.0%} of it",
    ]
    return "\n".join(lines)


def main() -> int:
    argparse.ArgumentParser(description=__doc__.splitlines()[0]).parse_args()
    with tempfile.TemporaryDirectory(prefix="klemu-trap-bench-") as tmp:
        print(report(run(build(Path(tmp)))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
