"""Run the probe on this machine (no guest): ``klharness probe --local``.

Why: the fastest way to see the probe and the emulator work, and the same
code path a lab uses on a bare-metal Key Locker host (``baremetal-kl``).
"""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from harness import cbuild, proc
from harness.errors import ProbeOutputError
from harness.kl import emuconfig
from harness.kl.observations import ProbeDocument, parse_probe_output
from harness.kl.spec import Verdict, judge_all
from harness.timeouts import active as active_timeouts


@dataclass(frozen=True)
class LocalProbeResult:
    document: ProbeDocument
    verdicts: list[Verdict]
    raw_json: str
    probe: Path


def run_local(*, emulate: bool, timing: bool = True, cpu: emuconfig.EmulatedCpu | None = None,
              extra_args: tuple[str, ...] = ()) -> LocalProbeResult:
    """Build (or reuse) the probe, run it here, parse and judge its document."""
    probe = cbuild.build("klprobe")
    argv = [str(probe), "run", "--backend", "emulated" if emulate else "native"]
    if not timing:
        argv.append("--no-timing")
    argv.extend(extra_args)
    workdir: Path | None = None
    try:
        if emulate:
            # A local run has no fw_cfg: the secret lives in a 0600 file on tmpfs.
            workdir = emuconfig.private_runtime_dir(f"local-{_unique()}")
            conf = emuconfig.write_private(workdir / "klemu.conf",
                                           emuconfig.render(cpu or emuconfig.EmulatedCpu(),
                                                            emuconfig.VmSecret.generate()))
            argv += ["--config", str(conf)]
        result = proc.run(argv, timeout=active_timeouts().local_probe, check=False)
    finally:
        if workdir is not None:
            shutil.rmtree(workdir, ignore_errors=True)
    if result.returncode != 0:
        raise ProbeOutputError(f"local probe: {result.describe()}")
    doc = parse_probe_output(result.stdout, "local probe")
    return LocalProbeResult(doc, judge_all(doc.observations), result.stdout, probe)


def _unique() -> str:
    return f"{os.getpid()}-{time.monotonic_ns()}"
