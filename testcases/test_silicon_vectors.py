"""A Key Locker that executes vs the emulator, bit for bit (KEYLOCKER.md §4 is [model]; §10 asks the lab).

Two places where Key Locker executes:
- **silicon**: this machine's CPU runs Key Locker and the ring-0 helper ``klhelper`` is loaded; it
  loads a known IWKey on every CPU, and ``klprobe vectors --backend native`` runs on the host;
- **the VMM**: a guest of the run on qemu-kl (klhelper in it), where the same lines run through the
  guest's native backend and, in the same guest, through the in-guest emulator.
The emulator is given the same IWKey and the executing CPU's own leaf 0x19; every answer must be
identical: handles, ZF, arithmetic flags, outputs and faults.  The inputs and both outputs are kept
under ``results/silicon-*/`` or ``results/vmm-vectors-*/`` — the files a lab sends back when they
differ (docs/lab-runbook.md §6).  Silicon skips where there is none (and says what is missing).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from harness import cbuild, proc
from harness.guest import klhelper
from harness.guest.probeguest import REMOTE_PROBE, ProbeGuest
from harness.host import check as hostcheck
from harness.kl import vectors as v
from harness.paths import results_dir

LAB_SKIP = "no ring-0 helper with a known IWKey: needs KL hardware and klhelper; see docs/lab-runbook.md"


def silicon_unavailable(cpuid: dict[str, Any]) -> str | None:
    """None when the silicon comparison can run here, else the skip reason with what is missing."""
    missing = []
    if not cpuid.get("ok"):
        missing.append(f"host CPUID unreadable ({cpuid.get('error')})")
    elif not cpuid.get("kl"):
        missing.append("CPUID.(7,0):ECX[23]=0 on this CPU")
    elif not cpuid.get("aeskle"):
        missing.append("AESKLE=0 (CR4.KL clear: klhelper not loaded?)")
    if not Path("/sys/module/klhelper").exists():
        missing.append("klhelper is not loaded")
    elif not os.access(f"{klhelper.DEBUGFS_DIR}/iwkey", os.W_OK):
        missing.append(f"{klhelper.DEBUGFS_DIR}/iwkey is not writable (root? debugfs mounted?)")
    return f"{LAB_SKIP} (here: {'; '.join(missing)})" if missing else None


@pytest.fixture(scope="module")
def silicon() -> Iterator[dict[str, Any]]:
    """The host's KL CPUID, with the known IWKey loaded on every CPU for the test's duration."""
    cpuid = hostcheck.cpuid_facts()
    reason = silicon_unavailable(cpuid)
    if reason:
        pytest.skip(reason)
    iwkey = Path(klhelper.DEBUGFS_DIR) / "iwkey"
    iwkey.write_text((v.KNOWN.integrity + v.KNOWN.enc).hex() + "\n")
    try:
        yield cpuid
    finally:
        iwkey.write_text("swrandom\n")  # never leave a published key loaded


def on_host(backend: str, lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
    res = proc.run([cbuild.build("klprobe"), "vectors", "--backend", backend],
                   input_text="".join(json.dumps(x) + "\n" for x in lines), timeout=300, check=False)
    answers = [json.loads(line) for line in res.stdout.splitlines()]
    assert len(answers) == len(lines), f"{backend}: {len(answers)} answers for {len(lines)} lines: {res.describe()}"
    return answers


def in_guest(pg: ProbeGuest, backend: str, lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
    res = pg.shell().run([REMOTE_PROBE, "vectors", "--backend", backend], timeout=600,
                         stdin="".join(json.dumps(x) + "\n" for x in lines).encode())
    answers = [json.loads(line) for line in res.text().splitlines()]
    assert len(answers) == len(lines), f"{backend}: {len(answers)} answers for {len(lines)} lines: {res.describe()}"
    return answers


def evidence_dir(kind: str) -> Path:
    return results_dir() / f"{kind}-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"


@pytest.mark.lab
def test_silicon_answers_every_vector_as_the_emulator_does(silicon: dict[str, Any]) -> None:
    ops = v.build_ops(silicon["leaf19"])
    native = on_host("native", ops)
    prefix = v.emulator_prefix(silicon["leaf19"])
    emulated = on_host("emulated", prefix + ops)
    assert all(a.get("ok") for a in emulated[:len(prefix)]), emulated[:len(prefix)]
    emulated = emulated[len(prefix):]
    out = v.write_evidence(evidence_dir("silicon"), {"ops": prefix + ops, "native": native, "emulated": emulated},
                           silicon)
    diffs = v.differences(ops, native, emulated)
    assert not diffs, v.describe(diffs, "silicon", len(ops), out)


@pytest.mark.lab
def test_silicon_reproduces_the_keylocker_md_reference_handle(silicon: dict[str, Any]) -> None:
    first = on_host("native", [{"op": "encodekey128", "src": 0, "key": v.REFERENCE_KEY.hex()}])[0]
    assert v.reference_handle_ok(first), (
        f"silicon handle {first.get('handle')} is not KEYLOCKER.md §4's reference: the wrap model is wrong")


@pytest.mark.kl_guests(kl=True, kl_usable=True, refused=False, vmm="qemu-kl")
def test_the_vmm_answers_every_vector_as_the_in_guest_emulator_does(kl_guest_handle: ProbeGuest,
                                                                    kl_record: dict[str, Any]) -> None:
    pg = kl_guest_handle
    if not pg.helper_loaded:
        pytest.fail(f"klhelper is not loaded in {pg.name}: {pg.helper}")
    cpu = pg.probe("cpuid").document.hardware_cpu
    assert cpu.leaf19 is not None
    leaf19 = {"eax": cpu.leaf19.eax, "ebx": cpu.leaf19.ebx, "ecx": cpu.leaf19.ecx}
    ops = v.build_ops(leaf19)
    try:
        executed = in_guest(pg, "native", [v.setiwkey_line(), *ops])  # klhelper: LOADIWKEY on every vCPU
    finally:
        pg.shell().run(f"echo swrandom > {klhelper.DEBUGFS_DIR}/iwkey", timeout=60)
    assert executed[0] == {"op": "setiwkey", "ok": True}, executed[0]
    executed = executed[1:]
    prefix = v.emulator_prefix(leaf19)
    emulated = in_guest(pg, "emulated", prefix + ops)[len(prefix):]
    out = v.write_evidence(evidence_dir("vmm-vectors"), {"ops": prefix + ops, "vmm": executed, "emulated": emulated},
                           {"guest": pg.name, "leaf19": leaf19, "vmm": pg.plan.vmm})
    diffs = v.differences(ops, executed, emulated)
    kl_record.update(observation={"lines": len(ops), "differ": len(diffs), "files": str(out)},
                     expectation={"differ": 0}, provenance="vmm",
                     source="KEYLOCKER.md §4 [model]: the VMM and the emulator implement one construction")
    assert v.reference_handle_ok(executed[0]), f"the VMM's handle is not KEYLOCKER.md §4's: {executed[0]}"
    assert not diffs, v.describe(diffs, "vmm", len(ops), out)
