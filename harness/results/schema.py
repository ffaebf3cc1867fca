"""The run record's schema: typed, frozen views of ``record.json`` for everything that reads it.

Why typed: a report, a comparison, ``klharness rerun`` and the summary after a run all read the
same record; with plain dicts each reader guessed the shape (``t.get("outcome")``) and a record
edited by hand, or written by another klharness, failed far from its cause.  Here every field is
declared once (its JSON kind, whether the writer always writes it), and :meth:`RunRecord.from_json`
checks each one, so a bad record fails on load with the file, the field and what was expected::

    results/r1/record.json: tests[3].outcome: expected one of passed, failed, skipped, error, got 'pass'

Lossless on purpose: ``RunRecord.from_json(d, source=p).to_json() == d`` for every record a klharness
of this schema version wrote.  Keys the schema does not type are kept in each object's ``extra``;
optional fields the record holds as JSON null (rather than leaving them out) are named in ``nulls``.
Nested free-form payloads — the probe document, a test's observation and expectation, the host's
facts, timings — stay plain JSON values (dicts, lists), shared with the loaded document, not copied.

The writer (:class:`harness.results.record.RunRecorder`) still builds the record as a dict; a
:class:`TestEntry` built from keyword arguments gives the same JSON through :meth:`TestEntry.to_json`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar, Self

from harness.errors import HostError

SCHEMA = "klharness.run"
SCHEMA_VERSION = 1

OUTCOMES = ("passed", "failed", "skipped", "error")  # a test's outcome: pytest's three, and error in setup
FAILING = frozenset({"failed", "error"})  # test outcomes that need attention (a rerun --failed repeats them)

HINT = "(was the record edited, or written by another klharness?)"


# -- the kinds of JSON value a field holds -------------------------------------------------------------------

@dataclass(frozen=True)
class Kind:
    """What a field holds in JSON: checked on load, turned into its typed value and back."""

    expected: str  # for the error message: "a string"
    accepts: Callable[[object], bool]
    load: Callable[[Any, str, str], Any] = lambda value, source, where: value  # (value, source, path)
    dump: Callable[[Any], Any] = lambda value: value


def _number(v: object) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


STRING = Kind("a string", lambda v: isinstance(v, str))
NUMBER = Kind("a number", _number)
INTEGER = Kind("an integer", lambda v: isinstance(v, int) and not isinstance(v, bool))
BOOLEAN = Kind("true or false", lambda v: isinstance(v, bool))
OBJECT = Kind("an object", lambda v: isinstance(v, dict))
ANY = Kind("any JSON value", lambda v: True)
NUMBERS = Kind("an object of numbers (seconds)", lambda v: isinstance(v, dict) and all(map(_number, v.values())))
NAMES = Kind("an object of strings", lambda v: isinstance(v, dict) and all(isinstance(x, str) for x in v.values()))
STRINGS = Kind("a list of strings", lambda v: isinstance(v, list) and all(isinstance(x, str) for x in v),
               load=lambda v, source, where: tuple(v), dump=list)
OUTCOME = Kind("one of " + ", ".join(OUTCOMES), lambda v: v in OUTCOMES)
PROBE = Kind("the probe's JSON document or its raw output (a string)", lambda v: isinstance(v, dict | str))


def _field(kind: Kind, *, required: bool = False) -> dict[str, Any]:
    """A field's metadata: its kind, and whether every record has it (``required``: missing is an error)."""
    return {"kind": kind, "required": required}


