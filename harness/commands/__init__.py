"""Sub-commands of ``klharness``: one module each, exposing ``register(subparsers)``.

A module's ``register`` adds its parser and sets ``func`` to a callable taking
the parsed namespace and returning an exit code.
"""

from __future__ import annotations

import importlib
from types import ModuleType

# Order is the order shown in --help.
COMMAND_MODULES = ("probe", "image", "vmm", "vectors", "run", "rerun", "report", "cleanup", "hostcheck")


def load_all() -> list[ModuleType]:
    mods = []
    for name in COMMAND_MODULES:
        try:
            mods.append(importlib.import_module(f"harness.commands.{name}"))
        except ModuleNotFoundError as err:
            if err.name != f"harness.commands.{name}":
                raise
    return mods
