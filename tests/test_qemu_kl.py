"""qemu-kl, the Key Locker VMM, executing Key Locker for real in guests (qemu-kl/README.md).

Every test boots mini guests on the patched QEMU through libvirt (TCG), with klhelper built on
the host for the guest's kernel.  What runs in the guest is the harness's *native* path: the
probe's .byte instructions, qemu-kl/tests/kl_insn_test.c, klhelper's ring-0 checks, and
``klprobe vectors --backend native`` compared line by line with the in-guest emulator and the
Python model.  They fail, not skip, when qemu-kl is not built: scripts/setup-host builds it.
"""

from __future__ import annotations

import json
import os
import random
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from qemu_kl_support import KNOWN_LINE, qemu_kl_guest, ring0, run_context, set_known_key, static_binary
from test_emulator_vs_model import ANY, Script, random_eax, random_handle, random_src

from harness.config.model import KlConfig
from harness.errors import BuildError
from harness.guest.probeguest import ProbeGuest
from harness.kl import refmodel as m
from harness.kl.spec import judge_all
from harness.paths import REPO_DIR
from harness.vmm import qemu_kl

pytestmark = [pytest.mark.integration, pytest.mark.slow]

RUN = f"q{os.getpid()}"
INSN_TEST = REPO_DIR / "qemu-kl" / "tests" / "kl_insn_test.c"
VECTORS_PER_OP = 2000
SEED = 0x0E_4B_1D
# The guest's CPU: all three restrictions, wide, backup, NoBackup and random KeySource enumerated.
FULL = KlConfig(enabled=True, nobackup=True, random_keysource=True)


@pytest.fixture(scope="module")
def vmm() -> qemu_kl.QemuKl:
    try:
        return qemu_kl.installed()
    except BuildError as err:
        pytest.fail(f"qemu-kl must be built for these tests (scripts/setup-host does it): {err}")


@pytest.fixture(scope="module")
def ctx(real_conn: Any, vmm: qemu_kl.QemuKl) -> Iterator[Any]:
    with run_context(real_conn, RUN) as c:
        yield c


@pytest.fixture(scope="module")
def qkl(ctx: Any) -> Iterator[ProbeGuest]:
    with qemu_kl_guest(ctx, "qkl-full", FULL) as pg:
        yield pg


@pytest.fixture(scope="module")
def qkl_hidden(ctx: Any) -> Iterator[ProbeGuest]:
    """Key Locker off in CPUID; klhelper loaded with probe_only=1 (it changes nothing)."""
    with qemu_kl_guest(ctx, "qkl-hidden", KlConfig(enabled=False), vcpus=1, helper=False) as pg:
        from harness.guest import klhelper

        result = klhelper.build_and_load(pg.connect(), params=("probe_only=1",), image=pg.image)
        assert result.loaded, result.describe()
        yield pg


# -- the CPU the guest sees ------------------------------------------------------------------------

def test_cpuid_enumerates_what_the_config_asked_and_aeskle_follows_cr4_kl(qkl: ProbeGuest) -> None:
    cpu = qkl.probe("cpuid").document.hardware_cpu
    assert cpu.kl.kl and cpu.max_leaf >= 0x19 and cpu.leaf19 is not None
    assert (cpu.leaf19.eax, cpu.leaf19.ebx, cpu.leaf19.ecx, cpu.leaf19.edx) == (0x7, 0x15, 0x3, 0)  # CR4.KL set
    answer = ring0(qkl, "cr4kl-off")
    assert answer == {"clear": "ok", "aeskle_cr4kl_clear": "0", "encodekey128": "ud", "aesenc128kl": "ud",
                      "loadiwkey": "ud", "aeskle_cr4kl_set": "1"}


