"""CPUID decoding of Key Locker bits (KEYLOCKER.md §2)."""

from __future__ import annotations

from harness.kl.cpuid import Regs, decode, leaf19_words


def test_tiger_lake_with_cr4_kl() -> None:
    kl = decode(1 << 23, Regs(0x7, 0x15, 0x3, 0))
    assert kl.kl and kl.aeskle and kl.usable and kl.wide and kl.backup
    assert kl.restrictions == {"cpl0", "noencrypt", "nodecrypt"}
    assert kl.nobackup and kl.random_keysource and not kl.reserved_bits_set


def test_tiger_lake_before_cr4_kl_is_not_usable() -> None:
    kl = decode(1 << 23, Regs(0x7, 0x14, 0x3, 0))
    assert kl.kl and not kl.aeskle and not kl.usable


def test_aeskle_without_feature_bit_is_not_usable() -> None:
    assert not decode(0, Regs(0, 1, 0, 0)).usable


def test_leaf_absent_and_leaf_present_but_zero_differ() -> None:
    absent, zero = decode(0, None), decode(0, Regs.zero())
    assert not absent.leaf19_present and zero.leaf19_present and zero.leaf19_all_zero


def test_reserved_bits_are_flagged() -> None:
    assert decode(0, Regs(0x8, 0, 0, 0)).reserved_bits_set
    assert decode(0, Regs(0, 0x2, 0, 0)).reserved_bits_set
    assert decode(0, Regs(0, 0, 0, 1)).reserved_bits_set


def test_leaf19_words_round_trip() -> None:
    eax, ebx, ecx = leaf19_words(restrictions={"noencrypt"}, wide=True, backup=False, nobackup=False,
                                 random_keysource=True)
    kl = decode(1 << 23, Regs(eax, ebx | 1, ecx, 0))
    assert kl.restrictions == {"noencrypt"} and kl.wide and not kl.backup and kl.random_keysource
