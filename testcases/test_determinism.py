"""The IWKey is per logical CPU: the same key and restrictions must give the same handle on every vCPU."""

from __future__ import annotations

from typing import Any

import pytest

from harness.guest.probeguest import ProbeRun
from harness.plan.matrix import GuestPlan


@pytest.mark.kl_guests(kl=True, kl_usable=True, refused=False)
def test_same_handle_on_every_vcpu(kl_probe: ProbeRun, kl_plan: GuestPlan, kl_record: dict[str, Any]) -> None:
    obs = kl_probe.document.by_id()["encodekey128.determinism.cpus"]
    cpus = obs.outputs.get("cpus", [])
    kl_record.update(observation=dict(obs.outputs), source="KEYLOCKER.md §3: ENCODEKEY is deterministic per IWKey")
    assert len(cpus) == kl_plan.config.vcpus, f"probe ran on CPUs {cpus}, the guest has {kl_plan.config.vcpus}"
    assert obs.outputs.get("differing") == 0 and obs.outputs.get("faulted") == 0
