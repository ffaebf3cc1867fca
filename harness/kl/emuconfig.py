"""The emulated VMM's side of the hand-over to the in-guest emulator.

Why here: the VMM (klharness) decides the guest's virtual Key Locker CPUID
and owns the per-VM secret from which the guest IWKey is derived together
with the guest's boot id (ARCHITECTURE.md §3: handles survive save/restore
and migration, not reboot).  The text format is parsed by
``harness/csrc/klemu_conf.c``; both sides must agree, and the tests check it.

The secret is key material: it is written only to files created 0600 and is
never part of ``repr``/``str`` of these objects, logs or reports.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import socket
from dataclasses import dataclass, field
from pathlib import Path

from harness.kl.cpuid import leaf19_words


@dataclass(frozen=True)
class EmulatedCpu:
    """The virtual Key Locker CPU a guest gets under the emulated backend."""

    kl: bool = True
    aeskle: bool = True
    cr4_kl: bool = True
    cpl: int = 3
    restrictions: frozenset[str] = frozenset({"cpl0", "noencrypt", "nodecrypt"})
    wide: bool = True
    backup: bool = True
    nobackup: bool = False
    random_keysource: bool = False


@dataclass(frozen=True)
class VmSecret:
    """A per-VM 32-byte secret; ``repr`` never shows it."""

    value: bytes = field(repr=False)

    @classmethod
    def generate(cls) -> VmSecret:
        return cls(secrets.token_bytes(32))

    def __post_init__(self) -> None:
        if len(self.value) != 32:
            raise ValueError("a VM secret is 32 bytes")


def host_identity(uri: str) -> bytes:
    """A stable 32-byte identity of the host behind a libvirt URI (mixed into a random-KeySource IWKey)."""
    return hashlib.sha256(f"klharness-host:{socket.gethostname()}:{uri}".encode()).digest()


def render(cpu: EmulatedCpu, secret: VmSecret | None, *, boot_id: str | None = None,
           host_id: bytes | None = None, random_file: str | None = None) -> str:
    """The klemu.conf text.  ``secret=None`` gives a config without key material (CPUID only).

    With ``cpu.random_keysource`` the modelled guest kernel loads a hardware-random IWKey:
    ``keysource = 1`` plus the host's identity; the guest adds a random component of its own,
    so the key is not derivable by the VMM and does not survive a move to another host.
    """
    if cpu.random_keysource and host_id is None:
        raise ValueError("a random KeySource needs the host identity (host_id)")
    eax, ebx, ecx = leaf19_words(restrictions=cpu.restrictions, wide=cpu.wide, backup=cpu.backup,
                                 nobackup=cpu.nobackup, random_keysource=cpu.random_keysource)
    lines = [
        "# klharness emulated Key Locker CPU (parsed by harness/csrc/klemu_conf.c)",
        f"kl = {int(cpu.kl)}",
        f"aeskle = {int(cpu.aeskle)}",
        f"cr4_kl = {int(cpu.cr4_kl)}",
        f"cpl = {cpu.cpl}",
        f"leaf19_eax = {eax:#x}",
        f"leaf19_ebx = {ebx:#x}",
        f"leaf19_ecx = {ecx:#x}",
    ]
    if secret is not None:
        lines.append(f"secret = {secret.value.hex()}")
    if boot_id is not None:
        lines.append(f"boot_id = {boot_id}")
    if cpu.random_keysource and host_id is not None:
        lines += ["keysource = 1", f"host_id = {host_id.hex()}"]
        if random_file is not None:
            lines.append(f"random_file = {random_file}")
    return "\n".join(lines) + "\n"


def write_private(path: Path, text: str) -> Path:
    """Write ``text`` to ``path`` readable by the owner only (created 0600, never widened)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, text.encode())
    finally:
        os.close(fd)
    return path


def private_runtime_dir(name: str) -> Path:
    """A 0700 directory on tmpfs for run-scoped secrets (gone at reboot, like a VMM's memory)."""
    base = Path(os.environ.get("XDG_RUNTIME_DIR") or "/dev/shm")
    path = base / f"klharness-{os.getuid()}" / name
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(path.parent, 0o700)
    return path
