"""The guest's serial console log, and waiting for a line to appear in it.

Why a file and not a stream: the domain's ``<serial><log file=...>`` is
written by QEMU/virtlogd from the first byte, survives reboots (same QEMU
process) and restores (``append='on'``), and needs nothing attached.  One
log spans the guest's whole life, so waits take an offset ("after this
mark") to see only what a lifecycle step printed.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from harness.errors import GuestError
from harness.wait import Deadline, NotYet, wait_for

PANIC_MARKERS = (b"Kernel panic - not syncing", b"---[ end Kernel panic")
POLL_FIRST = 0.05
POLL_MAX = 0.5


class ConsoleLog:
    """Read access to one guest's console log file."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def reset(self) -> None:
        """Create the log empty (root-only), so it holds this guest's bytes from the first one."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_bytes(b"")
        self.path.chmod(0o600)

    def size(self) -> int:
        try:
            return self.path.stat().st_size
        except FileNotFoundError:
            return 0

    def mark(self) -> int:
        """An offset to pass as ``after`` to see only what comes next."""
        return self.size()

    def read(self, after: int = 0) -> bytes:
        """Bytes from ``after`` on.  A log shorter than ``after`` was rotated: read it whole."""
        try:
            with self.path.open("rb") as f:
                f.seek(0, 2)
                end = f.tell()
                f.seek(after if after <= end else 0)
                return f.read()
        except FileNotFoundError:
            return b""

    def tail(self, lines: int = 30, after: int = 0) -> str:
        text = self.read(after).decode(errors="replace").replace("\r", "")
        return "\n".join(text.splitlines()[-lines:])

    def wait_for(self, marker: str, *, after: int = 0, timeout: float | Deadline, what: str,
                 stopped: Callable[[], str | None] | None = None, hint: str = "") -> float:
        """Wait until ``marker`` appears after offset ``after``; return the seconds it took.

        Polls through :func:`harness.wait.wait_for` (50 ms growing to 500 ms)
        against a deadline.  Ends early with GuestError when the kernel panics
        or ``stopped()`` returns a reason (the domain is no longer running).
        On timeout the GuestError carries the console tail and ``hint`` (the
        likely cause).
        """
        needle = marker.encode()
        start = time.monotonic()

        def poll() -> float:
            data = self.read(after)
            if needle in data:
                return time.monotonic() - start
            if any(p in data for p in PANIC_MARKERS):
                raise GuestError(self._message(f"{what}: the guest kernel panicked before printing {marker!r}",
                                               after, ""))
            reason = stopped() if stopped is not None else None
            if reason:
                raise GuestError(self._message(f"{what}: the domain stopped ({reason}) before printing {marker!r}",
                                               after, ""))
            raise NotYet(f"{len(data)} bytes of console output, none of them {marker!r}" if data
                         else "no console output at all")

        return wait_for(f"{marker!r} on the console ({what})", poll, timeout=timeout, initial=POLL_FIRST,
                        cap=POLL_MAX, error=GuestError, detail=lambda: self._message("", after, hint).lstrip("\n"))

    def _message(self, head: str, after: int, hint: str) -> str:
        tail = self.tail(30, after) or "(empty)"
        cause = f"\nlikely cause: {hint}" if hint else ""
        return f"{head}{cause}\nconsole log {self.path}, last lines:\n{tail}"
