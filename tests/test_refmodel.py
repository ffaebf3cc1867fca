"""The Python reference model against published answers (harness/kl/refmodel.py).

The model is the oracle for the C emulator, so it is checked only against
sources outside this project: FIPS-197, RFC 8452 (POLYVAL and the
AES-256-GCM-SIV vectors of Appendix C.2), the ``cryptography`` package's
AES-GCM-SIV, and the reference handle of KEYLOCKER.md §4.
"""

from __future__ import annotations

import os
import random

import pytest

from harness.kl import refmodel as m

# ---------------------------------------------------------------- AES: KEYLOCKER.md §8

FIPS197 = [
    # (case, key, plaintext, ciphertext)
    ("C.1 AES-128", "000102030405060708090a0b0c0d0e0f", "00112233445566778899aabbccddeeff",
     "69c4e0d86a7b0430d8cdb78070b4c55a"),
    ("C.3 AES-256", "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f",
     "00112233445566778899aabbccddeeff", "8ea2b7ca516745bfeafc49904b496089"),
    ("B AES-128", "2b7e151628aed2a6abf7158809cf4f3c", "3243f6a8885a308d313198a2e0370734",
     "3925841d02dc09fbdc118597196a0b32"),
]


@pytest.mark.parametrize(("case", "key", "pt", "ct"), FIPS197, ids=[c[0] for c in FIPS197])
def test_aes_block_matches_fips197(case: str, key: str, pt: str, ct: str) -> None:
    assert m.aes_encrypt_block(bytes.fromhex(key), bytes.fromhex(pt)).hex() == ct
    assert m.aes_decrypt_block(bytes.fromhex(key), bytes.fromhex(ct)).hex() == pt


# ---------------------------------------------------------------- POLYVAL and the GCM-SIV core: RFC 8452


def test_polyval_matches_rfc8452_appendix_a() -> None:
    h = bytes.fromhex("25629347589242761d31f826ba4b757b")
    x = bytes.fromhex("4f4f95668c83dfb6401762bb2d01a262" "d1a24ddd2721d006bbe45f20d3c9f362")
    assert m.polyval(h, x).hex() == "f7a3b47b846119fae5b7866cf5e5b77e"


def test_dot_is_product_times_x_to_minus_128() -> None:
    # dot(a, x^128 mod P) = a: the defining property of the x^-128 factor.
    x128 = m._mod_p(1 << 128)
    a = int.from_bytes(os.urandom(16), "little")
    assert m.dot(a, x128) == a


def _derive_rfc8452_keys(key: bytes, nonce: bytes) -> tuple[bytes, bytes]:
    """RFC 8452 §4 key derivation, written here so the model's core is fed the derived keys."""
    blocks = [m.aes_encrypt_block(key, i.to_bytes(4, "little") + nonce)[:8] for i in range(6)]
    auth_key = blocks[0] + blocks[1]
    enc_key = b"".join(blocks[2:6]) if len(key) == 32 else blocks[2] + blocks[3]
    return auth_key, enc_key


K1 = "01" + "00" * 31
N1 = "03" + "00" * 11
RFC8452_C2 = [
    # (key, nonce, aad, plaintext, ciphertext||tag) from RFC 8452 Appendix C.2
    (K1, N1, "", "0100000000000000", "c2ef328e5c71c83b843122130f7364b761e0b97427e3df28"),
    (K1, N1, "01", "0200000000000000", "1de22967237a813291213f267e3b452f02d01ae33e4ec854"),
    (K1, N1, "01", "02000000000000000000000000000000" "03000000000000000000000000000000",
     "07dad364bfc2b9da89116d7bef6daaaf6f255510aa654f920ac81b94e8bad365aea1bad12702e1965604374aab96dbbc"),
    (K1, N1, "010000000000000000000000", "02000000", "22b3f4cd1835e517741dfddccfa07fa4661b74cf"),
    ("e66021d5eb8e4f4066d4adb9c33560e4f46e44bb3da0015c94f7088736864200", "e0eaf5284d884a0e77d31646", "", "",
     "169fbb2fbf389a995f6390af22228a62"),
    ("bae8e37fc83441b16034566b7a806c46bb91c3c5aedb64a6c590bc84d1a5e269", "e4b47801afc0577e34699b9e",
     "4fbdc66f14", "671fdd", "0eaccb93da9bb81333aee0c785b240d319719d"),
    ("3c535de192eaed3822a2fbbe2ca9dfc88255e14a661b8aa82cc54236093bbc23", "688089e55540db1872504e1c",
     "734320ccc9d9bbbb19cb81b2af4ecbc3e72834321f7aa0f70b7282b4f33df23f167541",
     "ced532ce4159b035277d4dfbb7db62968b13cd4eec",
     "626660c26ea6612fb17ad91e8e767639edd6c9faee9d6c7029675b89eaf4ba1ded1a286594"),
]


