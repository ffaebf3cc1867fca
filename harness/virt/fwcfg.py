"""Put a guest's fw_cfg entries into root-only files in its work directory.

Why copies: QEMU reads a ``file=`` entry each time a process starts for the
domain (create, restore, managed-save start), libvirt chowns the file to
``libvirt-qemu`` while the domain runs, and the entry may hold the per-VM
secret.  A private 0600 copy per guest survives the caller deleting its own
file, keeps libvirt's chown away from it, and goes away with the guest.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from harness.errors import ConfigError
from harness.virt.spec import FWCFG_MAX_BYTES, FWCFG_MAX_ENTRIES, FwCfgEntry


def materialize(entries: Sequence[FwCfgEntry], workdir: Path, generation: int = 0) -> tuple[tuple[str, Path], ...]:
    """Write each entry to ``workdir/fwcfg-G-I`` (mode 0600) and return (name, file) pairs.

    ``generation`` keeps a restore's new files apart from the ones the saved
    domain still names.
    """
    names = [e.name for e in entries]
    if len(set(names)) != len(names) or len(names) > FWCFG_MAX_ENTRIES:
        raise ConfigError(f"fw_cfg entries {names}: names must be unique and at most {FWCFG_MAX_ENTRIES}")
    out: list[tuple[str, Path]] = []
    for i, entry in enumerate(entries):
        data = entry.text.encode() if entry.text is not None else _read(entry)
        if len(data) > FWCFG_MAX_BYTES:
            raise ConfigError(f"fw_cfg entry {entry.name!r}: {len(data)} bytes, at most {FWCFG_MAX_BYTES}")
        dest = workdir / f"fwcfg-{generation}-{i}"
        fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        out.append((entry.name, dest))
    return tuple(out)


def _read(entry: FwCfgEntry) -> bytes:
    assert entry.path is not None
    try:
        return entry.path.read_bytes()
    except OSError as err:
        raise ConfigError(f"fw_cfg entry {entry.name!r}: cannot read {entry.path}: {err.strerror}") from err
