"""The one waiting primitive: poll until something is true, within a deadline.

Why one: every wait in the harness (SSH greeting, console marker, a domain
state) must have a deadline, back off with a cap, retry only errors known to
be transient, and fail with a message saying what was awaited, for how long,
and the last cause.  Built on tenacity; no bare ``@retry`` anywhere else.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

from tenacity import RetryError, Retrying, retry_if_exception_type, stop_after_delay, wait_exponential

from harness.errors import GuestError, KlharnessError

T = TypeVar("T")


class NotYet(Exception):
    """Raised by a polled function to mean "not ready, ask again"."""


def wait_for(
    what: str,
    poll: Callable[[], T],
    *,
    timeout: float,
    transient: tuple[type[BaseException], ...] = (),
    initial: float = 0.05,
    cap: float = 1.0,
    error: type[KlharnessError] = GuestError,
    detail: Callable[[], str] | None = None,
) -> T:
    """Call ``poll`` until it returns; retry on :class:`NotYet` and ``transient`` errors only.

    On timeout raise ``error`` with "timed out after Ns waiting for <what>;
    last: <cause>" plus ``detail()`` (e.g. the console tail).  Any other
    exception propagates at once: it is not something waiting can fix.
    """
    start = time.monotonic()
    retrying = Retrying(
        stop=stop_after_delay(timeout),
        wait=wait_exponential(multiplier=initial, min=initial, max=cap),
        retry=retry_if_exception_type((NotYet, *transient)),
        reraise=False,
    )
    try:
        return retrying(poll)
    except RetryError as err:
        last = err.last_attempt.exception()
        cause = f"{type(last).__name__}: {last}" if last and str(last) else (type(last).__name__ if last else "?")
        msg = f"timed out after {time.monotonic() - start:.1f}s waiting for {what}; last: {cause}"
        if detail is not None:
            extra = detail()
            if extra:
                msg += "\n" + extra
        raise error(msg) from last
