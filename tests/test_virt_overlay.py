"""Overlays never write their base; QEMU-user path checks name the directory at fault."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import pytest

from harness import proc
from harness.errors import ImageError
from harness.virt.overlay import base_format, create_overlay
from harness.virt.qemu_access import unreachable


def test_overlay_is_qcow2_backed_by_the_untouched_base(tmp_path: Path) -> None:
    base = tmp_path / "base.raw"
    base.write_bytes(b"\0" * (1 << 20))
    before = base.stat().st_mtime_ns
    overlay = create_overlay(base, tmp_path / "overlay.qcow2", timeout=60)
    info = json.loads(proc.run(["qemu-img", "info", "--output=json", str(overlay)], timeout=60).stdout)
    assert info["format"] == "qcow2"
    assert info["backing-filename"] == str(base) and info["backing-filename-format"] == "raw"
    assert base_format(base, timeout=60) == "raw" and base.stat().st_mtime_ns == before


def test_missing_base_is_an_image_error(tmp_path: Path) -> None:
    with pytest.raises(ImageError, match=r"base image .* is missing"):
        create_overlay(tmp_path / "nope.qcow2", tmp_path / "o.qcow2", timeout=60)


def test_unreachable_names_the_untraversable_directory() -> None:
    nobody = 65534
    with tempfile.TemporaryDirectory(dir="/tmp") as top:  # /tmp: every parent traversable
        os.chmod(top, 0o755)
        locked = Path(top) / "locked"
        locked.mkdir(mode=0o700)
        kernel = locked / "vmlinux"
        kernel.write_bytes(b"x")
        why = unreachable(kernel, nobody, set())
        assert why == f"directory {locked} (mode drwx------) cannot be traversed"
        os.chmod(locked, 0o711)
        os.chmod(kernel, 0o600)
        assert unreachable(kernel, nobody, set()) == f"{kernel} (mode -rw-------) cannot be read"
        os.chmod(kernel, 0o644)
        assert unreachable(kernel, nobody, set()) is None
        assert unreachable(locked / "missing", nobody, set()) == f"{locked / 'missing'} does not exist"
