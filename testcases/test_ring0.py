"""What only ring 0 can see, through klhelper's ring0 checks (harness/lab/klhelper/klhelper_ring0.c).

On a CPU that hides Key Locker: ACRN's hidden-KL list in full — setting CR4.KL, reading and writing
the four backup MSRs #GP, each of the eleven instructions #UD (KEYLOCKER.md §6).  klhelper loads
there with probe_only=1 and changes nothing.  On a CPU with Key Locker and klhelper: clearing CR4.KL
makes every instruction #UD and AESKLE read 0, and the backup MSRs keep their access rules.

Runs where klhelper can run these: guests of a VMM that executes Key Locker (qemu-kl: Debian's
QEMU 7.2 would hang the vCPU on the CR4 write instead of raising #GP) and lab guests that load it.
"""

from __future__ import annotations

from typing import Any

import pytest

from harness.guest import klhelper
from harness.guest.probeguest import ProbeGuest

SOURCE_HIDDEN = "KEYLOCKER.md §6: ACRN's hidden-KL checks (CR4.KL -> #GP, backup MSRs -> #GP, 11 x #UD)"
SOURCE_CR4 = "KEYLOCKER.md §2-3: with CR4.KL=0 AESKLE reads 0 and every KL instruction #UDs"
SOURCE_MSR = "KEYLOCKER.md §5: the copy MSRs are written, the status MSRs read; bits above bit 0 are reserved"
MSR_RULES = {"msr 0xd91 read": "gp", "msr 0xd92 read": "gp", "msr 0x990 write": "gp", "msr 0x991 write": "gp",
             "msr 0xd91 write 2": "gp", "msr 0xd92 write 1<<32": "gp", "msr 0xd92 write 0": "ok"}


def _probe_only_helper(pg: ProbeGuest) -> None:
    """klhelper with probe_only=1 (changes nothing), unless this boot already has it."""
    session = pg.shell()
    if session.run(["test", "-e", f"{klhelper.DEBUGFS_DIR}/ring0"], timeout=30).returncode == 0:
        return
    result = klhelper.build_and_load(session, params=("probe_only=1",), image=pg.image)
    if not result.loaded:
        pytest.fail(f"klhelper probe_only=1 did not load: {result.describe()}")


@pytest.mark.kl_guests(kl=False, leaf19_zero=False, ring0=True)
def test_a_cpu_that_hides_key_locker_passes_acrns_list_at_ring_0(kl_guest_handle: ProbeGuest,
                                                                  kl_record: dict[str, Any]) -> None:
    _probe_only_helper(kl_guest_handle)
    seen = klhelper.ring0(kl_guest_handle.shell(), "hidden")
    kl_record.update(observation=seen, expectation=klhelper.HIDDEN_EXPECTED, source=SOURCE_HIDDEN)
    differ = {k: (seen.get(k), want) for k, want in klhelper.HIDDEN_EXPECTED.items() if seen.get(k) != want}
    assert not differ, f"ring 0 on a KL-hidden CPU: (seen, expected) {differ}"


@pytest.mark.kl_guests(kl=True, kl_usable=True, refused=False, ring0=True)
def test_clearing_cr4_kl_makes_every_instruction_ud_and_aeskle_0(kl_guest_handle: ProbeGuest,
                                                                 kl_record: dict[str, Any]) -> None:
    if not kl_guest_handle.helper_loaded:
        pytest.fail(f"klhelper is not loaded in {kl_guest_handle.name}: {kl_guest_handle.helper}")
    seen = klhelper.ring0(kl_guest_handle.shell(), "cr4kl-off")
    want = {"clear": "ok", "aeskle_cr4kl_clear": "0", "encodekey128": "ud", "aesenc128kl": "ud", "loadiwkey": "ud",
            "aeskle_cr4kl_set": "1"}
    kl_record.update(observation=seen, expectation=want, source=SOURCE_CR4)
    assert seen == want


@pytest.mark.kl_guests(kl=True, kl_usable=True, refused=False, ring0=True)
def test_the_backup_msrs_keep_their_access_rules(kl_guest_handle: ProbeGuest, kl_record: dict[str, Any]) -> None:
    backup = kl_guest_handle.plan.config.kl.backup
    want = MSR_RULES if backup else dict.fromkeys(MSR_RULES, "gp")
    seen = klhelper.ring0(kl_guest_handle.shell(), "msr")
    kl_record.update(observation=seen, expectation=want, source=SOURCE_MSR if backup else
                     "KEYLOCKER.md §5: without CPUID.19H:EBX[4] every backup MSR is #GP")
    assert seen == want
