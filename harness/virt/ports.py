"""Loopback ports for the guests' SSH forwards.

Why a module: "bind port 0, read it, close" is racy — another process (or a
second guest started at the same moment) can take the port before QEMU
binds it.  QEMU then fails with "Could not set up host forwarding rule";
:func:`is_hostfwd_conflict` recognises that so the launcher can pick another
port and retry.
"""

from __future__ import annotations

import socket

HOSTFWD_FAILURE = "Could not set up host forwarding rule"


def free_loopback_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def is_hostfwd_conflict(message: str) -> bool:
    """Whether a start failure means the forward's host port was taken."""
    return HOSTFWD_FAILURE in message