def test_a_kl_off_cpu_hides_leaf_0x19_and_passes_acrns_hidden_list(qkl_hidden: ProbeGuest) -> None:
    cpu = qkl_hidden.probe("cpuid").document.hardware_cpu
    assert not cpu.kl.kl
    assert cpu.leaf19 is None or (cpu.leaf19.eax, cpu.leaf19.ebx, cpu.leaf19.ecx, cpu.leaf19.edx) == (0, 0, 0, 0)
    answer = ring0(qkl_hidden, "hidden")
    assert answer.pop("cr4.kl") == "gp"
    for msr in ("0x990", "0x991", "0xd91", "0xd92"):
        assert answer.pop(f"msr {msr} read") == "gp write: gp", msr
    assert answer == {name: "ud" for name in m.AES_OPS.keys() | {"loadiwkey", "encodekey128", "encodekey256"}}
    doc = qkl_hidden.probe(timing=False).document
    assert doc.backend == "absent" and {o.signal for o in doc.observations} == {"SIGILL"}


# -- user space: the probe and the instruction tests -----------------------------------------------

def test_every_probe_check_passes_on_the_vmm(qkl: ProbeGuest) -> None:
    doc = qkl.probe(timing=False).document
    assert doc.backend == "vmm" and doc.kl_usable  # the probe's native path, executed by qemu-kl
    assert {o.provenance for o in doc.observations} == {"vmm"}
    failed = [(v.check_id, v.reasons) for v in judge_all(doc.observations) if not v.passed]
    assert failed == [] and len(doc.observations) >= 45


EXPECTED_INSN_CHECKS = {
    "lock.encodekey128", "lock.aesenc128kl", "vex.aesenc128kl", "mod.encodekey128_memory", "mod.aesdec128kl_register",
    "mod.aesenc256kl_register", "mod.aesdec256kl_register", "mod.aesencwide128kl_register", "mod.wide_slash4",
    "mod.control_same_bytes_memory_form_runs", "flags.success_clears_all", "flags.success_encrypts",
    "flags.refused_zf_only", "flags.refused_data_untouched", "dest.upper_half_zeroed", "dest.nobackup_keysource_zero",
    "xmm.handle_equals_reference", "xmm.xmm3_kept", "xmm.xmm4_6_zeroed", "xmm.xmm7_kept", "xmm.xmm8_15_kept",
    "xmm.wide_lane0_encrypted", "xmm.wide_keeps_xmm9", "rex.aesenc128kl_xmm9_r8", "rex.encodekey128_r9d_r10d",
    "seg.gs_override", "page.crossing_faults", "page.nothing_changed", "unaligned.handle_works",
}


def test_instruction_level_checks_in_user_space(qkl: ProbeGuest, tmp_path: Path) -> None:
    binary = static_binary(INSN_TEST, tmp_path / "kl_insn_test")
    session = qkl.connect()
    session.upload(binary.read_bytes(), "/tmp/kl_insn_test")
    res = qkl.run(["/tmp/kl_insn_test"], timeout=120)
    lines = dict(line.split(": ", 1) for line in res.text().splitlines() if ": " in line)
    summary = lines.pop("summary")
    assert {k: v for k, v in lines.items() if v != "ok"} == {}, res.text()
    assert set(lines) == EXPECTED_INSN_CHECKS
    assert summary == f"{len(EXPECTED_INSN_CHECKS)} passed, 0 failed" and res.returncode == 0


# -- ring 0 ------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("eax", "outcome"), [
    (0x0, "ok"),    # KeySource 0
    (0x1, "ok"),    # NoBackup (enumerated here)
    (0x2, "ok"),    # KeySource 1 (enumerated here)
    (0x3, "ok"),
    (0x4, "gp"),    # KeySource 2
    (0x1e, "gp"),   # KeySource 15
    (0x20, "gp"),   # EAX[5] reserved
    (0x80000000, "gp"),
])
def test_loadiwkey_at_ring_0_follows_the_eax_rules(qkl: ProbeGuest, eax: int, outcome: str) -> None:
    set_known_key(qkl)
    try:
        answer = ring0(qkl, f"loadiwkey {eax:x}")
    finally:
        set_known_key(qkl)  # every CPU on the known key again
    assert answer["loadiwkey"] == outcome
    if outcome == "ok":
        assert answer["zf"] == "0"


