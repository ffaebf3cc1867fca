"""What the guest's CPUID says about Key Locker, against what the matrix asked the VMM to expose."""

from __future__ import annotations

from typing import Any

import pytest

from harness.guest.probeguest import ProbeRun
from harness.plan.matrix import GuestPlan
from harness.plan.profiles import Profile


@pytest.mark.kl_guests(kl=True, refused=False)
def test_kl_guest_sees_key_locker_exactly_as_configured(kl_probe: ProbeRun, kl_plan: GuestPlan,
                                                        kl_record: dict[str, Any]) -> None:
    cpu, want = kl_probe.document.cpu.kl, kl_plan.config.kl
    kl_record.update(observation={"leaf19": vars(cpu.leaf19), "kl": cpu.kl}, expectation=vars(want),
                     source="KEYLOCKER.md §2", provenance=kl_probe.document.backend)
    assert cpu.kl, "CPUID.(7,0):ECX[23] is clear in a guest configured with Key Locker"
    assert cpu.aeskle == want.aeskle, f"AESKLE is {int(cpu.aeskle)}, configured {int(want.aeskle)}"
    assert cpu.wide == want.wide and cpu.backup == want.backup
    assert cpu.restrictions == set(want.restrictions)
    assert cpu.nobackup == want.nobackup and cpu.random_keysource == want.random_keysource
    assert not cpu.reserved_bits_set, f"reserved leaf 0x19 bits set: {cpu.leaf19}"


@pytest.mark.kl_guests(kl=True, refused=False)
def test_nobackup_and_random_keysource_are_hidden_from_the_guest(kl_probe: ProbeRun, kl_profile: Profile,
                                                                 kl_record: dict[str, Any]) -> None:
    cpu = kl_probe.document.cpu.kl
    shown = {"nobackup": cpu.nobackup, "random_keysource": cpu.random_keysource}
    kl_record.update(observation=shown, expectation={b: False for b in kl_profile.hidden_bits},
                     source=f"{kl_profile.source}: hidden_bits (KEYLOCKER.md §6: KVM RFC and ACRN hide both)")
    leaked = [bit for bit in kl_profile.hidden_bits if shown[bit]]
    assert not leaked, f"leaf 0x19 ECX shows {leaked} to the guest; profile {kl_profile.name} hides them"


@pytest.mark.kl_guests(kl=False, leaf19_zero=False)
def test_kl_off_guest_has_the_kl_bit_clear_and_leaf19_zero_or_absent(kl_probe: ProbeRun,
                                                                    kl_record: dict[str, Any]) -> None:
    doc = kl_probe.document
    kl_record.update(observation={"kl": doc.cpu.kl.kl, "leaf19": doc.cpu.leaf19 and vars(doc.cpu.leaf19)},
                     source="KEYLOCKER.md §2, §6 (ACRN hidden-KL checks)", provenance=doc.backend)
    assert not doc.cpu.kl.kl
    assert doc.cpu.leaf19 is None or doc.cpu.kl.leaf19_all_zero
    assert not doc.kl_usable and doc.backend == "absent"


@pytest.mark.kl_guests(leaf19_zero=True)
def test_leaf19_is_present_but_all_zero(kl_probe: ProbeRun, kl_record: dict[str, Any]) -> None:
    doc = kl_probe.document
    kl_record.update(observation={"max_leaf": doc.cpu.max_leaf, "leaf19": doc.cpu.leaf19 and vars(doc.cpu.leaf19)},
                     source="HOST_NOTES.md: -cpu max,level=0x19,min-level=0x19")
    assert doc.cpu.max_leaf >= 0x19, f"max basic leaf {doc.cpu.max_leaf:#x} < 0x19: the leaf is absent"
    assert doc.cpu.leaf19 is not None and doc.cpu.kl.leaf19_all_zero
    assert not doc.cpu.kl.kl and not doc.kl_usable


@pytest.mark.kl_guests(refused=True)
def test_exposure_is_refused_while_the_host_uses_key_locker(kl_probe: ProbeRun, kl_plan: GuestPlan,
                                                            kl_profile: Profile, kl_record: dict[str, Any]) -> None:
    doc = kl_probe.document
    kl_record.update(observation={"kl": doc.cpu.kl.kl, "refused": kl_plan.refused},
                     expectation={"host_uses_kl": kl_profile.host_uses_kl},
                     source="KEYLOCKER.md §6: KL offered to guests only when the host kernel does not use it")
    if kl_profile.host_uses_kl != "refuse":
        pytest.skip(f"profile {kl_profile.name} allows exposure while the host uses KL")
    assert not doc.cpu.kl.kl, "the guest sees Key Locker although the host kernel uses it"
    assert all(o.signal == "SIGILL" for o in doc.observations)


@pytest.mark.kl_guests(kl=True, refused=False)
def test_provenance_is_what_the_profile_claims(kl_probe: ProbeRun, kl_profile: Profile,
                                               kl_record: dict[str, Any]) -> None:
    """An emulated result never stands in for a hardware claim (and the reverse)."""
    seen = {o.provenance for o in kl_probe.document.observations}
    kl_record.update(observation=sorted(seen), expectation=kl_profile.provenance, source=kl_profile.source)
    assert seen <= {kl_profile.provenance, "advertised-unusable"}, (
        f"profile {kl_profile.name} judges {kl_profile.provenance} results, the guest produced {sorted(seen)}")
