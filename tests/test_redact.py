"""Credentials in libvirt URIs never reach records, reports or errors."""

from __future__ import annotations

import pytest

from harness.errors import HostError
from harness.redact import redact_text, redact_uri


@pytest.mark.parametrize(("uri", "shown"), [
    ("qemu:///system", "qemu:///system"),
    ("qemu+ssh://lab1/system", "qemu+ssh://lab1/system"),
    ("qemu+ssh://root@lab1/system?keyfile=/k", "qemu+ssh://root@lab1/system?keyfile=***"),
    ("qemu+tcp://admin:hunter2@lab1:16509/system", "qemu+tcp://admin:***@lab1:16509/system"),
    ("qemu+tls://lab1/system?no_verify=1&password=hunter2", "qemu+tls://lab1/system?no_verify=1&password=***"),
])
def test_redact_uri(uri: str, shown: str) -> None:
    assert redact_uri(uri) == shown
    assert "hunter2" not in redact_uri(uri)


def test_redact_text() -> None:
    uri = "qemu+tcp://u:hunter2@h/system"
    assert redact_text(f"failed at {uri}", [uri]) == "failed at qemu+tcp://u:***@h/system"


def test_connect_error_hides_the_password() -> None:
    from harness.virt.connection import connect

    with pytest.raises(HostError) as err:
        connect("qemu+tcp://admin:hunter2@127.0.0.1:1/system", timeout=20)
    assert "hunter2" not in str(err.value) and "admin:***@127.0.0.1" in str(err.value)
