"""Write initramfs archives (cpio "newc") in pure Python.

Why not the ``cpio`` tool: we need device nodes (``/dev/console``) and root
ownership without being root or calling ``mknod``, and a byte-identical
archive for identical inputs (fixed inode numbers, owners and mtimes), so the
image hash only moves when an input does.  The format is the one the kernel
unpacks (Documentation/driver-api/early-userspace/buffer-format.rst).
"""

from __future__ import annotations

import stat
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from harness.errors import ImageError

_MAGIC = b"070701"
_TRAILER = "TRAILER!!!"


@dataclass(frozen=True)
class Entry:
    """One archive member; ``path`` is relative to the guest root (no leading ``/``)."""

    path: str
    mode: int  # full st_mode: type bits | permission bits
    data: bytes = b""  # file contents, or the target of a symlink
    source: Path | None = None  # regular file contents read from here at write time
    rdev: tuple[int, int] = (0, 0)  # (major, minor) for device nodes


class Archive:
    """An in-memory list of members, written sorted so the output is reproducible.

    Parent directories are added implicitly (mode 0755).  Adding the same path
    twice is an error: it always means two recipe steps disagree.
    """

    def __init__(self) -> None:
        self._entries: dict[str, Entry] = {}

    def __contains__(self, path: str) -> bool:
        return _norm(path) in self._entries

    def paths(self) -> list[str]:
        return sorted(self._entries)

    def _add(self, entry: Entry) -> None:
        path = _norm(entry.path)
        if path in self._entries:
            existing = self._entries[path]
            if stat.S_ISDIR(existing.mode) and stat.S_ISDIR(entry.mode):
                return
            raise ImageError(f"initramfs: {path!r} added twice (recipe bug: two steps install the same file)")
        parent = str(PurePosixPath(path).parent)
        if parent not in (".", ""):
            self.dir(parent)
        self._entries[path] = Entry(path, entry.mode, entry.data, entry.source, entry.rdev)

    def dir(self, path: str, perm: int = 0o755) -> None:
        self._add(Entry(path, stat.S_IFDIR | perm))

    def file(self, path: str, data: bytes, perm: int = 0o644) -> None:
        self._add(Entry(path, stat.S_IFREG | perm, data=data))

    def copy(self, path: str, source: Path, perm: int | None = None) -> None:
        """Add the host file ``source`` at ``path`` (permissions from the host unless given)."""
        try:
            st = source.stat()
        except OSError as err:
            raise ImageError(f"initramfs: cannot read {source}: {err.strerror}") from err
        self._add(Entry(path, stat.S_IFREG | (stat.S_IMODE(st.st_mode) if perm is None else perm), source=source))

    def symlink(self, path: str, target: str) -> None:
        self._add(Entry(path, stat.S_IFLNK | 0o777, data=target.encode()))

    def chardev(self, path: str, major: int, minor: int, perm: int = 0o600) -> None:
        self._add(Entry(path, stat.S_IFCHR | perm, rdev=(major, minor)))

    def write(self, out: BinaryIO, *, mtime: int = 0) -> int:
        """Write the archive; return the number of bytes written."""
        written = 0
        for ino, path in enumerate(sorted(self._entries), start=1):
            entry = self._entries[path]
            data = entry.data
            if entry.source is not None:
                data = entry.source.read_bytes()
            written += _write_member(out, path, entry.mode, data, ino=ino, mtime=mtime, rdev=entry.rdev)
        written += _write_member(out, _TRAILER, 0, b"", ino=0, mtime=0, rdev=(0, 0))
        return written


def _norm(path: str) -> str:
    norm = str(PurePosixPath("/" + path)).lstrip("/")
    if not norm or ".." in PurePosixPath(norm).parts:
        raise ImageError(f"initramfs: bad member path {path!r}")
    return norm


def _pad(n: int) -> bytes:
    return b"\0" * (-n % 4)


def _write_member(out: BinaryIO, name: str, mode: int, data: bytes, *, ino: int, mtime: int,
                  rdev: tuple[int, int]) -> int:
    name_b = name.encode() + b"\0"
    nlink = 2 if stat.S_ISDIR(mode) else 1
    fields = (ino, mode, 0, 0, nlink, mtime, len(data), 0, 0, rdev[0], rdev[1], len(name_b), 0)
    header = _MAGIC + b"".join(b"%08X" % f for f in fields)
    chunk = header + name_b + _pad(len(header) + len(name_b)) + data + _pad(len(data))
    out.write(chunk)
    return len(chunk)
