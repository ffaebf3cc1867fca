"""The reconnecting libvirt connection, with a fake opener (unit) and a real daemon restart (integration)."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import Any

import libvirt
import pytest

from harness.virt.reconnect import ReconnectingConnection, connection_lost

REPO = Path(__file__).resolve().parent.parent


class FakeConn:
    def __init__(self, name: str, die_after: int = 99) -> None:
        self.name = name
        self.calls = 0
        self.die_after = die_after

    def isAlive(self) -> int:
        return int(self.calls < self.die_after)

    def getHostname(self) -> str:
        self.calls += 1
        if self.calls > self.die_after:
            err = libvirt.libvirtError("internal error: client socket is closed")
            raise err
        return self.name


def test_reconnects_once_and_retries_the_call() -> None:
    conns = [FakeConn("first", die_after=1), FakeConn("second")]
    proxy = ReconnectingConnection("test://x", lambda: conns.pop(0), reconnect_timeout=5)
    assert proxy.getHostname() == "first"
    assert proxy.getHostname() == "second"  # the first connection died; retried on the new one
    assert proxy.reconnects == 1


def test_other_errors_are_not_retried() -> None:
    class Refusing(FakeConn):
        def getHostname(self) -> str:
            raise libvirt.libvirtError("Requested operation is not valid: domain is not running")

    opened: list[Any] = []

    def opener() -> Any:
        opened.append(1)
        return Refusing("x")

    proxy = ReconnectingConnection("test://x", opener, reconnect_timeout=5)
    with pytest.raises(libvirt.libvirtError, match="not running"):
        proxy.getHostname()
    assert len(opened) == 1


def test_connection_lost_classification() -> None:
    assert connection_lost(libvirt.libvirtError("internal error: client socket is closed"))
    assert not connection_lost(libvirt.libvirtError("Domain not found: no domain with matching name"))


@pytest.mark.integration
def test_guest_survives_a_daemon_restart_and_the_harness_reconnects() -> None:
    from harness.virt.connection import connect, connect_resilient

    proxy = connect_resilient("qemu:///system", reconnect_timeout=60)
    before = proxy.getLibVersion()
    subprocess.run(["pkill", "-x", "libvirtd"], check=False)
    for _ in range(50):
        if subprocess.run(["pgrep", "-x", "libvirtd"], capture_output=True).returncode:
            break
        time.sleep(0.1)
    subprocess.run(["bash", str(REPO / "scripts/start-libvirt"), "--no-probe"], check=True, timeout=120)
    assert proxy.getLibVersion() == before
    assert proxy.reconnects == 1
    connect("qemu:///system").close()
