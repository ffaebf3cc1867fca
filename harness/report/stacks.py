"""Lifecycle events across stacks: what each profile says a handle does, beside what runs observed.

Why: the question klharness exists for — where does a guest's IWKey live, and what survives which
event — has three answers here: klharness's in-guest model (profile ``emulated``, and
``emulated-random`` for a hardware-random IWKey), a VMM that executes Key Locker (``qemu-kl``) and
the 2021 KVM design (``kvm-kl-rfc``).  Where the model and the VMM disagree one of them is wrong,
or the stacks really differ (then the profile source says why: a random IWKey follows a guest
migrated by an emulating VMM, which holds it, but not one migrated by a VMM on silicon, which
cannot read it).  A run record fills the observed column of its own profile, per guest.
"""

from __future__ import annotations

from dataclasses import dataclass

from harness.config.model import LIFECYCLE_EVENTS
from harness.plan.profiles import Profile
from harness.results.schema import RunRecord

STACKS = ("emulated", "emulated-random", "qemu-kl", "kvm-kl-rfc")


@dataclass(frozen=True)
class Observed:
    """What one run saw after one event on one guest."""

    profile: str
    guest: str
    event: str
    handle: str   # valid | invalid | refused | skipped | error
    passed: bool


def observed(record: RunRecord) -> list[Observed]:
    """The lifecycle results of a run record."""
    out = []
    for t in record.tests:
        if not t.event:
            continue
        obs = t.observation or {}
        if t.outcome == "skipped":
            handle = "skipped"
        elif "refused" in obs:
            handle = "refused"
        elif "handle_valid" in obs:
            handle = "valid" if obs["handle_valid"] else "invalid"
        else:
            handle = "error"
        out.append(Observed(str(record.profile), t.guest, t.event, handle, t.outcome == "passed"))
    return out


def _cell(p: Profile | None, event: str) -> str:
    if p is None or event not in p.lifecycle:
        return "—"
    e = p.lifecycle[event]
    text = e.handle
    for condition, o in e.overrides:
        text += f"; {condition.replace('_', ' ')}: {o.handle}"
    return text


def table(profiles: dict[str, Profile], runs: list[RunRecord]) -> list[list[str]]:
    """Rows: event, then per stack its expectation and what the given runs saw (guest=handle, ✗ if it failed)."""
    seen = [o for r in runs for o in observed(r)]
    rows = [["event", *(f"{s} (profile)" for s in STACKS), "observed"]]
    for event in LIFECYCLE_EVENTS:
        obs = [o for o in seen if o.event == event]
        shown = ", ".join(f"{o.profile}:{o.guest}={o.handle}{'' if o.passed or o.handle == 'skipped' else ' ✗'}"
                          for o in obs) or "—"
        rows.append([event, *(_cell(profiles.get(s), event) for s in STACKS), shown])
    return rows


def markdown(rows: list[list[str]]) -> str:
    head, *body = rows
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(r) + " |" for r in body]
    return "\n".join(lines) + "\n"


def sources(profiles: dict[str, Profile]) -> str:
    """Each stack's reason per event, the part a reader needs when two columns disagree."""
    lines = []
    for event in LIFECYCLE_EVENTS:
        for s in STACKS:
            p = profiles.get(s)
            if p is not None and event in p.lifecycle:
                lines.append(f"- {event} · {s}: {p.lifecycle[event].source}")
    return "\n".join(lines) + "\n"


def for_record(record: RunRecord) -> list[list[str]] | None:
    """The table with this run's lifecycle results, or None when the run had no lifecycle tests."""
    if not observed(record):
        return None
    from harness.paths import available_profiles
    from harness.plan.profiles import load_profile

    return table({s: load_profile(s) for s in STACKS if s in available_profiles()}, [record])
