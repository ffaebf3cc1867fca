"""Known issues (``configs/known-issues.yaml``): failures someone has already triaged.

A known issue matches tests by node id glob and/or check id glob (``*`` and ``?``; brackets are
literal), narrowed by environment keys (profile, accel, backend, guest).  What it changes:

- a pass→fail that matches a known issue is reported as *known*, not as a regression;
- for an ``intermittent: true`` issue a fail→pass is reported as *known* too, not as a fix
  (a flaky test passing once proves nothing);
- a fail→pass of a permanent (non-intermittent) known issue is a fix, and the report says its
  entry can go.

The file is a YAML list; each entry is validated like a matrix config, so a
mistake reads ``configs/known-issues.yaml:7: [1].accel: 'tgc' is not one of kvm, tcg (did you mean 'tcg'?)``.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.config import fields as f
from harness.config.yamlpos import Located, load_yaml
from harness.paths import REPO_DIR
from harness.results.schema import TestEntry

DEFAULT_PATH = REPO_DIR / "configs" / "known-issues.yaml"
ENV_KEYS = ("profile", "accel", "backend", "guest")


@functools.lru_cache(maxsize=256)
def _compile(glob: str) -> re.Pattern[str]:
    """``*`` any run of characters, ``?`` one; everything else literal — brackets too, since node ids
    (``test_check[kl-full:aes128kl.roundtrip]``) contain them and fnmatch would read a character class."""
    return re.compile("".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in glob), re.DOTALL)


def glob_match(glob: str, text: str) -> bool:
    return _compile(glob).fullmatch(text) is not None


def _glob(v: Any) -> str:
    if not isinstance(v, str) or not v.strip():
        raise ValueError(f"{v!r} is not a glob (e.g. 'testcases/test_lifecycle.py::*[*:vcpu-hotplug]')")
    return v


def _names(allowed: tuple[str, ...] | None = None) -> f.Parser:
    """One name or a list of names (any of them matches)."""
    as_list = f.string_list(allowed)

    def parse(v: Any) -> tuple[str, ...]:
        if isinstance(v, str):
            v = [v]
        return tuple(as_list(v))
    return parse


def _link(v: Any) -> str:
    if not isinstance(v, str) or not v.startswith(("http://", "https://")):
        raise ValueError(f"{v!r} is not a link (an http:// or https:// URL of the bug)")
    return v


ISSUE_SETTINGS = (
    f.Setting("test", _glob, None, "test node id glob, e.g. 'testcases/test_lifecycle.py::*[kl-full:reboot]'"),
    f.Setting("check", _glob, None, "probe check id glob, e.g. 'integrity.bitflip.*'"),
    f.Setting("guest", _names(), (), "guest name(s) (any of them)"),
    f.Setting("profile", _names(), (), "expectation profile name(s)"),
    f.Setting("accel", _names(("kvm", "tcg")), (), "accelerator(s): kvm, tcg"),
    f.Setting("backend", _names(("native", "emulated")), (), "KL backend(s) of the guest: native, emulated"),
    f.Setting("intermittent", f.boolean, False, "the failure comes and goes: its passes are not fixes"),
    f.Setting("reason", f.string, None, "what is known about it, one line", required=True),
    f.Setting("link", _link, None, "URL of the bug or thread"),
)


@dataclass(frozen=True)
class KnownIssue:
    reason: str
    test: str | None = None
    check: str | None = None
    guest: tuple[str, ...] = ()
    profile: tuple[str, ...] = ()
    accel: tuple[str, ...] = ()
    backend: tuple[str, ...] = ()
    intermittent: bool = False
    link: str | None = None
    where: str = ""  # file:line of the entry

    def matches(self, test: TestEntry, env: Mapping[str, str]) -> bool:
        """Whether this entry covers ``test`` (a run-record entry) run in ``env`` (see ENV_KEYS)."""
        if self.test is not None and not glob_match(self.test, test.nodeid):
            return False
        if self.check is not None and not glob_match(self.check, test.check or ""):
            return False
        for key in ENV_KEYS:
            wanted: tuple[str, ...] = getattr(self, key)
            if wanted and env.get(key, "") not in wanted:
                return False
        return True

    def describe(self) -> str:
        kind = "known intermittent" if self.intermittent else "known issue"
        return f"{kind}: {self.reason}" + (f" ({self.link})" if self.link else "")


@dataclass(frozen=True)
class KnownIssues:
    issues: tuple[KnownIssue, ...] = ()
    source: str = ""

    def match(self, test: TestEntry, env: Mapping[str, str]) -> KnownIssue | None:
        """The first entry covering ``test``, or None."""
        return next((i for i in self.issues if i.matches(test, env)), None)

    def __len__(self) -> int:
        return len(self.issues)


def load_known_issues(path: Path | None = None, *, display: str | None = None,
                      missing_ok: bool = False) -> KnownIssues:
    """Load and validate a known-issues file (ConfigError with file:line: field on mistakes).

    ``missing_ok``: a missing file means no known issues (the default file is optional).
    """
    path = path or DEFAULT_PATH
    if missing_ok and not path.exists():
        return KnownIssues((), str(path))
    doc = load_yaml(path, display=display or _display(path))
    return KnownIssues(tuple(parse_entries(doc)), doc.source)


def parse_entries(doc: Located) -> Iterable[KnownIssue]:
    if not isinstance(doc.data, list):
        raise doc.error((), "expected a list of known issues ('[]' for none; see the example in "
                            "configs/known-issues.yaml)")
    for i, raw in enumerate(doc.data):
        values = f.parse_section(doc, (i,), raw, ISSUE_SETTINGS)
        if values["test"] is None and values["check"] is None:
            raise doc.error((i,), "give 'test' (a node id glob) or 'check' (a check id glob): an entry "
                                  "matching every test would hide every regression")
        yield KnownIssue(where=f"{doc.source}:{doc.line((i,))}", **values)


def _display(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(REPO_DIR))
    except ValueError:
        return str(path)
