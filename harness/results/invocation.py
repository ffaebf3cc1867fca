"""How a run was started, kept in its record so that it can be started again.

Why in the record: ``klharness rerun RESULTS/RUN`` must run the same config, profile, URI and
options as the run that failed, and a reproduce command for one cell must name them, long after
the shell that typed them is gone.  ``klharness run`` hands its invocation to the plugin (the
``pytest_kl_invocation`` hook); ``pytest testcases`` gets one read from pytest's options.

The URI is stored redacted (harness.redact): a rerun of a run whose URI carried a password asks
for it again.  Records written before invocations were recorded have none: their config and
profile are read from the record's header, other options were not kept.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from harness.errors import ConfigError
from harness.paths import REPO_DIR, profile_path
from harness.redact import MASK, redact_uri
from harness.results.schema import RerunOf as RerunOf  # the record's rerun_of, written by the plugin through here
from harness.results.schema import RunRecord


@dataclass(frozen=True)
class Invocation:
    """The options of one run of the catalogue, as a front end gave them."""

    config: str  # the matrix config, absolute
    profile: str | None = None  # --profile as given (None: the config's run.profile)
    uri: str | None = None  # --uri as given (None: the config's run.uri / hosts)
    keep: str | None = None
    results: str | None = None  # results root, absolute (None: the config's run.results)
    keyword: str | None = None  # -k
    tests: tuple[str, ...] = ()  # what to run: paths or node ids (empty: the catalogue, testcases/)
    pytest_args: tuple[str, ...] = ()  # extra pytest arguments (klharness run --pytest-arg)
    rerun_of: RerunOf | None = None
    argv: tuple[str, ...] = ()  # the command line as typed, for people reading the record
    cwd: str = ""
    rootdir: str = ""  # pytest's rootdir: the record's node ids are relative to it

    @property
    def secret_redacted(self) -> bool:
        """The URI lost a password or secret to redaction: it cannot be used again as recorded."""
        return self.uri is not None and MASK in self.uri

    def to_record(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "uri" and value is not None:
                value = redact_uri(value)
            elif f.name == "argv":
                value = [redact_uri(a) if "://" in a else a for a in value]
            elif f.name == "rerun_of":
                continue
            out[f.name] = list(value) if isinstance(value, tuple) else value
        return out

    @classmethod
    def from_record(cls, record: RunRecord, where: str) -> Invocation:
        """The invocation of a loaded record (``where``: the record's path, for error messages)."""
        raw: object = record.invocation
        if raw is None:
            return _from_header(record, where)
        if not isinstance(raw, Mapping):
            raise ConfigError(f"{where}: invocation: expected an object, got {type(raw).__name__} "
                              "(was the record edited? rerun it with klharness run CONFIG --profile P)")
        values: dict[str, Any] = {}
        for f in fields(cls):
            if f.name == "rerun_of" or f.name not in raw:
                continue
            values[f.name] = _field(raw[f.name], f.name, str(f.type), where)
        if "config" not in values or values["config"] is None:
            raise ConfigError(f"{where}: invocation.config: missing (was the record edited? "
                              "rerun it with klharness run CONFIG --profile P)")
        return cls(**values)


def _field(value: Any, name: str, declared: str, where: str) -> Any:
    """One recorded field, checked against its declared type (str, str | None or tuple[str, ...])."""
    if declared.startswith("tuple"):
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return tuple(value)
        what = "a list of strings"
    elif isinstance(value, str) or (value is None and "None" in declared):
        return value
    else:
        what = "a string" + (" or null" if "None" in declared else "")
    raise ConfigError(f"{where}: invocation.{name}: expected {what}, got {value!r} "
                      "(was the record edited? rerun it with klharness run CONFIG --profile P)")


def _from_header(record: RunRecord, where: str) -> Invocation:
    """An older record: the config and profile of its header, the config's own URI and options."""
    config = record.config
    if not config:
        raise ConfigError(f"{where}: the record names no config (neither invocation.config nor config): "
                          "run it again with klharness run CONFIG --profile P")
    path = Path(config)
    if not path.is_absolute():
        path = REPO_DIR / path  # klharness runs from the repository: configs/… is relative to it
    return Invocation(config=str(path), profile=_profile_of(record), rootdir=str(REPO_DIR))


def _profile_of(record: RunRecord) -> str | None:
    """The profile as a name when it came from configs/profiles/, else its file (a private copy)."""
    name, source = record.profile, record.profile_source
    if not name:
        return None
    if not source:
        return name
    path = Path(source) if Path(source).is_absolute() else REPO_DIR / source
    return name if path == profile_path(name) else source