def test_loadiwkey_rejects_what_the_cpu_does_not_enumerate(ctx: Any) -> None:
    with qemu_kl_guest(ctx, "qkl-plain", KlConfig(enabled=True, wide=False, backup=False,
                                                   restrictions=("cpl0",)), vcpus=1) as pg:
        set_known_key(pg)
        assert ring0(pg, "loadiwkey 1")["loadiwkey"] == "gp"  # NoBackup not enumerated
        assert ring0(pg, "loadiwkey 2")["loadiwkey"] == "gp"  # random KeySource not enumerated
        assert ring0(pg, "loadiwkey 0")["loadiwkey"] == "ok"
        msr = ring0(pg, "msr")
        assert set(msr.values()) == {"gp"}, msr  # no backup MSRs at all
        doc = pg.probe(timing=False).document
        ids = doc.by_id()
        wide_absent = {i for i in ids if i.startswith("wide_absent.")}
        assert wide_absent == {f"wide_absent.{n}" for n in m.AES_OPS if "wide" in n}
        assert all(ids[i].signal == "SIGILL" for i in ids if i.startswith("wide_absent."))
        assert [v.check_id for v in judge_all(doc.observations) if not v.passed] == []


def test_the_backup_msrs_follow_their_access_rules(qkl: ProbeGuest) -> None:
    assert ring0(qkl, "msr") == {
        "msr 0xd91 read": "gp", "msr 0xd92 read": "gp", "msr 0x990 write": "gp", "msr 0x991 write": "gp",
        "msr 0xd91 write 2": "gp", "msr 0xd92 write 1<<32": "gp", "msr 0xd92 write 0": "ok"}


def test_backup_and_restore_bring_a_key_back_and_a_nobackup_key_is_never_copied(qkl: ProbeGuest) -> None:
    from harness.guest import klhelper

    session = qkl.connect()
    set_known_key(qkl)
    saved = qkl.handle_save()
    qkl.run(f"echo x > {klhelper.DEBUGFS_DIR}/backup", check=True)
    assert "ok=1" in qkl.run(["cat", f"{klhelper.DEBUGFS_DIR}/backup"], check=True).text()
    qkl.run(f"echo swrandom > {klhelper.DEBUGFS_DIR}/iwkey", check=True)
    assert qkl.handle_check(saved).facts["handle_valid"] is False
    qkl.run(f"echo x > {klhelper.DEBUGFS_DIR}/restore", check=True)
    assert "ok=2 cpus=2" in qkl.run(["cat", f"{klhelper.DEBUGFS_DIR}/restore"], check=True).text()
    assert qkl.handle_check(saved).facts["handle_valid"] is True
    # A NoBackup key: the copy fails (IA32_COPY_STATUS 0; 0x991 still says the old backup is valid)
    # and the old backup stays, so a restore brings the first key back.
    qkl.run(f"echo {KNOWN_LINE[:-2]}ff nobackup > {klhelper.DEBUGFS_DIR}/iwkey", check=True)
    qkl.run(f"echo x > {klhelper.DEBUGFS_DIR}/backup", check=True)
    backup = qkl.run(["cat", f"{klhelper.DEBUGFS_DIR}/backup"], check=True).text()
    assert "copy_status=0x0" in backup and "status=0x1" in backup, backup
    qkl.run(f"echo x > {klhelper.DEBUGFS_DIR}/restore", check=True)
    assert qkl.handle_check(saved).facts["handle_valid"] is True
    assert session is not None


# -- the VMM against the in-guest emulator and the Python model -----------------------------------------

def vmm_iwkey(rng: random.Random) -> m.IWKey:
    """A key klhelper can load (KeySource 0; NoBackup is enumerated by FULL), sometimes all zero."""
    if rng.random() < 0.03:
        return m.IWKey()
    return m.IWKey(rng.randbytes(16), rng.randbytes(32), rng.random() < 0.3, 0)


