"""Run one blocking libvirt call with a deadline.

Why: libvirt-python calls block without a timeout of their own (a wedged
QEMU monitor hangs ``save`` or ``destroy`` forever).  The call runs in a
daemon thread (libvirt releases the GIL and is thread-safe); if it does not
return in time the caller gets a VirtError naming the operation, and the
stuck thread is abandoned rather than waited for.  The error also names
any known cause of slow libvirt calls that applies on this machine
(:mod:`harness.virt.capcache`), so a timeout is never the whole story.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TypeVar

from harness.errors import VirtError
from harness.virt.capcache import slow_call_hint

T = TypeVar("T")


def bounded(fn: Callable[[], T], *, timeout: float, what: str) -> T:
    """Return ``fn()`` or raise VirtError if it takes longer than ``timeout`` seconds.

    Exceptions raised by ``fn`` propagate unchanged.
    """
    box: dict[str, object] = {}

    def target() -> None:
        try:
            box["result"] = fn()
        except BaseException as err:
            box["error"] = err

    worker = threading.Thread(target=target, name=f"libvirt: {what}", daemon=True)
    worker.start()
    worker.join(timeout)
    if worker.is_alive():
        raise VirtError(f"{what} did not finish within {timeout:.0f}s (libvirt call abandoned){slow_call_hint()}")
    if "error" in box:
        raise box["error"]  # type: ignore[misc]
    return box["result"]  # type: ignore[return-value]
