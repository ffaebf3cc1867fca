"""Progress on a terminal: the board redrawn in place, four times a second, with ``rich``.

Why rich: redrawing a table in place across terminal widths, a resize and cursor quirks is what a
well-kept library is for.  Rows are the guests, busy ones first; a run taller than the terminal
is cut at the bottom while it runs (waiting and finished guests) and printed whole at the end.
"""

from __future__ import annotations

import logging
import threading

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

from harness.progress.board import DONE, WAITING, Board, View
from harness.progress.events import RunDone, RunEvent

log = logging.getLogger(__name__)

PHASE_STYLE = {WAITING: "dim", DONE: "green", "boot": "yellow", "event": "magenta"}


def render(view: View) -> RenderableType:
    """The board as a rich renderable (a function of the view alone, so tests can render it)."""
    run = f"run {view.run_id}" if view.run_id else "run"
    head = Text(f"klharness {run} {view.status or 'running'}: {view.totals}", style="bold")
    table = Table(show_header=True, header_style="bold", box=None, pad_edge=False, expand=False)
    table.add_column("guest", no_wrap=True)
    table.add_column("phase", no_wrap=True)
    table.add_column("tests", no_wrap=True)
    for row in view.rows:
        style = "red" if row.failing else PHASE_STYLE.get(row.phase, "cyan")
        table.add_row(row.guest, Text(row.doing, style=style), Text(row.results, style="red" if row.failing else ""))
    parts: list[RenderableType] = [head, table]
    parts += [Text(f, style="red", overflow="ellipsis", no_wrap=True) for f in view.failures]
    return Group(*parts)


class LiveBoard:
    """A ``Progress`` that keeps the board on ``console`` until :meth:`close`."""

    def __init__(self, console: Console, board: Board | None = None, *, refresh_per_second: float = 4) -> None:
        self.board = board or Board()
        self.console = console
        # No redirection: pytest captures fds during tests, and the console writes to a duplicate
        # of the terminal's (see harness.progress.display).
        self._live = Live(console=console, get_renderable=self._render, refresh_per_second=refresh_per_second,
                          transient=False, redirect_stdout=False, redirect_stderr=False)
        self._lock = threading.Lock()
        self._state = "new"  # -> "ready" (start) -> "shown" (first event) -> "closed"

    def _render(self) -> RenderableType:
        return render(self.board.view())

    def start(self) -> None:
        """Get ready; the board appears with the first event, so a run that stops before (a usage
        error, printed by pytest) leaves no empty board around its message."""
        with self._lock:
            if self._state == "new":
                self._state = "ready"

    def emit(self, event: RunEvent) -> None:
        try:
            self.board.apply(event)
            with self._lock:
                if self._state == "ready":
                    self._live.start(refresh=True)
                    self._state = "shown"
        except Exception as err:  # a display must never fail the run
            log.debug("progress event dropped: %s", err)
        if isinstance(event, RunDone):
            self.close()  # the final board stays on screen; what pytest prints next goes below it

    def close(self) -> None:
        with self._lock:
            shown, self._state = self._state == "shown", "closed"
        if shown:
            try:
                self._live.stop()
            except Exception as err:
                log.debug("progress display not closed cleanly: %s", err)