@pytest.mark.parametrize(("key", "nonce", "aad", "pt", "sealed"), RFC8452_C2)
def test_siv_core_matches_rfc8452_c2_with_derived_keys(key: str, nonce: str, aad: str, pt: str,
                                                       sealed: str) -> None:
    auth_key, enc_key = _derive_rfc8452_keys(bytes.fromhex(key), bytes.fromhex(nonce))
    got = m.siv_seal(auth_key, enc_key, bytes.fromhex(nonce), bytes.fromhex(aad), bytes.fromhex(pt))
    assert got.hex() == sealed
    assert m.siv_open(auth_key, enc_key, bytes.fromhex(nonce), bytes.fromhex(aad), got) == bytes.fromhex(pt)


def test_siv_core_matches_cryptography_aes_gcm_siv_on_random_inputs() -> None:
    aead = pytest.importorskip("cryptography.hazmat.primitives.ciphers.aead")
    if not hasattr(aead, "AESGCMSIV"):
        pytest.skip("this cryptography/OpenSSL has no AES-GCM-SIV")
    rng = random.Random(8452)
    for _ in range(40):
        key, nonce = rng.randbytes(32), rng.randbytes(12)
        aad, pt = rng.randbytes(rng.randrange(0, 40)), rng.randbytes(rng.randrange(0, 70))
        auth_key, enc_key = _derive_rfc8452_keys(key, nonce)
        assert m.siv_seal(auth_key, enc_key, nonce, aad, pt) == aead.AESGCMSIV(key).encrypt(nonce, pt, aad)


