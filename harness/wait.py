"""The one waiting primitive: poll until something is true, within a deadline; and the one retry.

Why one: every wait in the harness (SSH greeting, console marker, a domain
state, a lock, a process exit) must have a deadline, back off with a cap,
retry only errors known to be transient, and fail with a message saying what
was awaited, for how long, and the last cause.  Built on tenacity; no bare
``@retry`` and no hand-written sleep loop anywhere else.

- :func:`wait_for` polls one condition within a timeout or a shared :class:`Deadline`
  (a boot's console marker and SSH greeting spend one boot budget, not one each);
- :func:`retry_lost_race` repeats an attempt that lost a race with another
  process (a loopback port taken between our pick and QEMU's bind).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

from tenacity import RetryError, Retrying, retry_if_exception_type, stop_after_delay, wait_exponential

from harness.errors import GuestError, KlharnessError

T = TypeVar("T")
log = logging.getLogger(__name__)


class Deadline:
    """One time budget that several steps share, e.g. a boot: the console's ready marker, then the SSH
    greeting, together within ``Timeouts.boot``.

    Why: a limit per step lets a slow first step eat the whole budget and the next step start a full
    budget of its own, so a stuck boot took twice its stated limit to fail.
    """

    def __init__(self, seconds: float, what: str) -> None:
        self.seconds = seconds
        self.what = what
        self._start = time.monotonic()

    def remaining(self) -> float:
        return max(0.0, self.seconds - self.spent())

    def spent(self) -> float:
        return time.monotonic() - self._start

    def describe(self) -> str:
        return f"the {self.what} budget of {self.seconds:g}s ({self.spent():.1f}s spent)"


class NotYet(Exception):
    """Raised by a polled function to mean "not ready, ask again"."""


def wait_for(
    what: str,
    poll: Callable[[], T],
    *,
    timeout: float | Deadline,
    transient: tuple[type[BaseException], ...] = (),
    initial: float = 0.05,
    cap: float = 1.0,
    error: type[KlharnessError] = GuestError,
    detail: Callable[[], str] | None = None,
) -> T:
    """Call ``poll`` until it returns; retry on :class:`NotYet` and ``transient`` errors only.

    ``timeout`` is seconds, or a :class:`Deadline` whose remainder this wait may use (at least one
    poll is made).  On timeout raise ``error`` with "timed out after Ns waiting for <what>;
    last: <cause>" plus ``detail()`` (e.g. the console tail).  Any other
    exception propagates at once: it is not something waiting can fix.
    """
    start = time.monotonic()
    seconds = timeout.remaining() if isinstance(timeout, Deadline) else timeout
    retrying = Retrying(
        stop=stop_after_delay(seconds),
        wait=wait_exponential(multiplier=initial, min=initial, max=cap),
        retry=retry_if_exception_type((NotYet, *transient)),
        reraise=False,
    )
    try:
        return retrying(poll)
    except RetryError as err:
        last = err.last_attempt.exception()
        cause = f"{type(last).__name__}: {last}" if last and str(last) else (type(last).__name__ if last else "?")
        msg = f"timed out after {time.monotonic() - start:.1f}s waiting for {what}"
        if isinstance(timeout, Deadline):
            msg += f" ({timeout.describe()})"
        msg += f"; last: {cause}"
        if detail is not None:
            extra = detail()
            if extra:
                msg += "\n" + extra
        raise error(msg) from last


def retry_lost_race(what: str, attempt: Callable[[int], T], *, attempts: int,
                    lost: Callable[[Exception], bool]) -> T:
    """``attempt(n)`` for n = 1..attempts, again only while it fails with an error ``lost`` calls a lost
    race (another process took what we picked, e.g. a free port, before we used it).

    Any other error propagates at once; so does the last lost race, for the caller to word.
    """
    for n in range(1, attempts + 1):
        try:
            return attempt(n)
        except Exception as err:
            if n == attempts or not lost(err):
                raise
            log.info("%s: lost a race (attempt %d/%d): %s; retrying", what, n, attempts, err)
    raise ValueError(f"retry_lost_race({what!r}): attempts must be >= 1, not {attempts}")
