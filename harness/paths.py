"""Where klharness keeps things on disk, in one place.

Why: builds, images and results must land in predictable, overridable places
so two runs, CI and a lab host never fight over paths.
"""

from __future__ import annotations

import os
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
CSRC_DIR = PACKAGE_DIR / "csrc"
REPO_DIR = PACKAGE_DIR.parent
PROFILE_DIR = REPO_DIR / "configs" / "profiles"


def profile_path(name: str) -> Path:
    """The file of the expectation profile called ``name`` (configs name profiles, load them later)."""
    return PROFILE_DIR / f"{name}.yaml"


def available_profiles() -> list[str]:
    return sorted(p.stem for p in PROFILE_DIR.glob("*.yaml"))


def cache_dir() -> Path:
    """Build and image cache: ``$KLHARNESS_CACHE``, else ``/var/cache/klharness`` for root, else
    ``~/.cache/klharness``.

    Not under root's home: QEMU runs as ``libvirt-qemu`` under ``qemu:///system`` and must
    traverse every directory down to the kernel, initramfs and base disks (``/root`` is 0700).
    """
    base = os.environ.get("KLHARNESS_CACHE")
    if base:
        path = Path(base)
    elif os.geteuid() == 0:
        path = Path("/var/cache/klharness")
    else:
        path = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "klharness"
    path.mkdir(parents=True, exist_ok=True)
    return path


def results_dir() -> Path:
    """Default results root: ``$KLHARNESS_RESULTS`` or ``./results``."""
    return Path(os.environ.get("KLHARNESS_RESULTS", "results")).resolve()
