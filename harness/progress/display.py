"""Which progress display a run gets, and where it writes.

A terminal gets the live board, anything else (a pipe, a CI log, a dumb terminal) the plain line
log.  Both write to a duplicate of stdout's file descriptor taken before pytest starts: pytest
captures fds 1 and 2 while each test runs (``--capture=fd``), so a display writing to fd 1 itself
would end up in the captured output of whichever test is running; the duplicate still points at
the terminal.
"""

from __future__ import annotations

import io
import os
import sys
from typing import Protocol, TextIO

from harness.progress.events import RunEvent
from harness.progress.plain import HEARTBEAT_S, LineLog

DUMB_TERMINALS = ("dumb", "unknown")  # no cursor movement: a board cannot be redrawn there


class Display(Protocol):
    """A ``Progress`` with a lifetime: shown from :meth:`start` to :meth:`close`."""

    def start(self) -> None: ...

    def emit(self, event: RunEvent) -> None: ...

    def close(self) -> None: ...


class _OwnsStream:
    """A display and the duplicated stream it writes to, closed together."""

    def __init__(self, display: Display, stream: TextIO) -> None:
        self.display = display
        self._stream = stream

    def start(self) -> None:
        self.display.start()

    def emit(self, event: RunEvent) -> None:
        self.display.emit(event)

    def close(self) -> None:
        try:
            self.display.close()
        finally:
            if not self._stream.closed:
                self._stream.close()


def _duplicate(stream: TextIO) -> TextIO | None:
    try:
        fd = os.dup(stream.fileno())
    except (OSError, ValueError, io.UnsupportedOperation):
        return None  # not backed by a file descriptor (a StringIO in a test): write to it directly
    stream.flush()
    return os.fdopen(fd, "w", buffering=1, encoding="utf-8", errors="replace")


def open_display(stream: TextIO | None = None, *, heartbeat: float = HEARTBEAT_S) -> Display:
    """The live board when ``stream`` (default stdout) is a terminal that can move its cursor, else the line log."""
    stream = stream if stream is not None else sys.stdout
    dup = _duplicate(stream)
    out = dup or stream
    display: Display
    if out.isatty() and os.environ.get("TERM", "").lower() not in DUMB_TERMINALS:
        from rich.console import Console

        from harness.progress.live import LiveBoard

        display = LiveBoard(Console(file=out, force_terminal=True))
    else:
        display = LineLog(out, heartbeat=heartbeat)
    return _OwnsStream(display, dup) if dup is not None else display
