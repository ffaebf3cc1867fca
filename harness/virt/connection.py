"""Open libvirt connections and translate libvirt's errors into ours.

Why a module: every caller needs the same three things — a bounded connect,
a message that names ``scripts/start-libvirt`` when the daemon is down, and
libvirt's default error printer silenced (it writes every error to stderr,
including the ones we expect and handle).
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

import libvirt

from harness.errors import CapabilityError, HostError, VirtError
from harness.redact import redact_text, redact_uri
from harness.ssh_target import SSH_TRANSPORTS
from harness.timeouts import DEFAULT_TIMEOUTS
from harness.timeouts import active as active_timeouts
from harness.virt.bounded import bounded

DEFAULT_URI = "qemu:///system"

_silenced = False


def silence_libvirt_stderr() -> None:
    """Stop libvirt printing each error to stderr; we report them ourselves."""
    global _silenced
    if not _silenced:
        libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
        _silenced = True


def connect(uri: str = DEFAULT_URI, *, timeout: float = DEFAULT_TIMEOUTS.libvirt_connect) -> Any:
    """Open ``uri`` read-write, or raise HostError saying how to start the daemon."""
    silence_libvirt_stderr()
    if not is_local(uri):  # a remote guest's console is a libvirt stream, which needs libvirt's event loop
        from harness.virt.console_stream import ensure_event_loop

        ensure_event_loop()  # before opening: a connection opened earlier never sees the loop
    shown = redact_uri(uri)
    try:
        return bounded(lambda: libvirt.open(uri), timeout=timeout, what=f"connecting to libvirt at {shown}")
    except libvirt.libvirtError as err:
        raise HostError(
            f"cannot connect to libvirt at {shown}: {redact_text(err.get_error_message() or '', [uri])}. "
            "Is the daemon running? "
            "Start it with scripts/start-libvirt (no systemd here: it runs virtlogd -d and libvirtd -d)"
        ) from err
    except VirtError as err:
        raise HostError(f"{err}; the daemon may be hung — restart it with scripts/start-libvirt") from err


def connect_resilient(uri: str = DEFAULT_URI, *, timeout: float = DEFAULT_TIMEOUTS.libvirt_connect,
                      reconnect_timeout: float | None = None) -> Any:
    """Like :func:`connect`, but the connection reconnects once by itself if the daemon restarts."""
    from harness.virt.reconnect import ReconnectingConnection

    return ReconnectingConnection(uri, lambda: connect(uri, timeout=timeout),
                                  reconnect_timeout=reconnect_timeout or active_timeouts().libvirt_reconnect)


def is_local(uri: str) -> bool:
    """Whether ``uri`` reaches a daemon that shares this machine's files and loopback (paths, ports and pids
    in metadata mean something here).

    A URI through SSH counts as remote even when it names 127.0.0.1: it is how a host that shares
    nothing with this one but an SSH port is reached (a lab host behind a tunnel, the simulated one of
    scripts/sim-remote-host), and everything remote works on a local daemon too.
    """
    parts = urlsplit(uri)
    if parts.scheme.partition("+")[2] in SSH_TRANSPORTS:
        return False
    return parts.hostname in (None, "", "localhost", "127.0.0.1", "::1")



_UNKNOWN_FEATURE = re.compile(r"unknown CPU feature:?\s*'?([\w.-]+)", re.IGNORECASE)
_UNKNOWN_PROPERTY = re.compile(r"Property '([\w.-]+)' not found")
_UNKNOWN_MODEL = re.compile(r"Unknown CPU model '?([\w.-]+)", re.IGNORECASE)


def capability_error(err: libvirt.libvirtError, domain: str) -> CapabilityError | None:
    """A CapabilityError when ``err`` means "this libvirt/QEMU cannot make that CPU", else None."""
    msg = err.get_error_message() or str(err)
    if m := _UNKNOWN_FEATURE.search(msg):
        return CapabilityError(
            f"libvirt/QEMU on this host have no CPU feature named '{m.group(1)}' (domain {domain}): {msg}. "
            "Native Key Locker needs a patched QEMU and libvirt cpu_map (KEYLOCKER.md §6); "
            "use kl_backend: emulated here")
    if m := _UNKNOWN_PROPERTY.search(msg):
        return CapabilityError(
            f"QEMU on this host has no CPU property '{m.group(1)}' (domain {domain}): {msg}. "
            "extra_qemu_cpu_args need the patched QEMU they were written for")
    if m := _UNKNOWN_MODEL.search(msg):
        return CapabilityError(f"libvirt/QEMU on this host have no CPU model '{m.group(1)}' (domain {domain}): {msg}")
    return None


def libvirt_error(err: libvirt.libvirtError, what: str) -> VirtError:
    """A VirtError for a failed libvirt operation, keeping libvirt's own words."""
    return VirtError(f"{what} failed: {err.get_error_message() or err}")


def is_no_domain(err: libvirt.libvirtError) -> bool:
    """The domain is gone (transient domains vanish on destroy/shutdown/save)."""
    return bool(err.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN)
