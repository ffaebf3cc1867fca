"""An independent Python reference model of Key Locker (KEYLOCKER.md §2-4).

Why a second implementation: the C emulator (``harness/csrc/klemu*.c``) is
what the probe, the vectors tool and the trap layer trust, so it needs an
oracle that cannot share its mistakes.  This model is written from the
specification alone and shares no code or structure with the C:

- AES is the ``cryptography`` package's (ECB on single blocks);
- POLYVAL is RFC 8452 §3 taken literally, on Python integers: a polynomial
  product reduced modulo P, times the field inverse of x^128;
- the AES-GCM-SIV core is RFC 8452 §4 for any lengths and any nonce, so the
  RFC's own test vectors check it; the handle wrap is that core with a zero
  nonce and the IWKey in place of the derived keys (KEYLOCKER.md §4);
- each instruction is a pure function ``(CPU, IWKey, operands) -> result``.

Byte strings are in memory order throughout (XMMn = 16 bytes, little-endian).
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from functools import lru_cache

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from harness.kl.cpuid import (
    CPUID7_ECX_KL,
    L19_EBX_AESKLE,
    L19_EBX_WIDE,
    L19_ECX_NOBACKUP,
    L19_ECX_RANDOM,
)

BLOCK = 16

# ---------------------------------------------------------------- AES (FIPS-197)


def aes_encrypt_block(key: bytes, block: bytes) -> bytes:
    """AES-128/192/256 encryption of one block: the standard the AES*KL results must equal."""
    encryptor = Cipher(algorithms.AES(key), modes.ECB()).encryptor()  # noqa: S305 - one block, no mode
    return encryptor.update(block) + encryptor.finalize()


def aes_decrypt_block(key: bytes, block: bytes) -> bytes:
    """AES decryption of one block (what AESDEC*KL computes with the handle's key)."""
    decryptor = Cipher(algorithms.AES(key), modes.ECB()).decryptor()  # noqa: S305 - one block, no mode
    return decryptor.update(block) + decryptor.finalize()


# ---------------------------------------------------------------- POLYVAL (RFC 8452 §3)

# Field elements: 16 bytes read little-endian; bit i is the coefficient of x^i.
_P = (1 << 128) | (1 << 127) | (1 << 126) | (1 << 121) | 1


def _clmul(a: int, b: int) -> int:
    """Carry-less (polynomial over GF(2)) product."""
    result = 0
    while b:
        if b & 1:
            result ^= a
        a <<= 1
        b >>= 1
    return result


def _mod_p(x: int) -> int:
    """Remainder of polynomial division by P (schoolbook long division)."""
    for bit in range(x.bit_length() - 1, 127, -1):
        if (x >> bit) & 1:
            x ^= _P << (bit - 128)
    return x


def _gf_mul(a: int, b: int) -> int:
    return _mod_p(_clmul(a, b))


def _x_inverse_128() -> int:
    # P = x * Q + 1 with Q = (P - 1) / x, so x * Q = 1 (mod P): Q is x^-1.
    x_inv = (_P ^ 1) >> 1
    result = 1
    for _ in range(128):
        result = _gf_mul(result, x_inv)
    return result


_X_INV_128 = _x_inverse_128()


def dot(a: int, b: int) -> int:
    """RFC 8452's dot(a, b) = a * b * x^-128 in GF(2^128) modulo P."""
    return _gf_mul(_gf_mul(a, b), _X_INV_128)


@lru_cache(maxsize=64)
def _h_times_x_inv_128(h: bytes) -> int:
    # dot(s, H) = s * (H * x^-128): one multiplication per block instead of two.
    return _gf_mul(int.from_bytes(h, "little"), _X_INV_128)


def polyval(h: bytes, data: bytes) -> bytes:
    """POLYVAL(H, X_1, ..., X_s) for data of s whole blocks: S_j = dot(S_{j-1} + X_j, H)."""
    if len(h) != BLOCK or len(data) % BLOCK:
        raise ValueError("POLYVAL takes a 16-byte key and whole 16-byte blocks")
    h_scaled = _h_times_x_inv_128(h)
    s = 0
    for i in range(0, len(data), BLOCK):
        s = _gf_mul(s ^ int.from_bytes(data[i:i + BLOCK], "little"), h_scaled)
    return s.to_bytes(BLOCK, "little")


# ---------------------------------------------------------------- AES-GCM-SIV core (RFC 8452 §4)


def _pad16(data: bytes) -> bytes:
    return data + bytes(-len(data) % BLOCK)


def siv_tag(auth_key: bytes, enc_key: bytes, nonce: bytes, aad: bytes, plaintext: bytes) -> bytes:
    """The tag of RFC 8452 §4 given the already-derived keys (no per-nonce derivation here)."""
    length_block = struct.pack("<QQ", 8 * len(aad), 8 * len(plaintext))
    s = bytearray(polyval(auth_key, _pad16(aad) + _pad16(plaintext) + length_block))
    for i, n in enumerate(nonce):
        s[i] ^= n
    s[15] &= 0x7F
    return aes_encrypt_block(enc_key, bytes(s))


def siv_ctr(enc_key: bytes, tag: bytes, data: bytes) -> bytes:
    """AES-CTR from the tag with bit 7 of byte 15 set, 32-bit little-endian counter in bytes 0-3."""
    counter = bytearray(tag)
    counter[15] |= 0x80
    first = int.from_bytes(counter[:4], "little")
    out = bytearray()
    for i in range(0, len(data), BLOCK):
        counter[:4] = ((first + i // BLOCK) & 0xFFFFFFFF).to_bytes(4, "little")
        keystream = aes_encrypt_block(enc_key, bytes(counter))
        out += bytes(d ^ k for d, k in zip(data[i:i + BLOCK], keystream, strict=False))
    return bytes(out)


def siv_seal(auth_key: bytes, enc_key: bytes, nonce: bytes, aad: bytes, plaintext: bytes) -> bytes:
    """RFC 8452 encryption with derived keys: ciphertext || tag, exactly the RFC's output."""
    tag = siv_tag(auth_key, enc_key, nonce, aad, plaintext)
    return siv_ctr(enc_key, tag, plaintext) + tag


def siv_open(auth_key: bytes, enc_key: bytes, nonce: bytes, aad: bytes, sealed: bytes) -> bytes | None:
    """Inverse of :func:`siv_seal`; ``None`` when the tag does not authenticate."""
    ciphertext, tag = sealed[:-BLOCK], sealed[-BLOCK:]
    plaintext = siv_ctr(enc_key, tag, ciphertext)
    if siv_tag(auth_key, enc_key, nonce, aad, plaintext) != tag:
        return None
    return plaintext


# ---------------------------------------------------------------- IWKey and handles (KEYLOCKER.md §3-4)

ZERO_NONCE = bytes(12)
RESTRICT_CPL0 = 1 << 0
RESTRICT_NOENCRYPT = 1 << 1
RESTRICT_NODECRYPT = 1 << 2
RESTRICT_ALL = RESTRICT_CPL0 | RESTRICT_NOENCRYPT | RESTRICT_NODECRYPT
KEYTYPE_SHIFT = 24
KEYTYPE_AES128 = 0
KEYTYPE_AES256 = 1
_AAD_DEFINED = RESTRICT_ALL | (0xF << KEYTYPE_SHIFT)
ARITH_FLAGS = 0x8D5  # OF SF ZF AF PF CF
ZF = 1 << 6


@dataclass(frozen=True)
class IWKey:
    """The wrapping key a CPU holds.  ``enc`` is EncKey[127:0] then EncKey[255:128], i.e. the AES-256 key bytes."""

    integrity: bytes = bytes(16)
    enc: bytes = bytes(32)
    nobackup: bool = False
    keysource: int = 0

    def __post_init__(self) -> None:
        if len(self.integrity) != 16 or len(self.enc) != 32:
            raise ValueError("an IWKey has a 16-byte integrity key and a 32-byte encryption key")


def handle_aad(restrictions: int, key_bits: int) -> bytes:
    """The 16-byte metadata ENCODEKEY writes: restriction bits and the key type in bits 27:24."""
    key_type = KEYTYPE_AES256 if key_bits == 256 else KEYTYPE_AES128
    return (restrictions | key_type << KEYTYPE_SHIFT).to_bytes(16, "little")


def wrap(iwkey: IWKey, aad: bytes, key: bytes) -> bytes:
    """handle = AAD || tag || ciphertext: GCM-SIV with zero nonce, POLYVAL key = integrity, AES key = enc."""
    sealed = siv_seal(iwkey.integrity, iwkey.enc, ZERO_NONCE, aad, key)
    return aad + sealed[-BLOCK:] + sealed[:-BLOCK]


def unwrap(iwkey: IWKey, handle: bytes) -> bytes | None:
    """The raw key inside a 48- or 64-byte handle, or ``None`` if it does not authenticate under ``iwkey``."""
    aad, tag, ciphertext = handle[:16], handle[16:32], handle[32:]
    return siv_open(iwkey.integrity, iwkey.enc, ZERO_NONCE, aad, ciphertext + tag)


def derive_iwkey(secret: bytes, boot_id: bytes) -> IWKey:
    """Per-VM IWKey (klemu.h): block_i = AES-256(secret, boot_id with byte 15 XOR (0xA0 + i))."""
    blocks = []
    for i in range(3):
        tweaked = bytearray(boot_id)
        tweaked[15] ^= 0xA0 + i
        blocks.append(aes_encrypt_block(secret, bytes(tweaked)))
    return IWKey(integrity=blocks[0], enc=blocks[1] + blocks[2])


# ---------------------------------------------------------------- the virtual CPU (KEYLOCKER.md §2)


@dataclass(frozen=True)
class CPU:
    """What the VMM exposes.  ``leaf19_ebx`` is before AESKLE is applied (AESKLE is computed)."""

    kl_present: bool = True
    aeskle_enabled: bool = True
    cr4_kl: bool = True
    cpl: int = 3
    leaf19_eax: int = 0x7
    leaf19_ebx: int = 0x14
    leaf19_ecx: int = 0x3

    @classmethod
    def tigerlake(cls) -> CPU:
        """A Tiger Lake with CR4.KL set, running user space (the emulator's default)."""
        return cls()

    @property
    def aeskle(self) -> bool:
        return self.kl_present and self.cr4_kl and self.aeskle_enabled

    def cpuid7_ecx_kl(self) -> int:
        return CPUID7_ECX_KL if self.kl_present else 0

    def cpuid19(self) -> tuple[int, int, int, int]:
        """Leaf 0x19 as software reads it; all zero when KL is hidden."""
        if not self.kl_present:
            return (0, 0, 0, 0)
        ebx = (self.leaf19_ebx & ~L19_EBX_AESKLE) | (L19_EBX_AESKLE if self.aeskle else 0)
        return (self.leaf19_eax, ebx, self.leaf19_ecx, 0)


# ---------------------------------------------------------------- the instructions (KEYLOCKER.md §3)


class Fault(StrEnum):
    UD = "UD"  # #UD -> SIGILL
    GP = "GP"  # #GP(0) -> SIGSEGV


@dataclass(frozen=True)
class LoadResult:
    """LOADIWKEY: on a fault or ZF=1 ``iwkey`` is the unchanged old key."""

    fault: Fault | None
    zf: int
    iwkey: IWKey


@dataclass(frozen=True)
class EncodeResult:
    """ENCODEKEY: the handle (XMM0-2/3), DEST, and the flags (all arithmetic flags cleared)."""

    fault: Fault | None
    handle: bytes = b""
    dest: int = 0
    zf: int = 0
    rflags: int = 0


@dataclass(frozen=True)
class AesResult:
    """AES*KL: the data block(s) after the instruction; on ZF=1 they are the inputs."""

    fault: Fault | None
    zf: int = 0
    out: tuple[bytes, ...] = ()


@dataclass(frozen=True)
class AesOp:
    name: str
    key_bits: int
    decrypt: bool
    wide: bool

    @property
    def handle_size(self) -> int:
        return 64 if self.key_bits == 256 else 48

    @property
    def blocks(self) -> int:
        return 8 if self.wide else 1


AES_OPS: dict[str, AesOp] = {
    op.name: op
    for op in (
        AesOp("aesenc128kl", 128, False, False),
        AesOp("aesdec128kl", 128, True, False),
        AesOp("aesenc256kl", 256, False, False),
        AesOp("aesdec256kl", 256, True, False),
        AesOp("aesencwide128kl", 128, False, True),
        AesOp("aesdecwide128kl", 128, True, True),
        AesOp("aesencwide256kl", 256, False, True),
        AesOp("aesdecwide256kl", 256, True, True),
    )
}


def loadiwkey(cpu: CPU, iwkey: IWKey, integrity: bytes, enc: bytes, eax: int,
              entropy: Callable[[int], bytes | None] = os.urandom) -> LoadResult:
    """LOADIWKEY with its #UD and #GP(0) checks in the SDM's order.

    ``entropy(48)`` stands for the on-chip random source of KeySource=1; ``None`` means it ran
    short, which leaves the IWKey unchanged and sets ZF=1.
    """
    if not (cpu.kl_present and cpu.cr4_kl):  # LOADIWKEY does not need AESKLE
        return LoadResult(Fault.UD, 0, iwkey)
    nobackup = bool(eax & 1)
    keysource = (eax >> 1) & 0xF
    if (cpu.cpl > 0 or keysource > 1 or eax >> 5
            or (nobackup and not cpu.leaf19_ecx & L19_ECX_NOBACKUP)
            or (keysource == 1 and not cpu.leaf19_ecx & L19_ECX_RANDOM)):
        return LoadResult(Fault.GP, 0, iwkey)
    if keysource == 1:
        noise = entropy(48)
        if noise is None:
            return LoadResult(None, 1, iwkey)
        integrity = bytes(a ^ b for a, b in zip(integrity, noise[:16], strict=True))
        enc = bytes(a ^ b for a, b in zip(enc, noise[16:], strict=True))
    return LoadResult(None, 0, IWKey(integrity, enc, nobackup, keysource))


def encodekey(cpu: CPU, iwkey: IWKey, key_bits: int, src: int, key: bytes) -> EncodeResult:
    """ENCODEKEY128/256: #UD without AESKLE; #GP(0) for SRC[31:3] or an unsupported restriction."""
    if not cpu.aeskle:
        return EncodeResult(Fault.UD)
    if src & ~RESTRICT_ALL or src & ~cpu.leaf19_eax:
        return EncodeResult(Fault.GP)
    handle = wrap(iwkey, handle_aad(src, key_bits), key)
    dest = int(iwkey.nobackup) | iwkey.keysource << 1
    return EncodeResult(None, handle, dest, 0, 0)


def handle_refused(cpu: CPU, op: AesOp, handle: bytes) -> bool:
    """Step 2 of the AES*KL flow: a handle this instruction may not use, whatever the IWKey."""
    meta = int.from_bytes(handle[:16], "little")
    key_type = KEYTYPE_AES256 if op.key_bits == 256 else KEYTYPE_AES128
    forbidden_direction = RESTRICT_NODECRYPT if op.decrypt else RESTRICT_NOENCRYPT
    return bool(meta & ~_AAD_DEFINED
                or (meta & RESTRICT_CPL0 and cpu.cpl > 0)
                or meta & forbidden_direction
                or ((meta >> KEYTYPE_SHIFT) & 0xF) != key_type)


def aeskl(cpu: CPU, iwkey: IWKey, op_name: str, handle: bytes, blocks: Sequence[bytes]) -> AesResult:
    """AES{ENC,DEC}{128,256}KL and their WIDE forms (one block or eight)."""
    op = AES_OPS[op_name]
    if len(handle) != op.handle_size or len(blocks) != op.blocks:
        raise ValueError(f"{op.name} takes a {op.handle_size}-byte handle and {op.blocks} block(s)")
    if not cpu.aeskle or (op.wide and not cpu.leaf19_ebx & L19_EBX_WIDE):
        return AesResult(Fault.UD)
    unchanged = AesResult(None, 1, tuple(blocks))
    if handle_refused(cpu, op, handle):
        return unchanged
    key = unwrap(iwkey, handle)
    if key is None:
        return unchanged
    crypt = aes_decrypt_block if op.decrypt else aes_encrypt_block
    return AesResult(None, 0, tuple(crypt(key, block) for block in blocks))

