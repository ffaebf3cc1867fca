"""Vector lines that compare a Key Locker that executes (silicon, qemu-kl) with the emulator, bit for bit.

Why in the package: the catalogue runs the comparison on silicon (the host, klhelper loaded) and on
the VMM (a qemu-kl guest), and a lab sends the same files back; the lines, the emulator's prefix,
the comparison and the evidence written must be one thing, testable without either.

The lines cover ENCODEKEY (every supported restriction set, a reserved SRC bit), the AES*KL forms
on valid and tampered handles made under the known IWKey, and the WIDE forms where enumerated
(``klprobe vectors``' format, klvectors.h).  The emulator gets the same IWKey and the executing
CPU's leaf 0x19 first (``cpu`` and ``setiwkey`` lines), so every answer must be identical.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

from harness.kl import refmodel
from harness.kl.cpuid import L19_EAX_CPL0, L19_EAX_NODECRYPT, L19_EAX_NOENCRYPT, L19_EBX_AESKLE, L19_EBX_WIDE

# KEYLOCKER.md §4: the one published reference vector was made under this IWKey.
KNOWN = refmodel.IWKey(integrity=bytes(range(0x00, 0x10)), enc=bytes(range(0x10, 0x30)))
REFERENCE_KEY = bytes(range(16))
REFERENCE_HANDLE_16_48 = bytes.fromhex("82fcc08ea7244263409641aae7af11f0f3285030ffa1d7073fab929544b2d0fc")
SEED = 0x5111C0


def restriction_sets(leaf19_eax: int) -> list[int]:
    supported = leaf19_eax & (L19_EAX_CPL0 | L19_EAX_NOENCRYPT | L19_EAX_NODECRYPT)
    return [r for r in range(8) if r & ~supported == 0]


def build_ops(leaf19: dict[str, int], *, seed: int = SEED) -> list[dict[str, Any]]:
    """Deterministic operations for a CPU with this leaf 0x19 (and KNOWN loaded)."""
    rng = random.Random(seed)
    eax = leaf19["eax"]
    wide = bool(leaf19["ebx"] & L19_EBX_WIDE)
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


def emulator_prefix(leaf19: dict[str, int], *, cpl: int = 3) -> list[dict[str, Any]]:
    """The emulated CPU set to the executing CPU's leaf 0x19 (AESKLE is computed) and the KNOWN IWKey."""
    return [{"op": "cpu", "kl": 1, "cr4_kl": 1, "aeskle": 1, "cpl": cpl, "leaf19_eax": leaf19["eax"],
             "leaf19_ebx": leaf19["ebx"] & ~L19_EBX_AESKLE, "leaf19_ecx": leaf19["ecx"]},
            setiwkey_line()]


def setiwkey_line() -> dict[str, Any]:
    return {"op": "setiwkey", "integrity": KNOWN.integrity.hex(), "enc": KNOWN.enc.hex()}


def differences(ops: list[dict[str, Any]], executed: list[dict[str, Any]],
                emulated: list[dict[str, Any]]) -> list[tuple[dict[str, Any], dict[str, Any], dict[str, Any]]]:
    """(op, executed answer, emulated answer) for every line whose answers differ."""
    if not len(ops) == len(executed) == len(emulated):
        raise ValueError(f"{len(ops)} lines, {len(executed)} executed answers, {len(emulated)} emulated answers")
    return [(op, a, b) for op, a, b in zip(ops, executed, emulated, strict=True) if a != b]


def describe(diffs: list[tuple[dict[str, Any], dict[str, Any], dict[str, Any]]], what: str, total: int,
             where: Path) -> str:
    shown = "\n".join(f"  {op}\n    {what}: {a}\n    emulator: {b}" for op, a, b in diffs[:5])
    return f"{len(diffs)} of {total} vectors differ (files in {where}):\n{shown}"


def write_evidence(out: Path, lines: dict[str, list[dict[str, Any]]], facts: dict[str, Any]) -> Path:
    """The files a lab sends back: every input and answer (JSON lines) and what the CPU said of itself."""
    out.mkdir(parents=True, exist_ok=True)
    for name, rows in lines.items():
        (out / f"{name}.jsonl").write_text("".join(json.dumps(x, sort_keys=True) + "\n" for x in rows))
    (out / "cpuid.json").write_text(json.dumps(facts, indent=2, sort_keys=True) + "\n")
    return out


def reference_handle_ok(answer: dict[str, Any]) -> bool:
    """The answer to the first line of build_ops is KEYLOCKER.md §4's reference handle."""
    handle = bytes.fromhex(answer.get("handle") or "")
    return answer.get("fault") is None and handle[:16] == bytes(16) and handle[16:48] == REFERENCE_HANDLE_16_48
