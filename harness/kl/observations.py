"""The probe's output document as typed, validated objects.

Why strict: everything downstream (verdicts, reports, regression compare)
trusts these objects.  A truncated, malformed or other-version document must
fail here with a message naming the source and the field — never later as a
KeyError in a report.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from harness.errors import ProbeOutputError
from harness.kl.cpuid import KeyLockerCpuid, Regs, decode

SCHEMA = "klharness.probe"
SCHEMA_VERSION = 1
MAX_DOCUMENT_BYTES = 16 * 1024 * 1024
PROVENANCES = frozenset({"native", "emulated", "absent", "advertised-unusable", "trapped"})
# Set by the harness, never by the probe: the probe's native path ran, but the Key Locker that
# executed it is a VMM's emulation (qemu-kl), not silicon.  See with_vmm_provenance.
VMM_PROVENANCE = "vmm"
SIGNALS = frozenset({"SIGILL", "SIGSEGV", "SIGBUS", "SIGFPE", "SIGOTHER"})


class _Reader:
    """Typed access to one JSON object, remembering its path for errors."""

    def __init__(self, data: object, path: str, source: str) -> None:
        if not isinstance(data, dict):
            raise ProbeOutputError(f"{source}: {path or 'document'}: expected an object, got {_kind(data)}")
        self.data: dict[str, Any] = data
        self.path = path
        self.source = source

    def _get(self, key: str) -> object:
        if key not in self.data:
            raise ProbeOutputError(f"{self.source}: {self._at(key)}: missing")
        return self.data[key]

    def _at(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def _fail(self, key: str, want: str, got: object) -> ProbeOutputError:
        return ProbeOutputError(f"{self.source}: {self._at(key)}: expected {want}, got {_kind(got)} {_short(got)}")

    def text(self, key: str) -> str:
        v = self._get(key)
        if not isinstance(v, str):
            raise self._fail(key, "a string", v)
        return v

    def opt_text(self, key: str) -> str | None:
        v = self._get(key)
        if v is None:
            return None
        return self.text(key)

    def integer(self, key: str) -> int:
        v = self._get(key)
        if not isinstance(v, int) or isinstance(v, bool):
            raise self._fail(key, "an integer", v)
        return v

    def opt_integer(self, key: str) -> int | None:
        return None if self._get(key) is None else self.integer(key)

    def number(self, key: str) -> float:
        v = self._get(key)
        if v is None:
            return float("nan")
        if not isinstance(v, int | float) or isinstance(v, bool):
            raise self._fail(key, "a number", v)
        return float(v)

    def flag(self, key: str) -> bool:
        v = self._get(key)
        if not isinstance(v, bool):
            raise self._fail(key, "true or false", v)
        return v

    def obj(self, key: str) -> _Reader:
        return _Reader(self._get(key), self._at(key), self.source)

    def opt_obj(self, key: str) -> _Reader | None:
        return None if self.data.get(key) is None else self.obj(key)

    def items(self, key: str) -> list[object]:
        v = self._get(key)
        if not isinstance(v, list):
            raise self._fail(key, "a list", v)
        return v

    def mapping(self, key: str) -> dict[str, Any]:
        """A free-form object (inputs/outputs); absent means empty."""
        if key not in self.data:
            return {}
        return self.obj(key).data


def _kind(v: object) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean",
            int: "an integer", float: "a number", type(None): "null"}.get(type(v), type(v).__name__)


def _short(v: object) -> str:
    text = json.dumps(v)
    return text if len(text) <= 40 else text[:37] + "..."


@dataclass(frozen=True)
class CpuBlock:
    source: str  # "hardware" or "emulated"
    vendor: str
    hypervisor: bool
    max_leaf: int
    aesni: bool
    leaf7: Regs
    leaf19: Regs | None

    @property
    def kl(self) -> KeyLockerCpuid:
        return decode(self.leaf7.ecx, self.leaf19)


@dataclass(frozen=True)
class Observation:
    """One check's raw result: what ran, on which path, and what happened."""

    id: str
    provenance: str
    op: str
    signal: str | None
    zf: int | None
    rflags: int | None
    inputs: Mapping[str, Any]
    outputs: Mapping[str, Any]
    facts: Mapping[str, bool]

    @property
    def data_unchanged(self) -> bool | None:
        return self.facts.get("data_unchanged")


@dataclass(frozen=True)
class TimingFigure:
    name: str
    provenance: str
    unit: str
    median: float
    p10: float
    p90: float
    min: float
    spread: float
    reps: int
    iters: int


@dataclass(frozen=True)
class Timing:
    pinned: bool
    cpu: int
    tsc_hz: float
    figures: Mapping[str, TimingFigure]
    ratios: Mapping[str, float]
    worst_spread: float
    trustworthy: bool


@dataclass(frozen=True)
class ProbeDocument:
    schema_version: int
    probe_version: str
    backend: str
    backend_reason: str
    kl_usable: bool
    cpl: int
    boot_id: str
    emulator: Mapping[str, Any] | None
    hardware_cpu: CpuBlock
    cpu: CpuBlock
    observations: tuple[Observation, ...]
    timing: Timing | None
    emulator_stats: Mapping[str, int] | None

    def by_id(self) -> dict[str, Observation]:
        return {o.id: o for o in self.observations}


def _regs(r: _Reader) -> Regs:
    return Regs(r.integer("eax"), r.integer("ebx"), r.integer("ecx"), r.integer("edx"))


def _cpu(r: _Reader) -> CpuBlock:
    source = r.text("source")
    if source not in ("hardware", "emulated"):
        raise ProbeOutputError(f"{r.source}: {r.path}.source: {source!r} is neither 'hardware' nor 'emulated'")
    leaf19 = r.opt_obj("leaf19")
    return CpuBlock(source, r.text("vendor"), r.flag("hypervisor"), r.integer("max_leaf"), r.flag("aesni"),
                    _regs(r.obj("leaf7")), _regs(leaf19) if leaf19 else None)


