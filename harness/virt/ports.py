"""Loopback ports for the guests' SSH forwards.

Why a module: "bind port 0, read it, close" is racy — another process (or a
second guest started at the same moment) can take the port before QEMU
binds it.  QEMU then fails with "Could not set up host forwarding rule";
:func:`is_hostfwd_conflict` recognises that so the launcher can pick another
port and retry (:func:`harness.wait.retry_lost_race` with :class:`PortTaken`).
"""

from __future__ import annotations

import socket

from harness.errors import HostError

ATTEMPTS = 3  # one pick plus two retries when another process wins the race
HOSTFWD_FAILURE = "Could not set up host forwarding rule"


def free_loopback_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def is_hostfwd_conflict(message: str) -> bool:
    """Whether a start failure means the forward's host port was taken."""
    return HOSTFWD_FAILURE in message


class PortTaken(HostError):
    """QEMU could not use a port we picked: another process took it first (a lost race, worth a retry)."""

    def __init__(self, port: int | None, qemu_message: str) -> None:
        super().__init__(f"port 127.0.0.1:{port} taken (QEMU: {qemu_message})")
        self.port, self.qemu_message = port, qemu_message


def lost_port_race(err: Exception) -> bool:
    return isinstance(err, PortTaken)
