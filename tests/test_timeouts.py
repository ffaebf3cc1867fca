"""Every timeout is a named field of Timeouts, documented in docs/timeouts.md, and overridable.

Why a guard: a limit written as a number in some module cannot be raised for a slow lab host and is
invisible in the one table people read; it came back before (40 of them were scattered).
"""

from __future__ import annotations

import ast
import dataclasses
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness import timeouts
from harness.paths import PACKAGE_DIR, REPO_DIR
from harness.timeouts import Timeouts

DOC = REPO_DIR / "docs" / "timeouts.md"


def is_number(node: ast.AST | None) -> bool:
    return isinstance(node, ast.Constant) and isinstance(node.value, int | float) and not isinstance(node.value, bool)


def is_limit(name: str) -> bool:
    return any(word in name.lower() for word in ("timeout", "grace", "deadline"))


def numeric_timeouts(tree: ast.AST) -> Iterator[tuple[int, str]]:
    """(line, what) of every limit given as a number: timeout=N (or grace=, deadline=), such a parameter
    defaulting to N, and a constant named *TIMEOUT*, *GRACE* or *_WAIT bound to N."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            for kw in node.keywords:
                if kw.arg and is_limit(kw.arg) and is_number(kw.value):
                    yield node.lineno, f"{kw.arg}={ast.unparse(kw.value)}"
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            args = node.args
            positional = args.posonlyargs + args.args
            pairs = [*zip(positional[len(positional) - len(args.defaults):], args.defaults, strict=True),
                     *((a, d) for a, d in zip(args.kwonlyargs, args.kw_defaults, strict=True) if d is not None)]
            for arg, default in pairs:
                if is_limit(arg.arg) and is_number(default):
                    yield node.lineno, f"parameter {arg.arg}={ast.unparse(default)}"
        elif isinstance(node, ast.Assign):
            for target in node.targets:
                if isinstance(target, ast.Name) and (is_limit(target.id) or target.id.endswith("_WAIT")) \
                        and is_number(node.value):
                    yield node.lineno, f"{target.id} = {ast.unparse(node.value)}"


def test_the_guard_sees_each_form_of_a_numeric_timeout() -> None:
    tree = ast.parse("X_TIMEOUT = 30\nFIRST_WAIT = 1.5\ndef f(a, timeout=5, *, grace=2.5): run(timeout=10)\n"
                     "def g(timeout=None): run(timeout=t.exec, grace=t.stop, count=3)\n")
    assert sorted(what for _, what in numeric_timeouts(tree)) == [
        "FIRST_WAIT = 1.5", "X_TIMEOUT = 30", "parameter grace=2.5", "parameter timeout=5", "timeout=10"]


def test_no_module_waits_on_a_number_of_its_own() -> None:
    found = [f"{path.relative_to(REPO_DIR)}:{line}: {what}"
             for path in sorted(PACKAGE_DIR.rglob("*.py")) if path.name != "timeouts.py"
             for line, what in numeric_timeouts(ast.parse(path.read_text(), str(path)))]
    assert found == [], "name these in harness/timeouts.py (and docs/timeouts.md):\n" + "\n".join(found)


def test_every_field_is_in_the_table_with_its_default() -> None:
    rows = dict(re.findall(r"^\| `(\w+)` \| ([0-9.]+) \|", DOC.read_text(), re.M))
    fields = {f.name: f.default for f in dataclasses.fields(Timeouts)}
    assert set(rows) == set(fields)
    assert {name: float(value) for name, value in rows.items()} == fields


def test_active_applies_the_environment_and_a_session_can_replace_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(timeouts, "_active", None)
    monkeypatch.setenv("KLHARNESS_TIMEOUT_DEBOOTSTRAP", "4000")
    assert timeouts.active().debootstrap == 4000.0
    assert timeouts.active() is timeouts.active()  # read once per process
    mine = Timeouts(vmm_build=7200.0)
    timeouts.use(mine)
    assert timeouts.active() is mine


def test_a_config_section_reaches_the_new_fields(tmp_path: Path) -> None:
    from harness.config import load_config

    cfg = tmp_path / "c.yaml"
    cfg.write_text("timeouts: {helper_build: 1800, tool: 45}\nguests:\n  - name: a\n")
    loaded = load_config(cfg)
    assert (loaded.timeouts.helper_build, loaded.timeouts.tool) == (1800.0, 45.0)
