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


def cache_dir() -> Path:
    """Build and image cache: ``$KLHARNESS_CACHE`` or ``~/.cache/klharness``."""
    base = os.environ.get("KLHARNESS_CACHE")
    path = Path(base) if base else Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "klharness"
    path.mkdir(parents=True, exist_ok=True)
    return path


def results_dir() -> Path:
    """Default results root: ``$KLHARNESS_RESULTS`` or ``./results``."""
    return Path(os.environ.get("KLHARNESS_RESULTS", "results")).resolve()
