"""The hooks klharness adds to pytest, declared in one place (pytest-xdist's ``newhooks.py``).

Why hooks: a front end such as ``klharness run`` hands the plugin typed objects that command-line
options cannot carry — the progress display to report to, and the invocation to record so that
``klharness rerun`` can start the run again.  ``pytest testcases`` implements neither and gets
the defaults (no display; an invocation read from pytest's own options).  Spec bodies never run.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from harness.progress.events import Progress
    from harness.results.invocation import Invocation


@pytest.hookspec(firstresult=True)
def pytest_kl_progress(config: pytest.Config) -> Progress | None:
    """Where the run's session reports guest phases and cell outcomes (None: nowhere)."""
    return None


@pytest.hookspec(firstresult=True)
def pytest_kl_invocation(config: pytest.Config) -> Invocation | None:
    """How this run was started, for its record (None: read it from pytest's options)."""
    return None
