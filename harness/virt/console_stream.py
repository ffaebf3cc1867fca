"""A remote guest's console, read through libvirt's console stream into a file here.

Why: on a remote host the serial ``<log>`` file would be written on *that* host, where the harness
cannot read it.  libvirt carries the console over the connection we already have
(``virDomainOpenConsole``), so a pump writes whatever arrives into the guest's console file on this
machine; every wait, tail and "console in every failure" then works on that file exactly as for a
local guest (:class:`harness.virt.console.ConsoleLog`).

Nothing may be lost: a stream only sees what the guest prints after it is attached, so every start of
a QEMU process (create, restore, a managed-save start) runs paused, the pump attaches, and only then
does the guest run (:meth:`harness.virt.guest.Guest.start_attached`).  A stream ends when its QEMU
process does (save, destroy); the next start attaches a new one and appends.

Streams deliver data through libvirt's event loop: :func:`ensure_event_loop` registers libvirt's
default implementation (before the connection that needs it is opened) and runs it on a daemon thread.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from pathlib import Path
from typing import Any

import libvirt

from harness.errors import VirtError
from harness.virt.bounded import bounded

log = logging.getLogger(__name__)

_loop_lock = threading.Lock()
_loop_thread: threading.Thread | None = None
READ_CHUNK = 65536
_EVENTS = libvirt.VIR_STREAM_EVENT_READABLE | libvirt.VIR_STREAM_EVENT_ERROR | libvirt.VIR_STREAM_EVENT_HANGUP


def ensure_event_loop() -> None:
    """libvirt's default event loop, registered once and run on a daemon thread for the process's life.

    Must run before opening a connection whose streams are read this way (a connection opened
    earlier never sees the loop).  It also turns on libvirt's keepalive for those connections, which
    is how a dropped SSH link to a remote host is noticed instead of hanging.
    """
    global _loop_thread
    with _loop_lock:
        if _loop_thread is not None:
            return
        libvirt.virEventRegisterDefaultImpl()

        def run() -> None:
            while True:
                libvirt.virEventRunDefaultImpl()

        _loop_thread = threading.Thread(target=run, name="libvirt-events", daemon=True)
        _loop_thread.start()


class ConsolePump:
    """Copies one domain's console stream into ``path`` (appending), from attach to its stream's end."""

    def __init__(self, conn: Any, domain: str, path: Path, *, timeout: float) -> None:
        self.conn = conn
        self.domain = domain
        self.path = path
        self.timeout = timeout
        self.bytes = 0
        self._stream: Any | None = None
        self._lock = threading.Lock()
        self.ended: str | None = None  # why the last stream ended (for a failure's message)

    @property
    def attached(self) -> bool:
        return self._stream is not None

    def attach(self) -> None:
        """Open the console of the (paused or running) domain and start copying; replaces a dead stream."""
        self.detach()
        dom = bounded(lambda: self.conn.lookupByName(self.domain), timeout=self.timeout,
                      what=f"looking up {self.domain} for its console")
        stream = self.conn.newStream(libvirt.VIR_STREAM_NONBLOCK)
        try:
            bounded(lambda: dom.openConsole(None, stream, libvirt.VIR_DOMAIN_CONSOLE_FORCE), timeout=self.timeout,
                    what=f"opening the console of {self.domain}")
            stream.eventAddCallback(_EVENTS, self._on_event, None)
        except libvirt.libvirtError as err:
            _quietly(stream.abort)
            raise VirtError(f"opening the console stream of {self.domain}: {err.get_error_message()} (a remote "
                            "guest's console can only be read this way)") from err
        with self._lock:
            self._stream = stream
            self.ended = None

    def detach(self) -> None:
        """Stop copying (at teardown, or before a new attach); what arrived stays in the file."""
        with self._lock:
            stream, self._stream = self._stream, None
        if stream is not None:
            _quietly(stream.eventRemoveCallback)
            _quietly(stream.abort)

    def _on_event(self, stream: Any, events: int, _opaque: object) -> None:
        """Runs on the event-loop thread: drain what is there, or close a stream that ended."""
        with self._lock:
            if stream is not self._stream:
                return
            reason = None
            if events & libvirt.VIR_STREAM_EVENT_READABLE:
                reason = self._drain(stream)
            elif events & (libvirt.VIR_STREAM_EVENT_ERROR | libvirt.VIR_STREAM_EVENT_HANGUP):
                reason = "the console stream hung up (the QEMU process ended)"
            if reason is None:
                return
            self.ended = reason
            self._stream = None
        log.debug("console of %s: %s after %d bytes", self.domain, reason, self.bytes)
        ended: Any = stream  # (mypy narrows `stream` by the identity test above)
        _quietly(ended.eventRemoveCallback)
        _quietly(ended.finish if reason.startswith("end") else ended.abort)

    def _drain(self, stream: Any) -> str | None:
        try:
            with self.path.open("ab") as out:
                while True:
                    data = stream.recv(READ_CHUNK)
                    if data == -2:  # nothing more for now (non-blocking)
                        return None
                    if not data:
                        return "end of the console stream (the QEMU process ended)"
                    out.write(data)
                    self.bytes += len(data)
        except libvirt.libvirtError as err:
            return f"the console stream failed: {err.get_error_message()}"
        except OSError as err:
            return f"cannot write the console file {self.path}: {err}"


def _quietly(fn: Any) -> None:
    with contextlib.suppress(libvirt.libvirtError):
        fn()
