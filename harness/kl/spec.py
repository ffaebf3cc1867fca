"""What the architecture says each probe check must observe, and the judge.

Why data: a verdict is "this observation against this expectation", and the
expectation has a source (a KEYLOCKER.md section).  Stack profiles (e.g.
stock-kvm, kvm-kl-rfc) override entries of this table; the probe never
changes.  Patterns are fnmatch globs over check ids; the first match wins.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from harness.kl.observations import Observation

# Outcomes an expectation can demand.
OUTCOMES = frozenset({"ok", "zf1", "SIGILL", "SIGSEGV", "any"})


@dataclass(frozen=True)
class Expectation:
    """``outcome``: ok = completed with ZF=0; zf1 = completed with ZF=1; a signal name; any.
    ``facts``: named facts that must have these values; ``all_facts``: every fact reported must be true."""

    outcome: str
    facts: Mapping[str, bool] = field(default_factory=dict)
    all_facts: bool = False
    source: str = ""

    def __post_init__(self) -> None:
        if self.outcome not in OUTCOMES:
            raise ValueError(f"outcome {self.outcome!r} is not one of {sorted(OUTCOMES)}")


@dataclass(frozen=True)
class Rule:
    pattern: str
    expect: Expectation


@dataclass(frozen=True)
class Verdict:
    check_id: str
    passed: bool
    reasons: tuple[str, ...]
    expectation: Expectation | None

    @property
    def status(self) -> str:
        return "pass" if self.passed else "fail"


def _r(pattern: str, outcome: str, source: str, *, all_facts: bool = False, **facts: bool) -> Rule:
    return Rule(pattern, Expectation(outcome, dict(facts), all_facts, source))


# The architecture (SDM pseudo-code as summarised in KEYLOCKER.md).
ARCHITECTURE: tuple[Rule, ...] = (
    _r("encodekey*.restrictions.r*", "ok", "KEYLOCKER.md §3 ENCODEKEY, handle layout", all_facts=True),
    _r("encodekey*.src_reserved", "SIGSEGV", "KEYLOCKER.md §3 ENCODEKEY: SRC[31:3] != 0 -> #GP(0)"),
    _r("encodekey*.unsupported_restriction", "SIGSEGV",
       "KEYLOCKER.md §3 ENCODEKEY: restriction bit without CPUID.19H:EAX support -> #GP(0)"),
    _r("encodekey128.determinism.*", "ok", "KEYLOCKER.md §3 ENCODEKEY is deterministic per IWKey", equal=True),
    _r("*.fips197_*", "ok", "KEYLOCKER.md §8 known answers (FIPS-197)", all_facts=True),
    _r("aes*kl.roundtrip", "ok", "KEYLOCKER.md §3 AES*KL step 4: standard AES", all_facts=True),
    _r("*.lanes", "ok", "KEYLOCKER.md §3 WIDE: XMM0-7 in place, standard AES", all_facts=True),
    _r("restrict.*_rejected", "zf1", "KEYLOCKER.md §3 AES*KL step 2: restriction -> ZF=1, data unchanged",
       all_facts=True),
    _r("restrict.*_allowed", "ok", "KEYLOCKER.md §3 AES*KL: the other direction is allowed",
       other_flags_cleared=True),
    _r("integrity.bitflip.*", "ok", "KEYLOCKER.md §3 step 3 / §4: any change to a handle fails authentication",
       all_facts=True),
    _r("integrity.*", "zf1", "KEYLOCKER.md §3 AES*KL step 2: reserved AAD bit / key type mismatch -> ZF=1",
       all_facts=True),
    _r("loadiwkey.user", "SIGSEGV", "KEYLOCKER.md §3 LOADIWKEY: CPL>0 -> #GP(0)"),
    _r("wide_absent.*", "SIGILL", "KEYLOCKER.md §3: WIDE forms #UD when CPUID.19H:EBX[2]=0"),
    _r("ud.*", "SIGILL", "KEYLOCKER.md §3/§6: KL absent or unusable -> every KL instruction #UD"),
    _r("handle.check", "ok", "KEYLOCKER.md §1: a handle works while the same IWKey is loaded", handle_valid=True),
)


def find_expectation(check_id: str, rules: Iterable[Rule] = ARCHITECTURE) -> Expectation | None:
    for rule in rules:
        if fnmatch.fnmatchcase(check_id, rule.pattern):
            return rule.expect
    return None


def _outcome_of(obs: Observation) -> str:
    if obs.signal:
        return obs.signal
    return "zf1" if obs.zf == 1 else "ok"


def judge(obs: Observation, expect: Expectation | None) -> Verdict:
    """Compare one observation with one expectation; reasons say what differed, in words."""
    if expect is None:
        return Verdict(obs.id, False, (f"no expectation for check {obs.id!r} (unknown to this klharness)",), None)
    reasons: list[str] = []
    got = _outcome_of(obs)
    if expect.outcome != "any" and got != expect.outcome:
        reasons.append(f"expected {_describe(expect.outcome)}, observed {_describe(got)}")
    if got == expect.outcome or expect.outcome == "any":
        for name, want in expect.facts.items():
            have = obs.facts.get(name)
            if have is None:
                reasons.append(f"fact {name!r} not reported")
            elif have != want:
                reasons.append(f"{name} is {str(have).lower()}, expected {str(want).lower()}")
        if expect.all_facts:
            reasons.extend(f"{name} is false" for name, value in obs.facts.items()
                           if value is False and name not in expect.facts)
    return Verdict(obs.id, not reasons, tuple(reasons), expect)


def _describe(outcome: str) -> str:
    return {"ok": "success (ZF=0)", "zf1": "rejection (ZF=1)"}.get(outcome, outcome)


def judge_all(observations: Iterable[Observation], rules: Iterable[Rule] = ARCHITECTURE) -> list[Verdict]:
    rules = tuple(rules)
    return [judge(obs, find_expectation(obs.id, rules)) for obs in observations]