def _path(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def _shown(value: object) -> str:
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "a list"
    text = "null" if value is None else repr(value)
    return text if len(text) <= 80 else text[:79] + "…"


# -- the shared reading and writing of one JSON object --------------------------------------------------------

@dataclass(frozen=True, repr=False)
class _Object:
    """One object of the record: its declared fields, the keys it does not type (``extra``), and which of
    its optional fields the record writes as null (``nulls``) instead of leaving them out."""

    extra: Mapping[str, Any] = field(default_factory=dict, kw_only=True)
    nulls: frozenset[str] = field(default=frozenset(), kw_only=True)

    RESERVED: ClassVar[frozenset[str]] = frozenset()  # keys to_json writes that are no field

    def __post_init__(self) -> None:
        clash = set(self.extra) & ({f.name for f in _declared(self)} | self.RESERVED)
        if clash:
            raise ValueError(f"extra keys {sorted(clash)} are fields of {type(self).__name__}: set the fields")

    @classmethod
    def from_json(cls, data: object, *, source: Path | str, where: str = "") -> Self:
        """The typed object of ``data``; HostError naming ``source``, the field (``where`` is its path in the
        record, e.g. ``tests[3]``) and what was expected, when a field has the wrong kind or is missing."""
        if not isinstance(data, dict):
            raise HostError(f"{source}: {where or '(top)'}: expected an object, got {_shown(data)} {HINT}")
        values: dict[str, Any] = {}
        nulls = set()
        for f in _declared(cls):
            kind: Kind = f.metadata["kind"]
            path = _path(where, f.name)
            if f.name not in data:
                if f.metadata["required"]:
                    raise HostError(f"{source}: {path}: missing {HINT}")
                continue
            value = data[f.name]
            if value is None and not f.metadata["required"]:
                nulls.add(f.name)
            elif not kind.accepts(value):
                raise HostError(f"{source}: {path}: expected {kind.expected}, got {_shown(value)} {HINT}")
            else:
                values[f.name] = kind.load(value, str(source), path)
        known = {f.name for f in _declared(cls)} | cls.RESERVED
        extra = {k: v for k, v in data.items() if k not in known}
        return cls(**values, extra=extra, nulls=frozenset(nulls))

    def __repr__(self) -> str:
        """The declared fields, then the keys this schema does not type (when there are any)."""
        parts = [f"{f.name}={getattr(self, f.name)!r}" for f in _declared(self)]
        if self.extra:
            parts.append(f"extra={self.extra!r}")
        return f"{type(self).__name__}({', '.join(parts)})"

    def to_json(self) -> dict[str, Any]:
        """The object as the record holds it (``from_json`` of it gives this object back)."""
        out: dict[str, Any] = {}
        for f in _declared(self):
            value = getattr(self, f.name)
            if value is not None:
                out[f.name] = f.metadata["kind"].dump(value)
            elif f.name in self.nulls:
                out[f.name] = None
        out.update(self.extra)
        return out


def _declared(obj: _Object | type[_Object]) -> list[Any]:
    """The fields that are keys of the JSON object (not ``extra`` and ``nulls``)."""
    return [f for f in fields(obj) if "kind" in f.metadata]


def _nested(cls: type[_Object]) -> Kind:
    return Kind("an object", lambda v: isinstance(v, dict),
                load=lambda v, source, where: cls.from_json(v, source=source, where=where),
                dump=lambda v: v.to_json())


# -- the objects --------------------------------------------------------------------------------------------

@dataclass(frozen=True, repr=False)
class Verdict(_Object):
    """A test's judged verdict, as the test recorded it (``kl_record``): the record's reason comes from it."""

    passed: bool = field(metadata=_field(BOOLEAN, required=True))
    reasons: tuple[str, ...] = field(default=(), metadata=_field(STRINGS, required=True))


@dataclass(frozen=True, repr=False)
class RerunOf(_Object):
    """The run a rerun repeats (``klharness rerun``)."""

    run_id: str = field(metadata=_field(STRING, required=True))
    record: str = field(metadata=_field(STRING, required=True))  # where its record was read from
    failed_only: bool = field(metadata=_field(BOOLEAN, required=True))  # only its failed and errored cells

    def to_record(self) -> dict[str, Any]:
        return self.to_json()


@dataclass(frozen=True, repr=False)
class TestEntry(_Object):
    """One test cell of the run: its place in the matrix, its outcome, and what it observed and expected."""

    __test__: ClassVar[bool] = False  # not a pytest test class, whatever its name

    nodeid: str = field(metadata=_field(STRING, required=True))
    test: str = field(metadata=_field(STRING, required=True))  # the test function
    guest: str = field(metadata=_field(STRING, required=True))  # the guest plan it ran on
    outcome: str = field(metadata=_field(OUTCOME, required=True))
    check: str | None = field(default=None, metadata=_field(STRING))  # the probe check id, for a check cell
    event: str | None = field(default=None, metadata=_field(STRING))  # the lifecycle event, for an event cell
    duration: float | None = field(default=None, metadata=_field(NUMBER))  # seconds
    finished: float | None = field(default=None, metadata=_field(NUMBER))  # epoch seconds
    reason: str | None = field(default=None, metadata=_field(STRING))  # why it failed or was skipped, one line
    infrastructure: str | None = field(default=None, metadata=_field(STRING))  # the error class, when the host broke
    verdict: Verdict | None = field(default=None, metadata=_field(_nested(Verdict)))
    observation: Any = field(default=None, metadata=_field(ANY))
    expectation: Any = field(default=None, metadata=_field(ANY))
    source: str | None = field(default=None, metadata=_field(STRING))  # where the expectation comes from
    provenance: str | None = field(default=None, metadata=_field(STRING))  # native, vmm, emulated, …
    timings: Mapping[str, Any] | None = field(default=None, metadata=_field(OBJECT))
    helper: Mapping[str, Any] | None = field(default=None, metadata=_field(OBJECT))  # klhelper's cycle counts
    # The plugin writes check and event even when the cell has none (null).
    nulls: frozenset[str] = field(default=frozenset({"check", "event"}), kw_only=True)


@dataclass(frozen=True, repr=False)
class GuestEntry(_Object):
    """One booted guest (a pooled guest, or a lifecycle test's own ``<guest>-<event>``)."""

    plan: str | None = field(default=None, metadata=_field(STRING))  # the guest plan it boots
    domain: str | None = field(default=None, metadata=_field(STRING))
    backend: str | None = field(default=None, metadata=_field(STRING))  # its Key Locker backend
    host: str | None = field(default=None, metadata=_field(STRING))  # the host it ran on (hosts:)
    spec_key: str | None = field(default=None, metadata=_field(STRING))
    accel: str | None = field(default=None, metadata=_field(STRING))
    image: str | None = field(default=None, metadata=_field(STRING))  # the image's content key
    kernel: str | None = field(default=None, metadata=_field(STRING))  # the kernel it booted: release (whose)
    timings: Mapping[str, float] | None = field(default=None, metadata=_field(NUMBERS))  # boot phases, seconds
    helper: str | None = field(default=None, metadata=_field(STRING))  # what loading klhelper did
    helper_timings: Mapping[str, Any] | None = field(default=None, metadata=_field(OBJECT))
    vmm: str | None = field(default=None, metadata=_field(STRING))
    artifacts: str | None = field(default=None, metadata=_field(STRING))  # its directory at run time
    probe: Mapping[str, Any] | str | None = field(default=None, metadata=_field(PROBE))
    probe_seconds: float | None = field(default=None, metadata=_field(NUMBER))
    kept: bool | None = field(default=None, metadata=_field(BOOLEAN))  # its domain, disk and artifacts kept


NO_GUEST = GuestEntry()  # what the record says of a guest it has no entry for: nothing

TESTS = Kind("a list of test entries", lambda v: isinstance(v, list),
             load=lambda v, source, where: tuple(TestEntry.from_json(t, source=source, where=f"{where}[{i}]")
                                                 for i, t in enumerate(v)),
             dump=lambda v: [t.to_json() for t in v])
GUESTS = Kind("an object of guest entries", lambda v: isinstance(v, dict),
              load=lambda v, source, where: {name: GuestEntry.from_json(g, source=source, where=f"{where}[{name!r}]")
                                             for name, g in v.items()},
              dump=lambda v: {name: g.to_json() for name, g in v.items()})


@dataclass(frozen=True, repr=False)
class RunRecord(_Object):
    """One run: its header, its guests, its tests, and what the run learnt of its hosts."""

    SCHEMA: ClassVar[str] = SCHEMA
    SCHEMA_VERSION: ClassVar[int] = SCHEMA_VERSION
    RESERVED: ClassVar[frozenset[str]] = frozenset({"schema", "schema_version"})

    run_id: str = field(metadata=_field(STRING, required=True))
    started: str | None = field(default=None, metadata=_field(STRING))  # %Y-%m-%dT%H:%M:%S%z
    finished: str | None = field(default=None, metadata=_field(STRING))  # null while it runs
    status: str = field(default="running", metadata=_field(STRING, required=True))  # running, complete, …
    pid: int | None = field(default=None, metadata=_field(INTEGER))
    config: str | None = field(default=None, metadata=_field(STRING))
    profile: str | None = field(default=None, metadata=_field(STRING))
    profile_source: str | None = field(default=None, metadata=_field(STRING))
    uri: str | None = field(default=None, metadata=_field(STRING))  # redacted
    guests: Mapping[str, GuestEntry] = field(default_factory=dict, metadata=_field(GUESTS, required=True))
    tests: tuple[TestEntry, ...] = field(default=(), metadata=_field(TESTS, required=True))
    invocation: Mapping[str, Any] | None = field(default=None, metadata=_field(OBJECT))  # Invocation.from_record
    rerun_of: RerunOf | None = field(default=None, metadata=_field(_nested(RerunOf)))
    host: Mapping[str, Any] | None = field(default=None, metadata=_field(OBJECT))  # the first host's facts
    other_hosts: Mapping[str, Any] | None = field(default=None, metadata=_field(OBJECT))
    reaped: tuple[str, ...] | None = field(default=None, metadata=_field(STRINGS))
    placement: Mapping[str, str] | None = field(default=None, metadata=_field(NAMES))  # guest -> host
    unplaced: Mapping[str, str] | None = field(default=None, metadata=_field(NAMES))  # guest -> why not
    hosts_down: Mapping[str, str] | None = field(default=None, metadata=_field(NAMES))  # host -> why unreachable
    timings: Mapping[str, Any] | None = field(default=None, metadata=_field(OBJECT))
    images: Mapping[str, Any] | None = field(default=None, metadata=_field(OBJECT))  # name -> key, seconds
    staged_images: Mapping[str, float] | None = field(default=None, metadata=_field(NUMBERS))
    teardown_errors: tuple[str, ...] | None = field(default=None, metadata=_field(STRINGS))
    # RunRecorder writes finished as null until the run ends.
    nulls: frozenset[str] = field(default=frozenset({"finished"}), kw_only=True)

    @classmethod
    def from_json(cls, data: object, *, source: Path | str, where: str = "") -> Self:
        """The record of ``data``, read from ``source``: another schema or version is refused by name."""
        if not isinstance(data, dict) or data.get("schema") != SCHEMA:
            raise HostError(f"{source}: not a klharness run record (schema {SCHEMA!r} expected)")
        version = data.get("schema_version")
        if version != SCHEMA_VERSION or isinstance(version, bool):
            newer = isinstance(version, int | float) and not isinstance(version, bool) and version > SCHEMA_VERSION
            raise HostError(f"{source}: run record schema version {_shown(version)}: this klharness reads "
                            f"version {SCHEMA_VERSION} only (" + ("a newer klharness wrote it: read it with that "
                            "one, or update klharness)" if newer else "read it with the klharness that wrote it)"))
        return super().from_json(data, source=source, where=where)

    def to_json(self) -> dict[str, Any]:
        return {"schema": SCHEMA, "schema_version": SCHEMA_VERSION, **super().to_json()}

    def guest(self, name: str) -> GuestEntry:
        """The entry of guest ``name``, or an empty one when the record has none."""
        return self.guests.get(name, NO_GUEST)


def failing(test: TestEntry) -> bool:
    """Whether the test needs attention: it failed, or errored in setup."""
    return test.outcome in FAILING
