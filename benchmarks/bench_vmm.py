"""qemu-kl next to Debian's QEMU, in one run: boot -> SSH, and the catalogue's wall time.

  (a) boot -> SSH greeting of the mini image (plain QEMU, TCG, no libvirt), Debian's QEMU and
      qemu-kl taking turns run by run (paired: a host that slows down slows both), n each;
      p50/p95 per binary and the median of the per-pair ratios qemu-kl/Debian.
  (b) the CI matrix (configs/ci.yaml, Key Locker emulated in the guests) and the qemu-kl matrix
      (configs/qemu-kl.yaml, Key Locker executed by the VMM), pooled, one after the other: wall
      time, test count, seconds per test.

    python benchmarks/bench_vmm.py [--runs 5] [--skip-matrix]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_boot import boot_once, percentile  # noqa: E402
from bench_matrix import run_catalogue  # noqa: E402

from harness.images import build_image  # noqa: E402
from harness.vmm import qemu_kl  # noqa: E402


def boot_args(qemu: str) -> argparse.Namespace:
    return argparse.Namespace(qemu=qemu, accel="tcg", machine="pc", cpu="max", memory=512, net="static", rng=True,
                              bzimage=False, append="", qemu_arg=[], timeout=60.0)


def boots(runs: int) -> list[str]:
    art = build_image("mini")
    binaries = {"debian": "qemu-system-x86_64", "qemu-kl": str(qemu_kl.installed().binary)}
    times: dict[str, list[float]] = {k: [] for k in binaries}
    with tempfile.TemporaryDirectory(prefix="klh-bench-vmm-") as tmp:
        for i in range(runs):
            order = list(binaries) if i % 2 == 0 else list(reversed(binaries))
            for name in order:
                run = boot_once(art, boot_args(binaries[name]), Path(tmp), len(times[name]) + 100 * i)
                if run.greeting is None:
                    sys.exit(f"{name}: no SSH greeting in run {i}")
                times[name].append(run.greeting)
    ratios = sorted(k / d for k, d in zip(times["qemu-kl"], times["debian"], strict=True))
    lines = [f"(a) boot -> SSH greeting, mini, TCG, plain QEMU, n={runs} each (paired, alternating)"]
    for name, t in times.items():
        lines.append(f"  {name:<8} p50 {statistics.median(t):5.2f} s  p95 {percentile(t, 0.95):5.2f} s  "
                     f"min {min(t):5.2f} s")
    lines.append(f"  -> qemu-kl / Debian's QEMU = {statistics.median(ratios):.2f}x "
                 f"(p10 {percentile(ratios, 0.1):.2f}, p90 {percentile(ratios, 0.9):.2f})")
    return lines


def matrices() -> list[str]:
    lines = ["(b) the catalogue, pooled, one after the other"]
    with tempfile.TemporaryDirectory(prefix="klh-bench-matrix-") as tmp:
        for name in ("ci.yaml", "qemu-kl.yaml"):
            wall, record = run_catalogue(REPO / "configs" / name, Path(tmp), name.split(".")[0], [])
            tests = record.get("tests", [])
            assert isinstance(tests, list)
            passed = sum(1 for t in tests if t.get("outcome") == "passed")
            lines.append(f"  {name:<14} {wall:6.1f} s wall  {len(tests):4d} tests ({passed} passed)  "
                         f"{wall / max(1, len(tests)):.2f} s per test")
    return lines


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--skip-matrix", action="store_true")
    args = ap.parse_args()
    print(f"qemu-kl: {qemu_kl.installed().describe()}")
    print("\n".join(boots(args.runs)))
    if not args.skip_matrix:
        print("\n".join(matrices()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