def vmm_script(rng: random.Random) -> Script:
    """VECTORS_PER_OP lines of each of the 11 instructions at CPL 3 on the guest's CPU shape."""
    script = Script(cpu=replace(m.CPU.tigerlake(), cpl=3))
    script.set_iwkey(vmm_iwkey(rng))
    pool: dict[int, list[bytes]] = {48: [], 64: []}
    ops = [name for name in [*m.AES_OPS, "encodekey128", "encodekey256", "loadiwkey"] for _ in range(VECTORS_PER_OP)]
    rng.shuffle(ops)
    for name in ops:
        if rng.random() < 0.01:
            script.set_iwkey(vmm_iwkey(rng))
        if name.startswith("encodekey"):
            bits = int(name[-3:])
            script.encodekey(bits, random_src(rng), rng.randbytes(bits // 8))
        elif name == "loadiwkey":
            script.loadiwkey(rng.randbytes(16), rng.randbytes(32), random_eax(rng))  # CPL 3: #GP
        else:
            op = m.AES_OPS[name]
            recent = pool[op.handle_size]
            handle = rng.choice(recent) if recent and rng.random() < 0.4 else random_handle(rng, op, script.iwkey)
            recent[:] = [*recent[-7:], handle]
            script.aeskl(name, handle, [rng.randbytes(16) for _ in range(op.blocks)])
    return script


def answers(pg: ProbeGuest, backend: str, lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
    res = pg.run(["/tmp/klprobe", "vectors", "--backend", backend], timeout=900,
                 stdin="".join(json.dumps(x) + "\n" for x in lines).encode())
    out = [json.loads(line) for line in res.text().splitlines()]
    assert len(out) == len(lines), f"{backend}: {len(out)} answers for {len(lines)} lines: {res.describe()}"
    return out


def test_vmm_answers_every_vector_as_the_emulator_and_the_model_do(qkl: ProbeGuest) -> None:
    script = vmm_script(random.Random(SEED))
    counts = {op: sum(1 for line in script.lines if line["op"] == op) for op in {x["op"] for x in script.lines}}
    assert all(counts[op] == VECTORS_PER_OP for op in counts if op != "setiwkey"), counts
    try:
        vmm = answers(qkl, "native", script.lines)
    finally:
        set_known_key(qkl)
    cpu = {"op": "cpu", "kl": 1, "cr4_kl": 1, "aeskle": 1, "cpl": 3, "leaf19_eax": 7, "leaf19_ebx": 0x14,
           "leaf19_ecx": 3}
    emulated = answers(qkl, "emulated", [cpu, *script.lines])[1:]
    bad = []
    for line, got, emu, want in zip(script.lines, vmm, emulated, script.expected, strict=True):
        if got != emu or got.keys() != want.keys() or any(v != ANY and got[k] != v for k, v in want.items()):
            bad.append(f"{json.dumps(line)}\n  vmm:      {got}\n  emulator: {emu}\n  model:    {want}")
    assert not bad, f"{len(bad)} of {len(script.lines)} lines differ (seed {SEED:#x}):\n" + "\n".join(bad[:5])
    outcomes = {(a.get("fault"), a.get("zf")) for a in vmm if a["op"] != "setiwkey"}
    assert {("GP", None), (None, 0), (None, 1)} <= outcomes  # faults, successes and refusals all occurred


def test_the_vmm_reproduces_the_keylocker_md_reference_handle(qkl: ProbeGuest) -> None:
    lines = [{"op": "setiwkey", "integrity": bytes(range(16)).hex(), "enc": bytes(range(16, 48)).hex()},
             {"op": "encodekey128", "src": 0, "key": bytes(range(16)).hex()},
             {"op": "cpu", "kl": 1}]
    setk, enc, cpu = answers(qkl, "native", lines)
    assert setk == {"op": "setiwkey", "ok": True}
    assert enc["handle"] == "00" * 16 + "82fcc08ea7244263409641aae7af11f0f3285030ffa1d7073fab929544b2d0fc"
    assert cpu["error"].startswith('op "cpu" shapes the emulated CPU; a native CPU (silicon or a VMM) is what it is')
