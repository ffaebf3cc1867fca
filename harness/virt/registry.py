"""The live guests of one run, torn down together even when the run is killed.

Why: a run interrupted by Ctrl-C or ``kill`` must not leave QEMU processes
behind.  SIGTERM is turned into an exception (like SIGINT already is), so
the stack unwinds through every ``finally`` and ``__exit__`` below tears
the guests down; during that teardown further signals are noted, not obeyed,
so a second Ctrl-C cannot cut it short.  Whatever still escapes (SIGKILL,
a power cut) is the reaper's job.

Usage::

    with RunGuests(run_id) as guests:
        g = launch(conn, spec, image, run_id=run_id, registry=guests)
        ...
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Iterator
from types import FrameType
from typing import TYPE_CHECKING, Any

from harness.errors import KlharnessError, VirtError

if TYPE_CHECKING:
    from harness.virt.guest import Guest

log = logging.getLogger(__name__)

HANDLED_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class RunInterrupted(KeyboardInterrupt):
    """The run got SIGTERM (or SIGINT); raised from the signal handler to unwind the stack."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"interrupted by {signal.Signals(signum).name}")
        self.signum = signum


class RunGuests:
    """A registry of this run's guests with ``teardown_all`` and signal handling."""

    def __init__(self, run_id: str, *, keep_console: bool = False, handle_signals: bool = True) -> None:
        self.run_id = run_id
        self.keep_console = keep_console
        self.handle_signals = handle_signals
        self._guests: list[Guest] = []
        self._lock = threading.Lock()
        self._previous: dict[int, Any] = {}
        self.deferred_signals: list[int] = []

    def add(self, guest: Guest) -> None:
        with self._lock:
            self._guests.append(guest)

    def discard(self, guest: Guest) -> None:
        with self._lock:
            if guest in self._guests:
                self._guests.remove(guest)

    def __iter__(self) -> Iterator[Guest]:
        with self._lock:
            return iter(list(self._guests))

    def __len__(self) -> int:
        return len(self._guests)

    def teardown_all(self) -> list[str]:
        """Tear every guest down, newest first; return the failures (each guest is still tried)."""
        errors: list[str] = []
        with self._lock:
            guests, self._guests = list(reversed(self._guests)), []
        for guest in guests:
            try:
                guest.teardown(keep_console=self.keep_console)
            except KlharnessError as err:
                errors.append(str(err))
            except Exception as err:  # one guest's bug must not leak the others
                errors.append(f"teardown of {guest.name}: unexpected {type(err).__name__}: {err}")
        return errors

    # -- context manager and signals ---------------------------------------------------------------

    def __enter__(self) -> RunGuests:
        if self.handle_signals and threading.current_thread() is threading.main_thread():
            for sig in HANDLED_SIGNALS:
                self._previous[sig] = signal.signal(sig, self._interrupt)
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            if self._previous:
                for sig in HANDLED_SIGNALS:
                    signal.signal(sig, self._defer)
            errors = self.teardown_all()
        finally:
            for signum, handler in self._previous.items():
                signal.signal(signum, handler)
            self._previous.clear()
        if errors and exc[0] is None:
            raise VirtError("teardown of run " + self.run_id + " incomplete:\n  " + "\n  ".join(errors))
        for e in errors:
            log.error("%s", e)

    def _interrupt(self, signum: int, _frame: FrameType | None) -> None:
        log.warning("run %s: %s received; tearing down %d guest(s)", self.run_id,
                    signal.Signals(signum).name, len(self._guests))
        raise RunInterrupted(signum)

    def _defer(self, signum: int, _frame: FrameType | None) -> None:
        log.warning("run %s: %s during teardown ignored; teardown continues", self.run_id,
                    signal.Signals(signum).name)
        self.deferred_signals.append(signum)
