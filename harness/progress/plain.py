"""Progress as plain lines, one per event, for logs and CI (stdout is not a terminal).

Each line carries the run's elapsed time; a guest's phase lines say how long the phase it left
took, a finished guest its counts and the run's totals, so the log holds what the terminal board
shows.  A board cannot show "booting 95s" in a log, so while guests are busy a heartbeat line
every ``heartbeat`` seconds names each busy guest and its seconds so far: a stuck boot shows.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TextIO

from harness.progress.board import Board, seconds
from harness.progress.events import RunDone, RunEvent
from harness.timeouts import active as active_timeouts

log = logging.getLogger(__name__)

HEARTBEAT_S = 30.0


class LineLog:
    """A ``Progress`` that writes lines to ``stream`` (flushed at once: CI shows them live)."""

    def __init__(self, stream: TextIO, *, clock: Callable[[], float] = time.monotonic,
                 heartbeat: float = HEARTBEAT_S) -> None:
        self.board = Board(clock)
        self._stream = stream
        self._heartbeat = heartbeat
        self._write_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._heartbeat > 0 and self._thread is None:
            self._thread = threading.Thread(target=self._beat, name="klh-progress", daemon=True)
            self._thread.start()

    def emit(self, event: RunEvent) -> None:
        try:
            for text in self.board.apply(event):
                self._write(text)
        except Exception as err:  # a display must never fail the run
            log.debug("progress line not written: %s", err)
        if isinstance(event, RunDone):
            self._stop.set()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=active_timeouts().display_close)

    def _beat(self) -> None:
        while not self._stop.wait(self._heartbeat):
            busy = self.board.busy()
            if busy:
                self._write(f"still running: {busy} · run {self.board.totals()}")

    def _write(self, text: str) -> None:
        stamp = seconds(self.board.clock() - self.board.started)
        with self._write_lock:
            try:
                self._stream.write(f"[{stamp:>6}] {text}\n")
                self._stream.flush()
            except (OSError, ValueError) as err:  # closed or broken pipe: stop writing, keep running
                log.debug("progress stream gone: %s", err)
                self._stop.set()
