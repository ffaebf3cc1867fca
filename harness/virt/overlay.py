"""Per-guest qcow2 overlays on top of a base disk that is never written.

Why: a base image is shared by every guest and by later runs (it is cached
by content hash); a guest writing into it would change every later result.
Each guest gets a thin qcow2 whose backing file (with its format recorded,
so nothing probes it) is the base.
"""

from __future__ import annotations

import json
from pathlib import Path

from harness import proc
from harness.errors import ImageError


def base_format(base: Path, *, timeout: float) -> str:
    """The on-disk format of ``base`` (``qcow2``, ``raw``), as qemu-img sees it."""
    res = proc.run(["qemu-img", "info", "--output=json", "-U", str(base)], timeout=timeout, check=False)
    if not res.ok:
        raise ImageError(f"cannot read base image {base}: {res.describe()}")
    return str(json.loads(res.stdout)["format"])


def create_overlay(base: Path, overlay: Path, *, timeout: float) -> Path:
    """Create ``overlay`` backed by ``base``; the base is opened read-only by qemu-img and QEMU."""
    if not base.is_absolute() or not base.is_file():
        raise ImageError(f"base image {base} is missing or not an absolute path")
    fmt = base_format(base, timeout=timeout)
    res = proc.run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", fmt, "-b", str(base), str(overlay)],
                   timeout=timeout, check=False)
    if not res.ok:
        raise ImageError(f"cannot create overlay {overlay} on {base}: {res.describe()}")
    return overlay
