"""Every probe check on every guest, judged against the profile (architecture unless overridden).

On KL guests these are the instruction semantics (ENCODEKEY, AES*KL, WIDE,
restrictions, integrity); on KL-off and refused guests they are the hidden
arm: each of the 11 KL instructions must raise #UD (SIGILL), as ACRN's safety
suite checks for hidden Key Locker.
"""

from __future__ import annotations

from typing import Any

from harness.guest.probeguest import ProbeRun
from harness.kl.spec import judge
from harness.plan.profiles import Profile


def test_check(kl_check: str, kl_probe: ProbeRun, kl_profile: Profile, kl_record: dict[str, Any]) -> None:
    obs = kl_probe.document.by_id().get(kl_check)
    expect = kl_profile.expectation(kl_check)
    kl_record.update(expectation=expect and {"outcome": expect.outcome, "facts": dict(expect.facts),
                                             "all_facts": expect.all_facts},
                     source=expect.source if expect else None)
    assert obs is not None, f"the probe did not report {kl_check} (backend {kl_probe.document.backend})"
    kl_record.update(observation={"signal": obs.signal, "zf": obs.zf, "facts": dict(obs.facts),
                                  "outputs": dict(obs.outputs)}, provenance=obs.provenance)
    verdict = judge(obs, expect)
    kl_record.update(verdict={"passed": verdict.passed, "reasons": list(verdict.reasons)})  # the record's reason
    assert verdict.passed, "; ".join(verdict.reasons)
