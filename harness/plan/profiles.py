"""Expectation profiles: what a stack under test must do, as data.

A profile (``configs/profiles/NAME.yaml``) says whether Key Locker can reach
a guest at all on that stack, which provenance KL results must have, which
leaf 0x19 bits must stay hidden, how the VMM answers a host that uses KL,
what each lifecycle event does to a handle, and overrides of the
architectural expectations per check.  Lab users add profiles for their
patched stacks without touching code.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.config import fields as f
from harness.config.model import LIFECYCLE_EVENTS, Config, GuestConfig
from harness.config.yamlpos import Located, load_yaml
from harness.errors import ConfigError
from harness.kl.checks import all_known_check_ids
from harness.kl.spec import ARCHITECTURE, OUTCOMES, Expectation, Rule
from harness.paths import REPO_DIR, available_profiles, profile_path

HANDLE_OUTCOMES = ("valid", "invalid", "refused", "skip")
HIDEABLE_BITS = ("nobackup", "random_keysource")


# Guest properties a lifecycle expectation may depend on: the profile gives the event's
# expectation, and one of its own for guests that have the property (the first that applies wins).
GUEST_CONDITIONS: dict[str, Callable[[GuestConfig], bool]] = {
    "random_keysource": lambda g: g.kl.random_keysource,
    "migration_blocker": lambda g: g.kl.migration_blocker,
    # klhelper loaded with restore=0: nothing restores the IWKey on a new or resumed CPU
    "no_helper_restore": lambda g: "restore=0" in g.helper_params,
}


@dataclass(frozen=True)
class LifecycleExpectation:
    handle: str   # valid | invalid | refused | skip
    source: str
    reason: str = ""  # for skip/refused: why
    overrides: tuple[tuple[str, LifecycleExpectation], ...] = ()  # (condition, expectation), see GUEST_CONDITIONS

    def for_guest(self, guest: GuestConfig) -> LifecycleExpectation:
        for condition, expectation in self.overrides:
            if GUEST_CONDITIONS[condition](guest):
                return expectation
        return self


@dataclass(frozen=True)
class Profile:
    name: str
    source: str
    description: str
    kl_exposure: str            # possible | impossible
    impossible_reason: str
    provenance: str             # emulated | native | vmm: what KL-on results must be
    host_uses_kl: str           # refuse | allow
    hidden_bits: tuple[str, ...]
    random_keysource: str       # forbid | allow
    rules: tuple[Rule, ...]     # overrides first, then the architecture
    lifecycle: dict[str, LifecycleExpectation]

    def expectation(self, check_id: str) -> Expectation | None:
        for rule in self.rules:
            if fnmatch.fnmatchcase(check_id, rule.pattern):
                return rule.expect
        return None


PROFILE_SETTINGS = (
    f.Setting("name", f.string, None, "profile name (the file name without .yaml)", required=True),
    f.Setting("description", f.string, "", "what stack this profile describes"),
    f.Setting("kl_exposure", f.choice("possible", "impossible"), "possible", "can KL reach a guest at all"),
    f.Setting("impossible_reason", f.string, "", "why not (the skip reason of KL-on cells)"),
    f.Setting("provenance", f.choice("emulated", "native", "vmm"), "emulated",
              "provenance KL results must have (vmm: executed by qemu-kl, never silicon)"),
    f.Setting("host_uses_kl", f.choice("refuse", "allow"), "refuse", "VMM answer when the host kernel uses KL"),
    f.Setting("hidden_bits", f.string_list(HIDEABLE_BITS), HIDEABLE_BITS, "leaf 0x19 ECX bits never shown"),
    f.Setting("random_keysource", f.choice("forbid", "allow"), "forbid", "may a config expose random KeySource"),
    f.Setting("checks", lambda v: v, [], "overrides of the architectural expectations"),
    f.Setting("lifecycle", lambda v: v, {}, "per event: what happens to a handle made before it"),
)
RULE_SETTINGS = (
    f.Setting("pattern", f.string, None, "glob over check ids", required=True),
    f.Setting("outcome", f.choice(*sorted(OUTCOMES)), None, "ok, zf1, SIGILL, SIGSEGV or any", required=True),
    f.Setting("facts", lambda v: v, {}, "facts that must have these values"),
    f.Setting("all_facts", f.boolean, False, "every reported fact must be true"),
    f.Setting("source", f.string, None, "where this expectation comes from", required=True),
)
OUTCOME_SETTINGS = (
    f.Setting("handle", f.choice(*HANDLE_OUTCOMES), None, "valid, invalid, refused or skip", required=True),
    f.Setting("source", f.string, None, "where this expectation comes from", required=True),
    f.Setting("reason", f.string, "", "why (for skip or refused)"),
)
EVENT_SETTINGS = (
    *OUTCOME_SETTINGS,
    f.Setting("random_keysource", lambda v: v, None, "the expectation for guests with a random KeySource"),
    f.Setting("migration_blocker", lambda v: v, None, "the expectation for guests with kl.migration_blocker"),
    f.Setting("no_helper_restore", lambda v: v, None,
              "the expectation for guests whose klhelper does not restore the IWKey (helper params restore=0)"),
)


def load_profile(name_or_path: str | Path) -> Profile:
    path = Path(name_or_path)
    if path.suffix != ".yaml":
        path = profile_path(str(name_or_path))
        if not path.exists():
            raise ConfigError(f"profile {name_or_path!r}: no {path.relative_to(REPO_DIR)} "
                              f"(available: {', '.join(available_profiles())})")
    doc = load_yaml(path, display=_display(path))
    raw = f.parse_section(doc, (), doc.data, PROFILE_SETTINGS)
    if raw["name"] != path.stem:
        raise doc.error(("name",), f"{raw['name']!r} differs from the file name {path.stem!r}")
    if raw["kl_exposure"] == "impossible" and not raw["impossible_reason"]:
        raise doc.error(("impossible_reason",), "kl_exposure: impossible needs impossible_reason (the skip reason)")
    rules = _rules(doc, raw["checks"])
    lifecycle = _lifecycle(doc, raw["lifecycle"])
    return Profile(raw["name"], doc.source, raw["description"], raw["kl_exposure"], raw["impossible_reason"],
                   raw["provenance"], raw["host_uses_kl"], raw["hidden_bits"], raw["random_keysource"],
                   (*rules, *ARCHITECTURE), lifecycle)


def _display(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(REPO_DIR))
    except ValueError:
        return str(path)


def _rules(doc: Located, raw: Any) -> tuple[Rule, ...]:
    if not isinstance(raw, list):
        raise doc.error(("checks",), "expected a list of {pattern, outcome, source} entries")
    known = all_known_check_ids()
    rules = []
    for i, item in enumerate(raw):
        r = f.parse_section(doc, ("checks", i), item, RULE_SETTINGS)
        if not any(fnmatch.fnmatchcase(k, r["pattern"]) for k in known):
            raise doc.error(("checks", i, "pattern"), f"{r['pattern']!r} matches no check the probe emits "
                            "(see docs/probe.md for the check ids)")
        facts = r["facts"]
        if not isinstance(facts, dict) or not all(isinstance(v, bool) for v in facts.values()):
            raise doc.error(("checks", i, "facts"), "expected a mapping of fact name -> true/false")
        rules.append(Rule(r["pattern"], Expectation(r["outcome"], facts, r["all_facts"], r["source"])))
    return tuple(rules)


def _lifecycle(doc: Located, raw: Any) -> dict[str, LifecycleExpectation]:
    if not isinstance(raw, dict):
        raise doc.error(("lifecycle",), "expected a mapping of event -> {handle, source}")
    out = {}
    for event, item in raw.items():
        if event not in LIFECYCLE_EVENTS:
            raise doc.error(("lifecycle", event), f"unknown event (known: {', '.join(LIFECYCLE_EVENTS)})")
        e = f.parse_section(doc, ("lifecycle", event), item, EVENT_SETTINGS)
        overrides = []
        for condition in GUEST_CONDITIONS:
            if e[condition] is not None:
                r = f.parse_section(doc, ("lifecycle", event, condition), e[condition], OUTCOME_SETTINGS)
                overrides.append((condition, LifecycleExpectation(r["handle"], r["source"], r["reason"])))
        out[event] = LifecycleExpectation(e["handle"], e["source"], e["reason"], tuple(overrides))
    return out


def check_config(config: Config, profile: Profile) -> None:
    """Combinations of a config and a profile that cannot be run (ConfigError naming the config line)."""
    for g in config.guests:
        if g.kl.random_keysource and (profile.random_keysource == "forbid" or "random_keysource" in
                                      profile.hidden_bits):
            raise ConfigError(f"{config.source}:{g.line}: guests[{g.name}].kl.random_keysource: profile "
                              f"{profile.name!r} forbids exposing a hardware-random KeySource to guests "
                              f"({profile.source}); drop it or use a profile that allows it (emulated-random)")
        if g.kl.nobackup and "nobackup" in profile.hidden_bits:
            raise ConfigError(f"{config.source}:{g.line}: guests[{g.name}].kl.nobackup: profile {profile.name!r} "
                              f"hides LOADIWKEY NoBackup from guests ({profile.source}); drop it")
    for event in config.lifecycle:
        if event not in profile.lifecycle:
            raise ConfigError(f"{config.source}: lifecycle: {event!r} has no expectation in profile "
                              f"{profile.name!r} ({profile.source}); add it there or drop the event")
