"""How Session.connect waits for a guest's SSH greeting: each attempt longer than the last.

Why: QEMU's user-mode network accepts the host-side connection at once and then sends the guest a
SYN; a SYN the guest missed (it was waking from S3) is retransmitted only seconds later, so one
long attempt made an S3 wake reach SSH in ~8 s.  Short first attempts, doubled up to
``ssh_greeting``, make a new connection soon."""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Any

import pytest

from harness.guest import ssh
from harness.timeouts import Timeouts


class Stop(Exception):
    """Ends the test once the greeting phase is over (the handshake is not what is tested here)."""


def test_each_greeting_attempt_waits_twice_as_long_as_the_one_before_up_to_the_limit(
        monkeypatch: pytest.MonkeyPatch) -> None:
    limits: list[float] = []

    def read_greeting(host: str, port: int, timeout: float, dial: object = None) -> str:
        limits.append(timeout)
        if len(limits) < 6:
            raise TimeoutError("timed out")  # the guest did not answer this connection
        return "SSH-2.0-dropbear"

    def create_connection(*args: object, **kwargs: object) -> socket.socket:
        raise Stop  # the greeting arrived: the handshake would start here

    monkeypatch.setattr(ssh, "read_greeting", read_greeting)
    monkeypatch.setattr(ssh.socket, "create_connection", create_connection)
    monkeypatch.setattr(ssh, "wait_for", _no_sleep(ssh.wait_for))
    timeouts = Timeouts(ssh_greeting_first=0.25, ssh_greeting=2.0)
    with pytest.raises(Stop):
        ssh.Session.connect("127.0.0.1", 2222, user="root", key=None,  # type: ignore[arg-type]
                            host_key="ssh-ed25519 AAAA", timeouts=timeouts, deadline=60.0)
    assert limits == [0.25, 0.5, 1.0, 2.0, 2.0, 2.0]


def _no_sleep(wait_for: Callable[..., Any]) -> Callable[..., Any]:
    """wait_for without its pauses between attempts (the limits are what is checked, not the clock)."""
    def fast(*args: Any, **kwargs: Any) -> Any:
        kwargs.update(initial=0.0, cap=0.0)
        return wait_for(*args, **kwargs)
    return fast
