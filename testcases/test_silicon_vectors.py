"""Silicon vs the emulator, bit for bit (KEYLOCKER.md §4 is [model]; §10 asks the lab to check it).

Where this machine's CPU runs Key Locker and the ring-0 helper ``klhelper`` is loaded, the helper
loads a known IWKey (the §4 reference key) on every CPU; the same JSON lines of primitive
operations then go through ``klprobe vectors --backend native`` (the silicon) and ``--backend
emulated`` (the emulator, given the same IWKey and the host's own leaf 0x19), and every answer
must be identical: handles, ZF, arithmetic flags, outputs and faults.  The input and both outputs
are kept under ``results/silicon-*/`` — the files a lab sends back when they differ
(docs/lab-runbook.md §6).

Everywhere else (no KL, no helper, no root) the test skips and says which of those is missing.
"""

from __future__ import annotations

import json
import os
import random
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from harness import cbuild, hostcheck, klhelper, proc
from harness.kl import refmodel
from harness.kl.cpuid import L19_EAX_CPL0, L19_EAX_NODECRYPT, L19_EAX_NOENCRYPT, L19_EBX_AESKLE, L19_EBX_WIDE
from harness.paths import results_dir

pytestmark = pytest.mark.lab

LAB_SKIP = "no ring-0 helper with a known IWKey: needs KL hardware and klhelper; see docs/lab-runbook.md"
# KEYLOCKER.md §4: the one published reference vector was made under this IWKey.
KNOWN = refmodel.IWKey(integrity=bytes(range(0x00, 0x10)), enc=bytes(range(0x10, 0x30)))
REFERENCE_KEY = bytes(range(16))
REFERENCE_HANDLE_16_48 = bytes.fromhex("82fcc08ea7244263409641aae7af11f0f3285030ffa1d7073fab929544b2d0fc")
SEED = 0x5111C0


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
    iwkey.write_text((KNOWN.integrity + KNOWN.enc).hex() + "\n")
    try:
        yield cpuid
    finally:
        iwkey.write_text("swrandom\n")  # never leave a published key loaded


def restriction_sets(leaf19_eax: int) -> list[int]:
    supported = leaf19_eax & (L19_EAX_CPL0 | L19_EAX_NOENCRYPT | L19_EAX_NODECRYPT)
    return [r for r in range(8) if r & ~supported == 0]


def build_ops(cpuid: dict[str, Any]) -> list[dict[str, Any]]:
    """Deterministic operations covering ENCODEKEY, the AES*KL forms, restrictions, tampering and faults."""
    rng = random.Random(SEED)
    eax = cpuid["leaf19"]["eax"]
    wide = bool(cpuid["leaf19"]["ebx"] & L19_EBX_WIDE)
    ops: list[dict[str, Any]] = [{"op": "encodekey128", "src": 0, "key": REFERENCE_KEY.hex()}]
    for bits in (128, 256):
        for r in restriction_sets(eax):
            for _ in range(3):
                ops.append({"op": f"encodekey{bits}", "src": r, "key": rng.randbytes(bits // 8).hex()})
        ops.append({"op": f"encodekey{bits}", "src": 1 << 3, "key": rng.randbytes(bits // 8).hex()})  # #GP
        usable = restriction_sets(eax)
        for r in [0, 0, 0, *(x for x in (L19_EAX_NOENCRYPT, L19_EAX_NODECRYPT, L19_EAX_CPL0) if x in usable)]:
            key = rng.randbytes(bits // 8)
            handle = refmodel.wrap(KNOWN, refmodel.handle_aad(r, bits), key)
            tampered = bytearray(handle)
            tampered[rng.randrange(16, len(handle))] ^= 1 << rng.randrange(8)
            for h in (handle, bytes(tampered)):
                for direction in ("enc", "dec"):
                    ops.append({"op": f"aes{direction}{bits}kl", "handle": h.hex(), "data": rng.randbytes(16).hex()})
                    if wide:
                        ops.append({"op": f"aes{direction}wide{bits}kl", "handle": h.hex(),
                                    "data": [rng.randbytes(16).hex() for _ in range(8)]})
    for i, op in enumerate(ops):
        op["id"] = i
    return ops


def vectors(backend: str, lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
    res = proc.run([cbuild.build("klprobe"), "vectors", "--backend", backend],
                   input_text="".join(json.dumps(x) + "\n" for x in lines), timeout=300, check=False)
    answers = [json.loads(line) for line in res.stdout.splitlines()]
    assert len(answers) == len(lines), f"{backend}: {len(answers)} answers for {len(lines)} lines: {res.describe()}"
    return answers


def emulator_prefix(cpuid: dict[str, Any]) -> list[dict[str, Any]]:
    """The emulated CPU set to the host's leaf 0x19 (AESKLE is computed) and the same known IWKey."""
    l19 = cpuid["leaf19"]
    return [{"op": "cpu", "kl": 1, "cr4_kl": 1, "aeskle": 1, "cpl": 3, "leaf19_eax": l19["eax"],
             "leaf19_ebx": l19["ebx"] & ~L19_EBX_AESKLE, "leaf19_ecx": l19["ecx"]},
            {"op": "setiwkey", "integrity": KNOWN.integrity.hex(), "enc": KNOWN.enc.hex()}]


def test_silicon_answers_every_vector_as_the_emulator_does(silicon: dict[str, Any]) -> None:
    ops = build_ops(silicon)
    native = vectors("native", ops)
    prefix = emulator_prefix(silicon)
    emulated = vectors("emulated", prefix + ops)
    assert all(a.get("ok") for a in emulated[:len(prefix)]), emulated[:len(prefix)]
    emulated = emulated[len(prefix):]
    out = results_dir() / f"silicon-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
    out.mkdir(parents=True, exist_ok=True)
    for name, lines in (("ops.jsonl", prefix + ops), ("native.jsonl", native), ("emulated.jsonl", emulated)):
        (out / name).write_text("".join(json.dumps(x, sort_keys=True) + "\n" for x in lines))
    (out / "cpuid.json").write_text(json.dumps(silicon, indent=2) + "\n")
    differ = [(op, n, e) for op, n, e in zip(ops, native, emulated, strict=True) if n != e]
    shown = "\n".join(f"  {op}\n    silicon:  {n}\n    emulator: {e}" for op, n, e in differ[:5])
    assert not differ, f"{len(differ)} of {len(ops)} vectors differ (files in {out}):\n{shown}"


def test_silicon_reproduces_the_keylocker_md_reference_handle(silicon: dict[str, Any]) -> None:
    first = vectors("native", [{"op": "encodekey128", "src": 0, "key": REFERENCE_KEY.hex()}])[0]
    assert first["fault"] is None, first
    handle = bytes.fromhex(first["handle"])
    assert handle[:16] == bytes(16)
    assert handle[16:48] == REFERENCE_HANDLE_16_48, (
        f"silicon handle {handle.hex()} is not KEYLOCKER.md §4's reference: the wrap model is wrong")
