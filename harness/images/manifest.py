"""The record of one built image: its files, their hashes, and how to boot it.

Why: a cached image is trusted only as far as it can be checked.  Each build
writes ``manifest.json`` listing every output file with size, SHA256 and
mtime; on use we compare against it, so a truncated download, a half-written
build or a guest that wrote into a base image is caught and named instead of
booting something unknown.  The manifest also holds the artifact fields
(paths relative to the image directory), so listing images needs no recipe.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from harness.errors import ImageError
from harness.images.artifact import ImageArtifact

MANIFEST = "manifest.json"
FORMAT = 1
# Artifact fields that name files inside the image directory.
PATH_FIELDS = ("kernel", "kernel_bzimage", "initrd", "disk", "seed_iso", "kernel_build")


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True)
class FileRecord:
    size: int
    sha256: str
    mtime_ns: int

    @classmethod
    def of(cls, path: Path, *, hash_it: bool = True) -> FileRecord:
        """Record ``path`` now; ``hash_it=False`` for big files outside the cache (size and mtime only)."""
        try:
            st = path.stat()
        except OSError as err:
            raise ImageError(f"{path}: {err.strerror}") from err
        return cls(st.st_size, sha256_file(path) if hash_it else "", st.st_mtime_ns)


@dataclass(frozen=True)
class Manifest:
    """What ``manifest.json`` holds.  ``artifact`` uses paths relative to the image directory,
    except ``external`` files (a user's cloud base image), which are absolute and checked by
    size and mtime only."""

    name: str
    key: str
    build_seconds: float
    kernel_version: str
    inputs: Mapping[str, Any]
    artifact: Mapping[str, Any]
    files: Mapping[str, FileRecord]
    external: Mapping[str, FileRecord] = field(default_factory=dict)
    format: int = FORMAT

    @property
    def size_bytes(self) -> int:
        return sum(rec.size for rec in self.files.values())

    def to_json(self) -> str:
        data = asdict(self)
        return json.dumps(data, indent=2, sort_keys=True) + "\n"

    @classmethod
    def load(cls, directory: Path) -> Manifest:
        path = directory / MANIFEST
        try:
            data = json.loads(path.read_text())
            files = {name: FileRecord(**rec) for name, rec in data.pop("files").items()}
            external = {name: FileRecord(**rec) for name, rec in data.pop("external", {}).items()}
            manifest = cls(files=files, external=external, **data)
        except FileNotFoundError as err:
            raise ImageError(f"{path} is missing: the image build did not finish; remove {directory} "
                             f"(`klharness image rm {directory.name}`) and build again") from err
        except (OSError, ValueError, TypeError, KeyError) as err:
            raise ImageError(f"{path} is unreadable ({err}); remove the image with "
                             f"`klharness image rm {directory.name}` and build again") from err
        if manifest.format != FORMAT:
            raise ImageError(f"{path}: manifest format {manifest.format}, this klharness reads {FORMAT}; "
                             f"`klharness image rm {directory.name}` and build again")
        return manifest

    def artifact_for(self, directory: Path) -> ImageArtifact:
        fields = dict(self.artifact)
        for name in PATH_FIELDS:
            value = fields.get(name)
            if value is not None:
                fields[name] = Path(value) if Path(value).is_absolute() else directory / value
        fields["features"] = frozenset(fields.get("features", ()))
        return ImageArtifact(name=self.name, key=self.key, directory=directory, kernel_version=self.kernel_version,
                             build_seconds=self.build_seconds, size_bytes=self.size_bytes, **fields)


def record_files(directory: Path, names: Iterable[str]) -> dict[str, FileRecord]:
    return {name: FileRecord.of(directory / name) for name in sorted(names)}


def write(directory: Path, manifest: Manifest) -> None:
    tmp = directory / f".{MANIFEST}.{os.getpid()}.tmp"
    tmp.write_text(manifest.to_json())
    tmp.replace(directory / MANIFEST)


def verify(directory: Path, manifest: Manifest, *, full: bool, fix_hint: str) -> None:
    """Check every recorded file; raise ImageError naming the first bad one and ``fix_hint``.

    ``full`` compares SHA256 (reads everything); otherwise size and mtime,
    which catches truncation and any write through the normal file API.
    """
    checks = [(directory / name, rec, full) for name, rec in manifest.files.items()]
    checks += [(Path(name), rec, False) for name, rec in manifest.external.items()]
    for path, rec, hash_it in checks:
        try:
            st = path.stat()
        except OSError as err:
            raise ImageError(f"image {manifest.name}: {path} is missing ({err.strerror}); {fix_hint}") from err
        if st.st_size != rec.size:
            raise ImageError(f"image {manifest.name}: {path} is {st.st_size} bytes, the manifest says {rec.size} "
                             f"(corrupt or changed after the build); {fix_hint}")
        if hash_it:
            digest = sha256_file(path)
            if digest != rec.sha256:
                raise ImageError(f"image {manifest.name}: {path} has SHA256 {digest[:16]}…, the manifest says "
                                 f"{rec.sha256[:16]}… (corrupt or changed); {fix_hint}")
        elif st.st_mtime_ns != rec.mtime_ns:
            raise ImageError(f"image {manifest.name}: {path} was modified after the build (mtime changed); "
                             f"{fix_hint}")
