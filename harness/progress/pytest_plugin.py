"""The display's side of the pytest run: hand it to harness.plugin, keep pytest's letters off it.

Registered only by ``klharness run`` (``pytest.main(plugins=[...])``) when it shows progress;
``pytest testcases`` and ``klharness run -q`` never load it, so they keep pytest's own output.
While the display is shown, pytest's per-test letters (``.sF``) would be drawn through it, so
they are blanked; the verdict categories stay, and with them the final counts, the short summary
and the failure tracebacks pytest prints once the display is closed.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import pytest

from harness.progress.display import Display
from harness.progress.events import Progress


class ProgressPlugin:
    def __init__(self, display: Display) -> None:
        self.display = display

    def pytest_kl_progress(self, config: pytest.Config) -> Progress:
        return self.display

    @pytest.hookimpl(wrapper=True)
    def pytest_report_teststatus(self, report: pytest.TestReport,
                                 config: pytest.Config) -> Generator[None, Any, Any]:
        status = yield
        if isinstance(status, tuple) and len(status) == 3:
            category, _letter, word = status
            return category, "", word
        return status

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        """Close the display after harness.plugin tore the guests down, before pytest's summary."""
        self.display.close()