def test_siv_open_rejects_any_single_bit_flip() -> None:
    auth_key, enc_key = bytes(range(16)), bytes(range(32))
    sealed = m.siv_seal(auth_key, enc_key, m.ZERO_NONCE, b"a" * 16, b"k" * 16)
    for bit in range(0, 8 * len(sealed), 7):
        tampered = bytearray(sealed)
        tampered[bit // 8] ^= 1 << (bit % 8)
        assert m.siv_open(auth_key, enc_key, m.ZERO_NONCE, b"a" * 16, bytes(tampered)) is None


# ---------------------------------------------------------------- the handle: KEYLOCKER.md §4

REF_IWKEY = m.IWKey(integrity=bytes(range(16)), enc=bytes(range(0x10, 0x30)))
REF_HANDLE = bytes(16) + bytes.fromhex("82fcc08ea7244263409641aae7af11f0" "f3285030ffa1d7073fab929544b2d0fc")


def test_reference_handle_of_keylocker_md_section_4() -> None:
    result = m.encodekey(m.CPU(), REF_IWKEY, 128, 0, bytes(range(16)))
    assert result.fault is None
    assert result.handle == REF_HANDLE
    assert m.unwrap(REF_IWKEY, REF_HANDLE) == bytes(range(16))


def test_handle_layout_aad_tag_ciphertext() -> None:
    handle = m.encodekey(m.CPU(), REF_IWKEY, 256, m.RESTRICT_NODECRYPT | m.RESTRICT_CPL0, bytes(32)).handle
    assert len(handle) == 64
    assert handle[:16] == (0x05 | 1 << 24).to_bytes(16, "little")
    assert m.unwrap(REF_IWKEY, handle) == bytes(32)
    assert m.unwrap(m.IWKey(), handle) is None


def test_derive_iwkey_follows_klemu_h() -> None:
    secret, boot_id = bytes(range(32)), bytes(range(100, 116))
    got = m.derive_iwkey(secret, boot_id)
    blocks = [m.aes_encrypt_block(secret, boot_id[:15] + bytes([boot_id[15] ^ (0xA0 + i)])) for i in range(3)]
    assert (got.integrity, got.enc, got.nobackup, got.keysource) == (blocks[0], blocks[1] + blocks[2], False, 0)


# ---------------------------------------------------------------- instruction semantics: KEYLOCKER.md §3

KEY128 = bytes.fromhex("000102030405060708090a0b0c0d0e0f")
PT = bytes.fromhex("00112233445566778899aabbccddeeff")


def test_encodekey_faults() -> None:
    cpu = m.CPU()
    assert m.encodekey(cpu, REF_IWKEY, 128, 8, KEY128).fault is m.Fault.GP
    assert m.encodekey(cpu, REF_IWKEY, 128, 1 << 31, KEY128).fault is m.Fault.GP
    assert m.encodekey(m.CPU(leaf19_eax=0x5), REF_IWKEY, 128, m.RESTRICT_NOENCRYPT, KEY128).fault is m.Fault.GP
    assert m.encodekey(m.CPU(leaf19_eax=0x5), REF_IWKEY, 128, m.RESTRICT_NODECRYPT, KEY128).fault is None
    for hidden in (m.CPU(kl_present=False), m.CPU(cr4_kl=False), m.CPU(aeskle_enabled=False)):
        # #UD is decided before the #GP of a reserved SRC bit.
        assert m.encodekey(hidden, REF_IWKEY, 128, 8, KEY128).fault is m.Fault.UD


def test_encodekey_dest_reports_nobackup_and_keysource() -> None:
    iwkey = m.IWKey(REF_IWKEY.integrity, REF_IWKEY.enc, nobackup=True, keysource=1)
    result = m.encodekey(m.CPU(), iwkey, 128, 0, KEY128)
    assert (result.dest, result.zf, result.rflags) == (0b11, 0, 0)


def test_aeskl_known_answer_and_roundtrip() -> None:
    handle = m.encodekey(m.CPU(), REF_IWKEY, 128, 0, KEY128).handle
    enc = m.aeskl(m.CPU(), REF_IWKEY, "aesenc128kl", handle, [PT])
    assert (enc.fault, enc.zf, enc.out[0].hex()) == (None, 0, "69c4e0d86a7b0430d8cdb78070b4c55a")
    assert m.aeskl(m.CPU(), REF_IWKEY, "aesdec128kl", handle, enc.out).out == (PT,)


def _zf(cpu: m.CPU, op: str, handle: bytes, iwkey: m.IWKey = REF_IWKEY) -> int:
    blocks = [PT] * m.AES_OPS[op].blocks
    result = m.aeskl(cpu, iwkey, op, handle, blocks)
    assert result.fault is None
    if result.zf:
        assert result.out == tuple(blocks), "data registers must be unchanged on ZF=1"
    return result.zf


def test_aeskl_zf1_rules() -> None:
    cpu, user, kernel = m.CPU(), m.CPU(cpl=3), m.CPU(cpl=0)
    plain = m.encodekey(cpu, REF_IWKEY, 128, 0, KEY128).handle
    h256 = m.encodekey(cpu, REF_IWKEY, 256, 0, KEY128 * 2).handle
    cpl0 = m.encodekey(cpu, REF_IWKEY, 128, m.RESTRICT_CPL0, KEY128).handle
    noenc = m.encodekey(cpu, REF_IWKEY, 128, m.RESTRICT_NOENCRYPT, KEY128).handle
    nodec = m.encodekey(cpu, REF_IWKEY, 128, m.RESTRICT_NODECRYPT, KEY128).handle
    assert _zf(cpu, "aesenc128kl", plain) == 0
    assert _zf(user, "aesenc128kl", cpl0) == 1 and _zf(kernel, "aesenc128kl", cpl0) == 0
    assert _zf(cpu, "aesenc128kl", noenc) == 1 and _zf(cpu, "aesdec128kl", noenc) == 0
    assert _zf(cpu, "aesdec128kl", nodec) == 1 and _zf(cpu, "aesenc128kl", nodec) == 0
    assert _zf(cpu, "aesencwide128kl", noenc) == 1 and _zf(cpu, "aesdecwide128kl", nodec) == 1
    # Key type mismatch, both ways (the 128 handle padded to the 512-bit operand).
    assert _zf(cpu, "aesenc256kl", plain + bytes(16)) == 1
    assert _zf(cpu, "aesenc128kl", h256[:48]) == 1
    # A reserved AAD bit, even one the tag would cover correctly.
    for bit in (3, 23, 28, 31, 32, 127):
        aad = (1 << bit).to_bytes(16, "little")
        assert _zf(cpu, "aesenc128kl", m.wrap(REF_IWKEY, aad, KEY128)) == 1
    # Authentication: another IWKey, or any flipped bit of tag or ciphertext.
    assert _zf(cpu, "aesenc128kl", plain, m.IWKey()) == 1
    for byte in (16, 31, 32, 47):
        tampered = bytearray(plain)
        tampered[byte] ^= 0x10
        assert _zf(cpu, "aesenc128kl", bytes(tampered)) == 1


def test_aeskl_undefined_opcode_cases() -> None:
    handle = m.encodekey(m.CPU(), REF_IWKEY, 128, 0, KEY128).handle
    assert m.aeskl(m.CPU(aeskle_enabled=False), REF_IWKEY, "aesenc128kl", handle, [PT]).fault is m.Fault.UD
    assert m.aeskl(m.CPU(leaf19_ebx=0x10), REF_IWKEY, "aesencwide128kl", handle, [PT] * 8).fault is m.Fault.UD
    assert m.aeskl(m.CPU(leaf19_ebx=0x10), REF_IWKEY, "aesenc128kl", handle, [PT]).zf == 0


def test_loadiwkey_checks_in_sdm_order() -> None:
    kernel = m.CPU(cpl=0)
    integ, enc = REF_IWKEY.integrity, REF_IWKEY.enc
    assert m.loadiwkey(m.CPU(cr4_kl=False, cpl=3), m.IWKey(), integ, enc, 1 << 31).fault is m.Fault.UD
    assert m.loadiwkey(m.CPU(aeskle_enabled=False, cpl=0), m.IWKey(), integ, enc, 0).fault is None
    for eax in (2 << 1, 1 << 5, 0):
        assert m.loadiwkey(m.CPU(cpl=3), m.IWKey(), integ, enc, eax).fault is m.Fault.GP
    assert m.loadiwkey(kernel, m.IWKey(), integ, enc, 2 << 1).fault is m.Fault.GP
    assert m.loadiwkey(kernel, m.IWKey(), integ, enc, 1 << 5).fault is m.Fault.GP
    assert m.loadiwkey(m.CPU(cpl=0, leaf19_ecx=0x2), m.IWKey(), integ, enc, 1).fault is m.Fault.GP
    assert m.loadiwkey(m.CPU(cpl=0, leaf19_ecx=0x1), m.IWKey(), integ, enc, 1 << 1).fault is m.Fault.GP
    loaded = m.loadiwkey(kernel, m.IWKey(), integ, enc, 1)
    assert (loaded.fault, loaded.zf, loaded.iwkey) == (None, 0, m.IWKey(integ, enc, True, 0))


def test_loadiwkey_random_keysource_mixes_entropy_or_sets_zf() -> None:
    kernel = m.CPU(cpl=0)
    noise = bytes(range(48))
    mixed = m.loadiwkey(kernel, m.IWKey(), bytes(16), bytes(32), 1 << 1, entropy=lambda n: noise)
    assert (mixed.zf, mixed.iwkey) == (0, m.IWKey(noise[:16], noise[16:], False, 1))
    short = m.loadiwkey(kernel, REF_IWKEY, bytes(16), bytes(32), 1 << 1, entropy=lambda n: None)
    assert (short.fault, short.zf, short.iwkey) == (None, 1, REF_IWKEY)


def test_cpuid19_computes_aeskle_and_hides_leaf_without_kl() -> None:
    assert m.CPU().cpuid19() == (0x7, 0x15, 0x3, 0)
    assert m.CPU(cr4_kl=False).cpuid19() == (0x7, 0x14, 0x3, 0)
    assert m.CPU(kl_present=False).cpuid19() == (0, 0, 0, 0)
    assert m.CPU(kl_present=False).cpuid7_ecx_kl() == 0
