"""Handle lifetime across lifecycle events: make a handle, do the event, ask the CPU if it still accepts it.

This is the question Key Locker virtualization turns on: where the guest's
IWKey lives and whether the VMM restores it (KEYLOCKER.md §5-6).  Each test
gets its own guest: the events are destructive.
"""

from __future__ import annotations

from typing import Any

import pytest

from harness.errors import CapabilityError, MigrationRefused
from harness.guest import events, klhelper
from harness.guest.probeguest import ProbeGuest
from harness.plan.profiles import Profile


@pytest.mark.lifecycle
@pytest.mark.kl_guests(kl=True, kl_usable=True, refused=False)
def test_handle_across_event(kl_event: str, kl_profile: Profile, kl_fresh_guest: ProbeGuest,
                             kl_record: dict[str, Any]) -> None:
    want = kl_profile.lifecycle[kl_event].for_guest(kl_fresh_guest.plan.config)
    kl_record.update(expectation={"handle": want.handle}, source=want.source)
    if want.handle == "skip":
        pytest.skip(want.reason)
    saved = kl_fresh_guest.handle_save()
    try:
        took = events.perform(kl_event, kl_fresh_guest)
    except CapabilityError as err:
        pytest.skip(str(err))
    except MigrationRefused as err:
        kl_record.update(observation={"refused": str(err)})
        _verdict(kl_record, [] if want.handle == "refused" else [
            f"{kl_event} was refused ({err}); profile {kl_profile.name} expects the handle {want.handle} after it"])
        return
    cpu = int(took.get("new_cpu", -1))
    check = kl_fresh_guest.handle_check(saved) if cpu < 0 else _check_on_cpu(kl_fresh_guest, saved, cpu)
    kl_record.update(observation={"handle_valid": check.facts["handle_valid"], "same_boot": check.facts["same_boot"],
                                  "zf": check.zf, "signal": check.signal}, provenance=check.provenance,
                     timings={k: round(v, 3) for k, v in took.items()})
    if kl_fresh_guest.helper_loaded:
        # klhelper's IWKey restores on resumed or new CPUs, with the cycle counts and their clock.
        kl_record.update(helper={**klhelper.timings(kl_fresh_guest.shell()), "clock": kl_fresh_guest.cycle_clock()})
    if want.handle == "refused":
        reasons = [f"{kl_event} was expected to be refused by the stack, but it completed"]
    elif check.signal is not None:
        reasons = [f"handle check raised {check.signal}"]
    elif check.facts["handle_valid"] != (want.handle == "valid"):
        reasons = [f"after {kl_event} the handle is {'valid' if check.facts['handle_valid'] else 'rejected (ZF=1)'}, "
                   f"profile {kl_profile.name} expects {want.handle}"]
    else:
        reasons = []
    _verdict(kl_record, reasons)


def _verdict(kl_record: dict[str, Any], reasons: list[str]) -> None:
    """Record the verdict itself (the record's reason comes from here, not from the failure text), then fail."""
    kl_record.update(verdict={"passed": not reasons, "reasons": reasons})
    assert not reasons, "; ".join(reasons)


def _check_on_cpu(pg: ProbeGuest, saved: bytes, cpu: int) -> Any:
    """The handle check pinned to the hot-plugged vCPU: the new CPU must accept old handles."""
    pg.run(["true"])
    session = pg.connect() if pg.session is None else pg.session
    session.upload(saved, "/tmp/klh-handle", mode=0o644)
    run = pg.probe("handle", "check", "/tmp/klh-handle", "--cpu", str(cpu))
    return run.document.by_id()["handle.check"]
