"""The image cache: find, lock, build, verify and remove images under ``cache_dir()/images``.

Why this shape: each build lives in ``<name>-<key>`` where the key hashes
everything that decides the output (recipe files, exact package versions,
host binaries, options), so a changed input means a new directory and an
unchanged one is reused.  A build happens in a temporary directory renamed
into place, so a directory that exists is complete; an ``fcntl`` lock per
key makes a second run that wants the same image wait and reuse it instead
of building it twice.  A cached image that fails verification is an error
naming the file and the fix — never rebuilt silently, because a base image
that changed after its build usually means something wrote into it.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from harness.errors import ImageError
from harness.images import manifest as mf
from harness.images.artifact import ImageArtifact
from harness.images.recipe import KEY_LENGTH, Plan, Recipe
from harness.paths import cache_dir
from harness.timeouts import active as active_timeouts
from harness.wait import NotYet, wait_for

log = logging.getLogger(__name__)

LOCK_POLL = 0.2
# On use, images up to this size are checked by SHA256 (≈ 0.6 s per GiB here); bigger
# ones (the debian disk) by size and mtime, with SHA256 left to `klharness image verify`.
FULL_VERIFY_LIMIT = 256 << 20


def images_root() -> Path:
    path = cache_dir() / "images"
    path.mkdir(parents=True, exist_ok=True)
    return path


def entry_dir(name: str, key: str) -> Path:
    return images_root() / f"{name}-{key[:KEY_LENGTH]}"


def fix_hint(directory: Path) -> str:
    name = directory.name.rsplit("-", 1)[0]
    return (f"remove it with `klharness image rm {directory.name}` and it is rebuilt on next use "
            f"(or `klharness image build {name} --force`)")


@contextlib.contextmanager
def entry_lock(directory: Path, *, timeout: float | None = None) -> Iterator[None]:
    """Hold the exclusive lock of one cache entry (waits for another holder, up to ``timeout``).

    The lock file lives in ``.locks`` beside the entry, so any cache (images, VMM builds) can use it.
    """
    locks = directory.parent / ".locks"
    locks.mkdir(parents=True, exist_ok=True)
    path = locks / f"{directory.name}.lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        waited: list[str] = []

        def take() -> None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
                if not waited:
                    log.info("waiting for another klharness (pid %s) building %s", holder, directory.name)
                waited[:] = [holder]
                raise NotYet(f"pid {holder} holds {path}") from None

        wait_for(f"the build lock of {directory.name}", take, timeout=timeout or active_timeouts().image_lock,
                 initial=LOCK_POLL, cap=LOCK_POLL, error=ImageError,
                 detail=lambda: f"if pid {waited[-1] if waited else '?'} is gone or stuck, kill it")
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)


def obtain(recipe: Recipe, plan: Plan, *, force: bool = False) -> ImageArtifact:
    """The verified image for ``plan``: reused when cached, else built (once, even across processes)."""
    final = entry_dir(recipe.name, plan.key)
    with entry_lock(final):
        if final.exists() and not force:
            manifest = mf.Manifest.load(final)
            mf.verify(final, manifest, full=manifest.size_bytes <= FULL_VERIFY_LIMIT, fix_hint=fix_hint(final))
            log.debug("reusing image %s", final)
            return manifest.artifact_for(final)
        return _build(recipe, plan, final)


def _build(recipe: Recipe, plan: Plan, final: Path) -> ImageArtifact:
    root = final.parent
    for stale in [*root.glob(f".build-{final.name}-*"), *root.glob(f".work-{final.name}-*")]:
        shutil.rmtree(stale, ignore_errors=True)  # left by a killed build of this key (we hold its lock)
    out = Path(tempfile.mkdtemp(prefix=f".build-{final.name}-", dir=root))
    work = Path(tempfile.mkdtemp(prefix=f".work-{final.name}-", dir=root))
    log.info("building image %s in %s", final.name, out)
    start = time.monotonic()
    try:
        result = recipe.build(plan, out, work)
        names = [str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()]
        make_readable(out)  # QEMU under libvirt runs as libvirt-qemu and must read these
        manifest = mf.Manifest(
            name=recipe.name,
            key=plan.key,
            build_seconds=round(time.monotonic() - start, 2),
            kernel_version=result.kernel_version,
            inputs={**plan.inputs, "options": dict(plan.options), "notes": dict(result.notes)},
            artifact=dict(result.artifact),
            files=mf.record_files(out, names),
            external={str(p): mf.FileRecord.of(p, hash_it=False) for p in result.external},
        )
        mf.write(out, manifest)
        (out / mf.MANIFEST).chmod(0o644)
        replace_dir(out, final)
    except BaseException:
        shutil.rmtree(out, ignore_errors=True)
        raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    log.info("built image %s in %.1fs (%.1f MiB)", final.name, manifest.build_seconds, manifest.size_bytes / 2**20)
    return manifest.artifact_for(final)


def make_readable(directory: Path) -> None:
    directory.chmod(0o755)
    for path in directory.rglob("*"):
        if not path.is_symlink():
            path.chmod(0o755 if path.is_dir() else 0o644)


def replace_dir(new: Path, final: Path) -> None:
    """Rename ``new`` to ``final``; an existing ``final`` (forced rebuild) is moved aside and deleted."""
    old = None
    if final.exists():
        old = final.with_name(f".old-{final.name}-{os.getpid()}")
        final.rename(old)
    new.rename(final)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


@dataclass(frozen=True)
class CachedImage:
    """One directory in the cache, with its manifest or the reason it has none."""

    directory: Path
    manifest: mf.Manifest | None
    problem: str = ""

    @property
    def name(self) -> str:
        return self.manifest.name if self.manifest else self.directory.name.rsplit("-", 1)[0]


def entries() -> list[CachedImage]:
    found = []
    for directory in sorted(images_root().iterdir()):
        if directory.name.startswith(".") or not directory.is_dir():
            continue
        try:
            found.append(CachedImage(directory, mf.Manifest.load(directory)))
        except ImageError as err:
            found.append(CachedImage(directory, None, str(err)))
    return found


def select(name_or_key: str, known_names: Mapping[str, object]) -> list[CachedImage]:
    """Entries matching a recipe name (all its builds), a directory name, or a key prefix (≥ 4 digits)."""
    everything = entries()
    if name_or_key in known_names:
        return [e for e in everything if e.name == name_or_key]
    chosen = [e for e in everything if e.directory.name == name_or_key or (
        len(name_or_key) >= 4 and e.manifest is not None and e.manifest.key.startswith(name_or_key))]
    if not chosen:
        have = ", ".join(e.directory.name for e in everything) or "none"
        raise ImageError(f"no cached image matches {name_or_key!r}: give an image name "
                         f"({', '.join(sorted(known_names))}), a directory name or a key prefix; cached: {have}")
    return chosen


def remove(entry: CachedImage) -> None:
    with entry_lock(entry.directory):
        doomed = entry.directory.with_name(f".old-{entry.directory.name}-{os.getpid()}")
        entry.directory.rename(doomed)
        shutil.rmtree(doomed)


def verify_entry(entry: CachedImage, *, full: bool = True) -> None:
    """Check one cached image (SHA256 of every file by default); raise ImageError when bad."""
    if entry.manifest is None:
        raise ImageError(entry.problem)
    mf.verify(entry.directory, entry.manifest, full=full, fix_hint=fix_hint(entry.directory))
