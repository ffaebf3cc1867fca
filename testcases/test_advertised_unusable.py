"""CPUID says Key Locker but AESKLE is 0 (or the instructions fault): reported as such, never as a pass."""

from __future__ import annotations

from typing import Any

import pytest

from harness.guest.probeguest import ProbeRun


@pytest.mark.kl_guests(kl=True, kl_usable=False, refused=False)
def test_advertised_but_unusable_is_reported_not_passed(kl_probe: ProbeRun, kl_record: dict[str, Any]) -> None:
    doc = kl_probe.document
    kl_record.update(observation={"kl": doc.cpu.kl.kl, "aeskle": doc.cpu.kl.aeskle, "kl_usable": doc.kl_usable},
                     source="KEYLOCKER.md §2: usable only with both 7.0:ECX[23] and AESKLE")
    assert doc.cpu.kl.kl and not doc.cpu.kl.aeskle
    assert not doc.kl_usable, "the probe claims KL usable without AESKLE"
    assert {o.id for o in doc.observations} == {o.id for o in doc.observations if o.id.startswith("ud.")}
    assert all(o.signal == "SIGILL" for o in doc.observations)
