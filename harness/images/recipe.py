"""What every image recipe provides, and the registry of known recipes.

Why split plan from build: the cache key must be known *before* building
(to find a cached image, and to lock the right entry), so a recipe first
resolves everything that decides its output — source files, exact package
versions, host binaries, options — into a :class:`Plan`, and only builds when
no verified image with that key exists.
"""

from __future__ import annotations

import difflib
import hashlib
import json
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from harness.errors import ImageError
from harness.paths import REPO_DIR

KEY_LENGTH = 16  # hex digits of the key used in directory names


@dataclass(frozen=True)
class Plan:
    """A recipe's resolved inputs.  ``inputs`` is JSON-able and hashed into the key;
    ``private`` carries resolved objects the build step needs (not hashed)."""

    recipe: str
    options: Mapping[str, str]
    inputs: Mapping[str, Any]
    private: Mapping[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> str:
        blob = json.dumps({"recipe": self.recipe, "inputs": self.inputs}, sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()


@dataclass(frozen=True)
class BuildResult:
    """What a build produced in its output directory.

    ``artifact``: :class:`~harness.images.artifact.ImageArtifact` fields, with
    file paths relative to the output directory (or absolute for ``external``
    files that live outside the cache, like a user's cloud base image).
    """

    artifact: Mapping[str, Any]
    kernel_version: str = ""
    external: tuple[Path, ...] = ()
    notes: Mapping[str, Any] = field(default_factory=dict)  # recorded in the manifest's inputs, not hashed


@dataclass(frozen=True)
class Option:
    help: str
    default: str | None = None


class Recipe(ABC):
    """One way to make a guest image.  Subclasses set the class attributes and two methods."""

    name: ClassVar[str]
    summary: ClassVar[str]
    default: ClassVar[bool] = False  # built by `image build` without a name / by CI warm-up
    # Files (relative to the repo) whose content decides the output: the recipe's Python
    # modules and its guest-side files.  Globs allowed.
    sources: ClassVar[tuple[str, ...]] = ()
    options: ClassVar[Mapping[str, Option]] = {}

    def check_options(self, options: Mapping[str, str]) -> dict[str, str]:
        """Unknown option names are errors with a suggestion; defaults fill the rest."""
        for key in options:
            if key not in self.options:
                close = difflib.get_close_matches(key, list(self.options), n=1, cutoff=0.5)
                hint = f"did you mean {close[0]!r}? " if close else ""
                known = ", ".join(sorted(self.options)) or "none"
                raise ImageError(f"image {self.name}: unknown option {key!r}; {hint}known options: {known}")
        merged = {k: opt.default for k, opt in self.options.items() if opt.default is not None}
        merged.update(options)
        return merged

    def source_hashes(self) -> dict[str, str]:
        hashes: dict[str, str] = {}
        for pattern in self.sources:
            matches = sorted(p for p in REPO_DIR.glob(pattern) if p.is_file())
            if not matches:
                raise ImageError(f"image {self.name}: recipe file {REPO_DIR / pattern} not found "
                                 "(klharness must run from a source checkout)")
            for path in matches:
                hashes[str(path.relative_to(REPO_DIR))] = hashlib.sha256(path.read_bytes()).hexdigest()
        return hashes

    @abstractmethod
    def plan(self, options: Mapping[str, str]) -> Plan:
        """Resolve inputs (no downloads, no building); must be cheap."""

    @abstractmethod
    def build(self, plan: Plan, out: Path, work: Path) -> BuildResult:
        """Build into the empty directory ``out``; ``work`` is scratch space removed afterwards."""


def guest_file(recipe: str, name: str) -> Path:
    """A guest-side file of ``recipe`` from ``guest_images/``."""
    path = REPO_DIR / "guest_images" / recipe / name
    if not path.is_file():
        raise ImageError(f"{path} is missing (klharness must run from a source checkout)")
    return path
