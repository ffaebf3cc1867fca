"""klharness as a pytest plugin (entry point ``pytest11``).

The catalogue (``testcases/``) is driven from here: options naming the
config, libvirt URI and expectation profile.  This module stays thin: the
work lives in the harness modules it calls.
"""

from __future__ import annotations

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("klharness", "Key Locker harness")
    group.addoption("--kl-config", default=None, help="matrix config (default: configs/ci.yaml)")
    group.addoption("--kl-uri", default=None, help="libvirt URI (default: from the config)")
    group.addoption("--kl-profile", default=None, help="expectation profile (default: from the config)")
    group.addoption("--kl-keep", default="failed", choices=("failed", "all", "none"),
                    help="which guests' artifacts to keep")
