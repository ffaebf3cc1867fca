"""YAML with positions: plain Python values plus the line of every key and item.

Why: an error must say ``file:line: field``.  PyYAML's composed nodes carry
marks; we walk them once and keep a map from field path to line.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from harness.errors import ConfigError

PathKey = tuple[str | int, ...]


@dataclass
class Located:
    """A loaded document: ``data`` and the 1-based line for each path."""

    source: str
    data: Any
    lines: dict[PathKey, int] = field(default_factory=dict)

    def line(self, path: PathKey) -> int:
        """The line of ``path`` or of its nearest parent."""
        while path:
            if path in self.lines:
                return self.lines[path]
            path = path[:-1]
        return self.lines.get((), 1)

    def error(self, path: PathKey, message: str) -> ConfigError:
        return ConfigError(f"{self.source}:{self.line(path)}: {format_path(path)}: {message}")


def format_path(path: PathKey) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top)"


def load_yaml(path: Path, *, display: str | None = None) -> Located:
    source = display or str(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{source}: no such file (configs live in configs/; see configs/README.md)") from None
    except OSError as err:
        raise ConfigError(f"{source}: cannot read: {err.strerror}") from err
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line = raw[:err.start].count(b"\n") + 1
        raise ConfigError(f"{source}:{line}: not UTF-8 text (byte {raw[err.start]:#04x} at offset {err.start}): "
                          "a config is a YAML text file; save it as UTF-8") from None
    if "\0" in text:
        line = text[:text.index("\0")].count("\n") + 1
        raise ConfigError(f"{source}:{line}: a NUL byte: this is not a text file (a config is YAML text)")
    return load_yaml_text(text, source)


def load_yaml_text(text: str, source: str) -> Located:
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as err:
        line = err.problem_mark.line + 1 if err.problem_mark else 1
        raise ConfigError(f"{source}:{line}: YAML syntax error: {err.problem} "
                          f"(check indentation and quoting near this line)") from err
    except yaml.YAMLError as err:
        raise ConfigError(f"{source}: YAML error: {err}") from err
    doc = Located(source, None)
    if node is None:
        raise ConfigError(f"{source}:1: the file is empty")
    doc.data = _convert(node, (), doc)
    return doc


def _convert(node: yaml.Node, path: PathKey, doc: Located) -> Any:
    doc.lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
            key = _scalar(key_node, doc, path)
            if not isinstance(key, str):
                raise ConfigError(f"{doc.source}:{key_node.start_mark.line + 1}: {format_path(path)}: "
                                  f"key {key!r} must be a string")
            if key in out:
                raise ConfigError(f"{doc.source}:{key_node.start_mark.line + 1}: {format_path((*path, key))}: "
                                  "given twice")
            doc.lines[(*path, key)] = key_node.start_mark.line + 1
            out[key] = _convert(value_node, (*path, key), doc)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_convert(item, (*path, i), doc) for i, item in enumerate(node.value)]
    return _scalar(node, doc, path)


def _scalar(node: yaml.Node, doc: Located, path: PathKey) -> Any:
    try:
        return yaml.constructor.SafeConstructor().construct_object(node, deep=True)
    except yaml.YAMLError as err:
        raise ConfigError(f"{doc.source}:{node.start_mark.line + 1}: {format_path(path)}: {err}") from err