def _observation(r: _Reader) -> Observation:
    prov = r.text("provenance")
    if prov not in PROVENANCES:
        raise ProbeOutputError(f"{r.source}: {r.path}.provenance: {prov!r} is not one of {sorted(PROVENANCES)}")
    signal = r.opt_text("signal")
    if signal is not None and signal not in SIGNALS:
        raise ProbeOutputError(f"{r.source}: {r.path}.signal: unknown signal {signal!r}")
    zf = r.opt_integer("zf")
    if zf not in (None, 0, 1):
        raise ProbeOutputError(f"{r.source}: {r.path}.zf: {zf} is not 0 or 1")
    facts = r.mapping("facts")
    for name, value in facts.items():
        if not isinstance(value, bool):
            raise ProbeOutputError(f"{r.source}: {r.path}.facts.{name}: expected true or false, got {_kind(value)}")
    return Observation(r.text("id"), prov, r.text("op"), signal, zf, r.opt_integer("rflags"),
                       r.mapping("inputs"), r.mapping("outputs"), facts)


def _timing(r: _Reader) -> Timing:
    figs = r.obj("figures")
    figures = {}
    for name in figs.data:
        f = figs.obj(name)
        figures[name] = TimingFigure(name, f.text("provenance"), f.text("unit"), f.number("median"),
                                     f.number("p10"), f.number("p90"), f.number("min"), f.number("spread"),
                                     f.integer("reps"), f.integer("iters"))
    ratios_r = r.obj("ratios")
    ratios = {k: ratios_r.number(k) for k in ratios_r.data}
    return Timing(r.flag("pinned"), r.integer("cpu"), r.number("tsc_hz"), figures, ratios, r.number("worst_spread"),
                  r.flag("trustworthy"))


def parse_probe_output(text: str | bytes, source: str = "probe output") -> ProbeDocument:
    """Parse and validate one probe document; ``source`` names it in errors (a path or guest name)."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    if len(text) > MAX_DOCUMENT_BYTES:
        raise ProbeOutputError(f"{source}: {len(text)} bytes is larger than any probe document "
                               f"({MAX_DOCUMENT_BYTES} bytes max): not probe output?")
    if not text.strip():
        raise ProbeOutputError(f"{source}: empty: the probe printed nothing (did it crash? see its stderr)")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        ends_like_document = text.rstrip().endswith("}")
        hint = "" if ends_like_document else " (truncated: the probe did not finish)"
        raise ProbeOutputError(f"{source}: not valid JSON at line {err.lineno} column {err.colno}: "
                               f"{err.msg}{hint}") from err
    top = _Reader(data, "", source)
    schema = top.text("schema")
    if schema != SCHEMA:
        raise ProbeOutputError(f"{source}: schema: {schema!r} is not {SCHEMA!r}: not a klprobe document")
    version = top.integer("schema_version")
    if version != SCHEMA_VERSION:
        raise ProbeOutputError(f"{source}: schema_version: {version} but this klharness reads version "
                               f"{SCHEMA_VERSION}; rebuild the probe from this checkout (klharness probe build)")
    if data.get("complete") is not True:
        raise ProbeOutputError(f"{source}: complete: missing: the document was cut short")
    backend = top.text("backend")
    if backend not in PROVENANCES:
        raise ProbeOutputError(f"{source}: backend: {backend!r} is not one of {sorted(PROVENANCES)}")
    observations = []
    for i, item in enumerate(top.items("observations")):
        observations.append(_observation(_Reader(item, f"observations[{i}]", source)))
    seen: set[str] = set()
    for obs in observations:
        if obs.id in seen:
            raise ProbeOutputError(f"{source}: observations: id {obs.id!r} appears twice")
        seen.add(obs.id)
    timing_r = top.opt_obj("timing")
    stats = top.opt_obj("emulator_stats")
    emulator = top.opt_obj("emulator")
    return ProbeDocument(
        schema_version=version,
        probe_version=top.text("probe_version"),
        backend=backend,
        backend_reason=top.text("backend_reason"),
        kl_usable=top.flag("kl_usable"),
        cpl=top.integer("cpl"),
        boot_id=top.text("boot_id"),
        emulator=emulator.data if emulator else None,
        hardware_cpu=_cpu(top.obj("hardware_cpu")),
        cpu=_cpu(top.obj("cpu")),
        observations=tuple(observations),
        timing=_timing(timing_r) if timing_r else None,
        emulator_stats={k: stats.integer(k) for k in stats.data} if stats else None,
    )


def with_vmm_provenance(doc: ProbeDocument) -> ProbeDocument:
    """The document of a guest on a Key Locker VMM: every ``native`` result relabelled ``vmm``.

    Why here and not in the probe: inside the guest the instructions are real; only the harness
    knows that the CPU executing them is qemu-kl's TCG.  Results that did not execute Key Locker
    (``absent``, ``advertised-unusable``) keep their label.
    """
    def relabel(p: str) -> str:
        return VMM_PROVENANCE if p == "native" else p

    timing = doc.timing
    if timing is not None:
        timing = replace(timing, figures={k: replace(f, provenance=relabel(f.provenance))
                                          for k, f in timing.figures.items()})
    reason = doc.backend_reason + ("; executed by the VMM (qemu-kl), not silicon" if doc.backend == "native" else "")
    return replace(doc, backend=relabel(doc.backend), backend_reason=reason, timing=timing,
                   observations=tuple(replace(o, provenance=relabel(o.provenance)) for o in doc.observations))
