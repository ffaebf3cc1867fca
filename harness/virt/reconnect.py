"""A libvirt connection that survives a daemon restart.

Why: a lab leaves runs going overnight, and libvirtd gets restarted (package
upgrades, a crash, an admin).  Running guests survive a restart — QEMU keeps
going and the new daemon re-attaches — but every client connection dies, and
with it every later cell of the run.  This proxy notices a dead connection,
waits for the daemon to come back (bounded), reconnects, and retries the
failed call once.  Domain handles from the old connection are dead too, which
is why harness.virt looks domains up by name for every operation.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

import libvirt

from harness.errors import HostError
from harness.timeouts import active as active_timeouts
from harness.wait import NotYet, wait_for

log = logging.getLogger(__name__)

# libvirt's words for "the connection to the daemon is gone".
_DEAD_MARKERS = ("client socket is closed", "Cannot write data", "Cannot recv data", "connection closed",
                 "no connection driver", "End of file while reading data", "Broken pipe")


def connection_lost(err: libvirt.libvirtError) -> bool:
    msg = err.get_error_message() or str(err)
    return any(m in msg for m in _DEAD_MARKERS)


class ReconnectingConnection:
    """Proxy for a ``virConnect``: same methods, plus one reconnect-and-retry on a lost daemon."""

    def __init__(self, uri: str, opener: Callable[[], Any], *, reconnect_timeout: float | None = None) -> None:
        self._uri = uri
        self._opener = opener
        self._conn = opener()
        self._lock = threading.Lock()
        self._timeout = reconnect_timeout or active_timeouts().libvirt_reconnect
        self.reconnects = 0

    @property
    def raw(self) -> Any:
        return self._conn

    def _reconnect(self, broken: Any) -> None:
        with self._lock:
            if self._conn is not broken:
                return  # another thread already reconnected
            log.warning("libvirt connection to %s lost; waiting for the daemon to come back", self._uri)

            def attempt() -> Any:
                try:
                    return self._opener()
                except HostError as err:
                    raise NotYet(str(err)) from err

            self._conn = wait_for(f"libvirt at {self._uri} to come back after losing the connection", attempt,
                                  timeout=self._timeout, cap=2.0, error=HostError)
            self.reconnects += 1
            log.warning("reconnected to %s (reconnect #%d)", self._uri, self.reconnects)

    def __getattr__(self, name: str) -> Any:
        target = getattr(self._conn, name)
        if not callable(target):
            return target

        def call(*args: Any, **kwargs: Any) -> Any:
            conn = self._conn
            try:
                return getattr(conn, name)(*args, **kwargs)
            except libvirt.libvirtError as err:
                if not connection_lost(err) and conn.isAlive():
                    raise
                self._reconnect(conn)
                return getattr(self._conn, name)(*args, **kwargs)

        return call
