"""Guest images: build once from distribution packages, cache by content, verify on use.

Public API::

    build_image("mini")                  -> ImageArtifact   (cached, verified)
    build_image("cloud", options={"base": "/srv/img/debian-12-genericcloud.qcow2"})
    list_images()                        -> [CachedImage]   (what is in the cache)
    remove_image("mini")                 -> [Path]          (all builds of mini, or one by dir name/key)
    verify_image("mini")                 -> [CachedImage]   (SHA256 of every file; raises on the first bad one)
    known_images()                       -> {name: summary}

Recipes: ``mini`` (default; kernel + busybox/dropbear initramfs), ``debian``
(debootstrap disk with gcc and kernel headers; minutes, never built by
default), ``cloud`` (a user's qcow2 plus a cloud-init seed).  The guest side
of each is in ``guest_images/`` (see its README for the contract).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from harness.errors import ImageError
from harness.images import cache
from harness.images.artifact import ImageArtifact
from harness.images.cache import CachedImage
from harness.images.cloud import CloudRecipe
from harness.images.debian import DebianRecipe
from harness.images.mini import MiniRecipe
from harness.images.recipe import Recipe

__all__ = [
    "CachedImage",
    "ImageArtifact",
    "build_image",
    "default_images",
    "get_recipe",
    "known_images",
    "list_images",
    "plan_key",
    "remove_image",
    "verify_image",
]


def _recipes() -> dict[str, Recipe]:
    return {r.name: r for r in (MiniRecipe(), DebianRecipe(), CloudRecipe())}


def known_images() -> dict[str, str]:
    """Recipe name → one-line summary."""
    return {name: r.summary for name, r in _recipes().items()}


def default_images() -> list[str]:
    """Images built when none is named (the debian disk takes minutes: not one of them)."""
    return [name for name, r in _recipes().items() if r.default]


def get_recipe(name: str) -> Recipe:
    recipes = _recipes()
    if name not in recipes:
        raise ImageError(f"unknown image {name!r}; known images: {', '.join(sorted(recipes))}")
    return recipes[name]


def plan_key(name: str, *, options: Mapping[str, str] | None = None) -> str:
    """The cache key ``build_image`` would use now (resolves package versions, builds nothing)."""
    return get_recipe(name).plan(dict(options or {})).key


def build_image(name: str, *, force: bool = False, options: Mapping[str, str] | None = None) -> ImageArtifact:
    """The image ``name`` with ``options``: reused from the cache when its inputs are unchanged
    and its files verify, else built (a concurrent builder of the same image is waited for)."""
    r = get_recipe(name)
    return cache.obtain(r, r.plan(dict(options or {})), force=force)


def list_images() -> list[CachedImage]:
    return cache.entries()


def remove_image(name_or_key: str) -> list[Path]:
    """Remove every cached build of an image name, or one build by directory name or key prefix."""
    removed = []
    for entry in cache.select(name_or_key, _recipes()):
        cache.remove(entry)
        removed.append(entry.directory)
    return removed


def verify_image(name_or_key: str) -> list[CachedImage]:
    """Full check (SHA256) of the matching cached builds; raises ImageError at the first bad file."""
    chosen = cache.select(name_or_key, _recipes())
    for entry in chosen:
        cache.verify_entry(entry, full=True)
    return chosen
