"""Check, before starting a domain, that QEMU's user can reach the boot files.

Why: the system daemon runs QEMU as ``libvirt-qemu``, which cannot traverse
root's 0700 home; the start then fails with a bare "Permission denied" from
QEMU.  Checking the path ourselves turns that into an error that names the
directory at fault and the fix.
"""

from __future__ import annotations

import grp
import os
import pwd
import stat
from collections.abc import Iterable
from pathlib import Path

from harness.errors import ImageError

QEMU_USERS = ("libvirt-qemu", "qemu")  # Debian/Ubuntu, Fedora/RHEL


def qemu_identity() -> tuple[str, int, set[int]] | None:
    """(name, uid, gids) of the user the system daemon runs QEMU as, if that user exists here."""
    for name in QEMU_USERS:
        try:
            pw = pwd.getpwnam(name)
        except KeyError:
            continue
        gids = {pw.pw_gid} | {g.gr_gid for g in grp.getgrall() if name in g.gr_mem}
        return name, pw.pw_uid, gids
    return None


def allows(st: os.stat_result, uid: int, gids: set[int], want: int) -> bool:
    """``want`` is 4 (read), 2 (write) or 1 (execute/traverse), checked like the kernel's DAC."""
    if uid == 0:
        return True
    if st.st_uid == uid:
        return bool(st.st_mode & (want << 6))
    if st.st_gid in gids:
        return bool(st.st_mode & (want << 3))
    return bool(st.st_mode & want)


def unreachable(path: Path, uid: int, gids: set[int]) -> str | None:
    """Why ``uid`` cannot read ``path`` (a directory it cannot traverse, or the file), or None."""
    path = path.absolute()
    for parent in reversed(path.parents):
        try:
            st = parent.stat()
        except OSError:
            return f"{parent} does not exist"
        if not allows(st, uid, gids, 1):
            return f"directory {parent} (mode {stat.filemode(st.st_mode)}) cannot be traversed"
    try:
        st = path.stat()
    except OSError:
        return f"{path} does not exist"
    if not allows(st, uid, gids, 4):
        return f"{path} (mode {stat.filemode(st.st_mode)}) cannot be read"
    return None


def check_qemu_can_read(paths: Iterable[Path], what: str) -> None:
    """Raise ImageError when the QEMU user cannot read one of ``paths``; silent if no such user exists."""
    ident = qemu_identity()
    if ident is None:
        return
    name, uid, gids = ident
    for p in paths:
        why = unreachable(p, uid, gids)
        if why:
            raise ImageError(
                f"{what}: QEMU runs as {name} and cannot read {p}: {why}. Keep images outside root's home "
                "(e.g. KLHARNESS_CACHE=/var/cache/klharness) or make every directory on the path o+x")
