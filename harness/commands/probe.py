"""``klharness probe``: build the probe, or run it on this machine and show the observations."""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from harness import cbuild
from harness.kl.observations import ProbeDocument
from harness.kl.spec import Verdict
from harness.paths import results_dir


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("probe", help="build the Key Locker probe or run it locally")
    p.add_argument("--local", action="store_true", help="run the probe on this machine (no guest)")
    p.add_argument("--emulate", action="store_true",
                   help="use the software Key Locker emulator (a fresh per-run secret)")
    p.add_argument("--no-timing", action="store_true", help="skip the cycle measurements")
    p.add_argument("--build-only", action="store_true", help="only build; print the binary's path")
    p.add_argument("--out", type=Path, help="where to write probe.json (default: results/local-<time>/)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.build_only or not args.local:
        path = cbuild.build("klprobe")
        print(path)
        print(f"build command: {(path.parent / 'build-command.txt').read_text().strip()}")
        return 0
    from harness.host.localprobe import run_local  # heavy only when used

    result = run_local(emulate=args.emulate, timing=not args.no_timing)
    out = args.out or results_dir() / f"local-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}" / "probe.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(result.raw_json)
    print(format_table(result.document, result.verdicts))
    print(f"\nprobe JSON: {out}")
    return 0 if all(v.passed for v in result.verdicts) else 1


def format_table(doc: ProbeDocument, verdicts: list[Verdict]) -> str:
    """A readable table: one line per observation, then the timing figures."""
    kl = doc.cpu.kl
    lines = [
        f"backend: {doc.backend} ({doc.backend_reason})",
        f"cpu: {doc.hardware_cpu.vendor}, hypervisor={'yes' if doc.hardware_cpu.hypervisor else 'no'}; "
        f"as seen: KL={int(kl.kl)} AESKLE={int(kl.aeskle)} wide={int(kl.wide)} backup={int(kl.backup)} "
        f"restrictions={','.join(sorted(kl.restrictions)) or '-'} (source: {doc.cpu.source})",
        "",
        f"{'check':44} {'provenance':12} {'observed':12} verdict",
        f"{'-' * 44} {'-' * 12} {'-' * 12} {'-' * 30}",
    ]
    obs_by_id = doc.by_id()
    for v in verdicts:
        obs = obs_by_id[v.check_id]
        observed = obs.signal or ("ZF=1" if obs.zf == 1 else "ZF=0")
        verdict = "pass" if v.passed else "FAIL: " + "; ".join(v.reasons)
        lines.append(f"{v.check_id:44} {obs.provenance:12} {observed:12} {verdict}")
    passed = sum(v.passed for v in verdicts)
    lines.append(f"\n{passed} passed, {len(verdicts) - passed} failed")
    if doc.timing:
        lines.append(f"\ntiming (TSC {doc.timing.tsc_hz / 1e9:.2f} GHz, cpu {doc.timing.cpu}, "
                     f"{'trustworthy' if doc.timing.trustworthy else 'SPREAD TOO WIDE to publish'}):")
        for f in doc.timing.figures.values():
            lines.append(f"  {f.name:24} {f.median:10.1f} {f.unit:14} spread {f.spread:5.1%}  [{f.provenance}]")
        for name, ratio in doc.timing.ratios.items():
            lines.append(f"  {name:40} {ratio:6.2f}x")
    return "\n".join(lines)
