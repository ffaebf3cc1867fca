"""Helpers for the harness.virt integration tests (real libvirtd + QEMU TCG + mini image).

Test modules wrap these in their own fixtures (a conftest would be the usual
place; this module keeps harness.virt's test support in one file).  The SSH
helper here is deliberately tiny (paramiko, pinned host key): it only
lets these tests look inside a guest; the harness's own SSH layer is tested
elsewhere.
"""

from __future__ import annotations

import base64
import dataclasses
import os
import shutil
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paramiko
import pytest

from harness.errors import HostError, ImageError
from harness.images.artifact import FWCFG_AUTHORIZED_KEY, ImageArtifact
from harness.virt.connection import connect
from harness.virt.guest import Guest
from harness.virt.qemu_access import check_qemu_can_read
from harness.virt.spec import FwCfgEntry

RUNTIME_ROOT = Path("/var/tmp/klharness-tests")


def open_real_conn() -> Iterator[Any]:
    """A connection to the system daemon for a session fixture; fails (not skips) when it is down."""
    try:
        conn = connect("qemu:///system")
    except HostError as err:
        pytest.fail(f"integration tests need the libvirt daemon: {err}")
    yield conn
    conn.close()


def obtain_mini_image(options: dict[str, str] | None = None) -> ImageArtifact:
    """The mini image, copied where QEMU (user libvirt-qemu) can read it if the cache is not.

    The default cache is under root's 0700 home; launch() refuses such paths
    with an ImageError, which the copy avoids without changing the cache.
    """
    from harness.images import build_image

    img = build_image("mini", options=options)
    files = [p for p in (img.kernel, img.kernel_bzimage, img.initrd) if p is not None]
    try:
        check_qemu_can_read(files, "mini")
        return img
    except ImageError:
        pass
    dest = runtime_root() / "images" / f"mini-{img.key[:16]}"
    if not dest.exists():
        tmp = dest.with_name(dest.name + f".tmp{os.getpid()}")
        tmp.mkdir(parents=True)
        os.chmod(tmp.parent, 0o755)
        for p in files:
            shutil.copyfile(p, tmp / p.name)
        os.chmod(tmp, 0o755)
        tmp.rename(dest)
    return dataclasses.replace(img, directory=dest, kernel=dest / "vmlinux", kernel_bzimage=dest / "bzImage",
                               initrd=dest / "initrd.cpio")


def runtime_root() -> Path:
    """Guests' work directories for tests: QEMU must traverse it (pytest's tmp_path is 0700)."""
    RUNTIME_ROOT.mkdir(mode=0o755, exist_ok=True)
    return RUNTIME_ROOT


def bookworm_kernel_package() -> str:
    """The 6.1 kernel package the bookworm cloud metapackage depends on (not the 6.12 backport)."""
    from harness import proc

    out = proc.run(["apt-cache", "depends", "linux-image-cloud-amd64"], timeout=60).stdout
    for line in out.splitlines():
        dep = line.strip()
        if dep.startswith("Depends: linux-image-"):
            return dep.split(": ", 1)[1]
    raise AssertionError(f"linux-image-cloud-amd64 has no kernel dependency:\n{out}")


@dataclasses.dataclass
class SshKey:
    key: paramiko.RSAKey

    @property
    def fwcfg(self) -> FwCfgEntry:
        return FwCfgEntry(FWCFG_AUTHORIZED_KEY, text=f"{self.key.get_name()} {self.key.get_base64()} klh-test\n")


def wait_ssh_banner(port: int, timeout: float = 30) -> None:
    """The forward accepts before sshd listens: wait for the ``SSH-`` greeting (HOST_NOTES)."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
                s.settimeout(2)
                if s.recv(4) == b"SSH-":
                    return
        except OSError as err:
            last = err
        time.sleep(0.2)
    raise AssertionError(f"no SSH greeting on 127.0.0.1:{port} within {timeout}s (last: {last})")


def ssh(guest: Guest, key: SshKey, command: str, timeout: float = 30) -> str:
    """Run ``command`` in the guest as root and return its stdout (asserts exit status 0)."""
    wait_ssh_banner(guest.ssh_port, timeout)
    client = paramiko.SSHClient()
    assert guest.image.host_key, "mini pins its host key"
    kind, b64 = guest.image.host_key.split()[:2]
    client.get_host_keys().add(f"[127.0.0.1]:{guest.ssh_port}", kind,
                               paramiko.Ed25519Key(data=base64.b64decode(b64)))
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    try:
        client.connect("127.0.0.1", port=guest.ssh_port, username="root", pkey=key.key, timeout=timeout,
                       banner_timeout=timeout, auth_timeout=timeout, allow_agent=False, look_for_keys=False)
        _, out, err = client.exec_command(command, timeout=timeout)
        text = out.read().decode()
        status = out.channel.recv_exit_status()
        assert status == 0, f"{command!r} exited {status}: {err.read().decode()}"
        return text
    finally:
        client.close()


def ssh_background(guest: Guest, key: SshKey, command: str) -> None:
    """Start ``command`` detached in the guest (for suspend, which never answers)."""
    ssh(guest, key, f"setsid sh -c '{command}' </dev/null >/dev/null 2>&1 &")
