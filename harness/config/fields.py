"""Declared settings: each key of each section is declared once (type, default,
help), and that declaration drives parsing, "did you mean" and the docs.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from harness.config.yamlpos import Located, PathKey

Parser = Callable[[Any], Any]  # raises ValueError with the fix in its message


@dataclass(frozen=True)
class Setting:
    key: str
    parse: Parser
    default: Any
    help: str
    required: bool = False


def model_default(model: type, attr: str) -> Any:
    """The default of ``model.attr`` as the dataclass declares it (its default, or its factory's value)."""
    for fl in dataclasses.fields(model):
        if fl.name == attr:
            if fl.default is not dataclasses.MISSING:
                return fl.default
            if fl.default_factory is not dataclasses.MISSING:
                return fl.default_factory()
            raise ValueError(f"{model.__name__}.{attr} has no default: declare the setting required")
    raise ValueError(f"{model.__name__} has no field {attr!r}")


def of(model: type, key: str, parse: Parser, help: str, *, attr: str | None = None) -> Setting:
    """A setting whose default is the model's own, so each default is declared once (in config/model.py)."""
    return Setting(key, parse, model_default(model, attr or key), help)


def parse_section(doc: Located, path: PathKey, raw: Any, settings: Sequence[Setting]) -> dict[str, Any]:
    """Validate one mapping against its declared settings; returns key -> parsed value."""
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        raise doc.error(path, f"expected a mapping of settings, got {_kind(raw)}")
    known = {s.key: s for s in settings}
    for key in raw:
        if key not in known:
            close = difflib.get_close_matches(key, known, n=1)
            hint = f"did you mean {close[0]!r}?" if close else f"known: {', '.join(known)}"
            raise doc.error((*path, key), f"unknown setting ({hint})")
    out: dict[str, Any] = {}
    for s in settings:
        if s.key not in raw:
            if s.required:
                raise doc.error(path, f"missing required setting {s.key!r} ({s.help})")
            out[s.key] = s.default
            continue
        try:
            out[s.key] = s.parse(raw[s.key])
        except ValueError as err:
            raise doc.error((*path, s.key), str(err)) from None
    return out


def _kind(v: object) -> str:
    return {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean", int: "a number",
            float: "a number", type(None): "nothing"}.get(type(v), type(v).__name__)


# ---- value parsers: each raises ValueError saying what is accepted ----------

def boolean(v: Any) -> bool:
    if not isinstance(v, bool):
        raise ValueError(f"{v!r} is not true or false")
    return v


def string(v: Any) -> str:
    if not isinstance(v, str) or not v:
        raise ValueError(f"{v!r} is not a non-empty string")
    return v


def choice(*options: str) -> Parser:
    def parse(v: Any) -> str:
        if v not in options:
            close = difflib.get_close_matches(str(v), options, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ValueError(f"{v!r} is not one of {', '.join(options)}{hint}")
        return str(v)
    return parse


def integer(lo: int, hi: int) -> Parser:
    def parse(v: Any) -> int:
        if not isinstance(v, int) or isinstance(v, bool) or not lo <= v <= hi:
            raise ValueError(f"{v!r} is not a whole number from {lo} to {hi}")
        return v
    return parse


def positive_seconds(v: Any) -> float:
    if not isinstance(v, int | float) or isinstance(v, bool) or v <= 0:
        raise ValueError(f"{v!r} is not a positive number of seconds")
    return float(v)


_SIZE_RE = re.compile(r"^(\d+)\s*([KMGT]?)i?B?$", re.IGNORECASE)
_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def size_mib(lo: int, hi: int) -> Parser:
    """Memory sizes: ``512M``, ``2G``, ``1024`` (MiB)."""
    def parse(v: Any) -> int:
        if isinstance(v, int) and not isinstance(v, bool):
            mib = v
        else:
            m = _SIZE_RE.match(str(v).strip()) if isinstance(v, str) else None
            if not m or " " in str(v):
                raise ValueError(f"{v!r} is not a size (use 2G or 2048M)")
            bytes_ = int(m.group(1)) * _UNITS[m.group(2).upper()]
            if m.group(2) == "":
                bytes_ *= 1 << 20  # a bare number means MiB
            mib = bytes_ >> 20
        if not lo <= mib <= hi:
            raise ValueError(f"{v!r} is out of range ({lo}M to {hi // 1024}G)")
        return mib
    return parse


def string_list(allowed: Sequence[str] | None = None) -> Parser:
    def parse(v: Any) -> tuple[str, ...]:
        if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
            raise ValueError(f"{v!r} is not a list of names")
        if allowed is not None:
            for x in v:
                if x not in allowed:
                    close = difflib.get_close_matches(x, allowed, n=1)
                    hint = f"did you mean {close[0]!r}? " if close else ""
                    raise ValueError(f"{x!r} is not one of {', '.join(allowed)} ({hint}fix the list)")
        if len(set(v)) != len(v):
            raise ValueError(f"{v!r} names an item twice")
        return tuple(v)
    return parse
