"""Which check ids the probe must report for a given (virtual) CPU.

Why in Python too: the catalogue parametrizes one test per check before any
guest boots, and a check the probe silently skipped must show up as a
failure ("not reported"), not as a missing row.  This mirrors
``probe_run_checks`` in harness/csrc/probe_checks.c; tests compare the two.
"""

from __future__ import annotations

from harness.kl.cpuid import RESTRICTION_BITS, KeyLockerCpuid

MNEMONICS = ("loadiwkey", "encodekey128", "encodekey256", "aesenc128kl", "aesdec128kl", "aesenc256kl",
             "aesdec256kl", "aesencwide128kl", "aesdecwide128kl", "aesencwide256kl", "aesdecwide256kl")
WIDE_MNEMONICS = MNEMONICS[7:]
LIFECYCLE_CHECK = "handle.check"


def expected_check_ids(cpu: KeyLockerCpuid, *, usable: bool, cpl: int = 3) -> list[str]:
    """Check ids, in the probe's order, for a CPU whose KL is ``usable`` (bit, AESKLE and ENCODEKEY run)."""
    if not usable:
        return [f"ud.{m}" for m in MNEMONICS]
    supported = sum(RESTRICTION_BITS[r] for r in cpu.restrictions)
    ids = [f"encodekey{bits}.restrictions.r{r}" for bits in (128, 256) for r in range(8) if not r & ~supported]
    ids += ["encodekey128.src_reserved", "encodekey256.src_reserved"]
    if supported != 7:
        ids.append("encodekey128.unsupported_restriction")
    ids += ["encodekey128.determinism.repeat", "encodekey128.determinism.cpus",
            "aesenc128kl.fips197_c1", "aesenc128kl.fips197_b", "aesdec128kl.fips197_c1",
            "aesenc256kl.fips197_c3", "aesdec256kl.fips197_c3", "aes128kl.roundtrip", "aes256kl.roundtrip"]
    if cpu.wide:
        ids += [f"{m}.lanes" for m in WIDE_MNEMONICS]
    else:
        ids += [f"wide_absent.{m}" for m in WIDE_MNEMONICS]
    if "noencrypt" in cpu.restrictions:
        ids += ["restrict.noencrypt.encrypt_rejected", "restrict.noencrypt.decrypt_allowed"]
        if cpu.wide:
            ids.append("restrict.noencrypt.wide_encrypt_rejected")
    if "nodecrypt" in cpu.restrictions:
        ids += ["restrict.nodecrypt.decrypt_rejected", "restrict.nodecrypt.encrypt_allowed"]
        if cpu.wide:
            ids.append("restrict.nodecrypt.wide_decrypt_rejected")
    if "cpl0" in cpu.restrictions and cpl > 0:
        ids.append("restrict.cpl0.user_rejected")
    ids += ["integrity.bitflip.h384", "integrity.bitflip.h512", "integrity.reserved_aad_bit",
            "integrity.keytype_swapped", "integrity.h128_on_256", "integrity.h256_on_128"]
    if cpl > 0:
        ids.append("loadiwkey.user")
    return ids


def all_known_check_ids() -> frozenset[str]:
    """Every id any CPU shape can produce (profiles may only name these, by glob)."""
    from harness.kl.cpuid import Regs, decode

    shapes = [decode(1 << 23, Regs(eax, 0x15 | wide, 0, 0)) for eax in range(8) for wide in (0, 4)]
    ids: set[str] = {LIFECYCLE_CHECK}
    for cpu in shapes:
        ids.update(expected_check_ids(cpu, usable=True))
    ids.update(expected_check_ids(shapes[0], usable=False))
    return frozenset(ids)
