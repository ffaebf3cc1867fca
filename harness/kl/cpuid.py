"""Named decoding of the CPUID words that say whether Key Locker is there.

Why: the probe reports raw words (observations, not interpretations); every
consumer — reports, expectations, the host check — needs the same names for
the same bits (KEYLOCKER.md §2).  Usable KL means 7.0:ECX[23] *and* AESKLE,
as glibc and Rust decide it.
"""

from __future__ import annotations

from dataclasses import dataclass

CPUID7_ECX_KL = 1 << 23
L19_EAX_CPL0 = 1 << 0
L19_EAX_NOENCRYPT = 1 << 1
L19_EAX_NODECRYPT = 1 << 2
L19_EBX_AESKLE = 1 << 0
L19_EBX_WIDE = 1 << 2
L19_EBX_BACKUP = 1 << 4
L19_ECX_NOBACKUP = 1 << 0
L19_ECX_RANDOM = 1 << 1

RESTRICTION_BITS = {"cpl0": L19_EAX_CPL0, "noencrypt": L19_EAX_NOENCRYPT, "nodecrypt": L19_EAX_NODECRYPT}
# Bits leaf 0x19 may set at all; anything else is reserved and must read 0.
L19_DEFINED = (L19_EAX_CPL0 | L19_EAX_NOENCRYPT | L19_EAX_NODECRYPT,
               L19_EBX_AESKLE | L19_EBX_WIDE | L19_EBX_BACKUP,
               L19_ECX_NOBACKUP | L19_ECX_RANDOM,
               0)


@dataclass(frozen=True)
class Regs:
    eax: int
    ebx: int
    ecx: int
    edx: int

    @classmethod
    def zero(cls) -> Regs:
        return cls(0, 0, 0, 0)


@dataclass(frozen=True)
class KeyLockerCpuid:
    """What CPUID says about Key Locker, bit by bit."""

    kl: bool                 # CPUID.(7,0):ECX[23]
    leaf19_present: bool     # max basic leaf >= 0x19
    aeskle: bool             # 0x19:EBX[0] (only with CR4.KL=1)
    wide: bool               # 0x19:EBX[2]
    backup: bool             # 0x19:EBX[4]
    restrictions: frozenset[str]  # 0x19:EAX[2:0] by name
    nobackup: bool           # 0x19:ECX[0]
    random_keysource: bool   # 0x19:ECX[1]
    reserved_bits_set: bool  # any reserved bit of leaf 0x19 reads 1
    leaf19: Regs

    @property
    def usable(self) -> bool:
        """KL usable by software: both the feature bit and AESKLE."""
        return self.kl and self.aeskle

    @property
    def leaf19_all_zero(self) -> bool:
        return self.leaf19 == Regs.zero()


def decode(leaf7_ecx: int, leaf19: Regs | None) -> KeyLockerCpuid:
    """Decode leaf 7 ECX and leaf 0x19 (``None`` when the leaf is beyond max_leaf)."""
    regs = leaf19 or Regs.zero()
    reserved = any(word & ~defined for word, defined in
                   zip((regs.eax, regs.ebx, regs.ecx, regs.edx), L19_DEFINED, strict=True))
    return KeyLockerCpuid(
        kl=bool(leaf7_ecx & CPUID7_ECX_KL),
        leaf19_present=leaf19 is not None,
        aeskle=bool(regs.ebx & L19_EBX_AESKLE),
        wide=bool(regs.ebx & L19_EBX_WIDE),
        backup=bool(regs.ebx & L19_EBX_BACKUP),
        restrictions=frozenset(name for name, bit in RESTRICTION_BITS.items() if regs.eax & bit),
        nobackup=bool(regs.ecx & L19_ECX_NOBACKUP),
        random_keysource=bool(regs.ecx & L19_ECX_RANDOM),
        reserved_bits_set=reserved,
        leaf19=regs,
    )


def leaf19_words(*, restrictions: frozenset[str] | set[str], wide: bool, backup: bool,
                 nobackup: bool, random_keysource: bool) -> tuple[int, int, int]:
    """Leaf 0x19 EAX/EBX/ECX for a virtual CPU (AESKLE excluded: the CPU sets it with CR4.KL)."""
    eax = 0
    for name in restrictions:
        eax |= RESTRICTION_BITS[name]
    ebx = (L19_EBX_WIDE if wide else 0) | (L19_EBX_BACKUP if backup else 0)
    ecx = (L19_ECX_NOBACKUP if nobackup else 0) | (L19_ECX_RANDOM if random_keysource else 0)
    return eax, ebx, ecx
