"""``qemu-kl``: Debian's QEMU with klharness's Key Locker patches, built once and cached.

Why a build of our own: no VMM executes Key Locker (KEYLOCKER.md §6), so the
harness's native path — real ``.byte`` instructions, CR4.KL, LOADIWKEY at
ring 0, the backup MSRs — could only ever run on silicon.  The patch series
in ``qemu-kl/`` teaches QEMU's TCG all of it; this module turns it into a
``qemu-system-x86_64`` that libvirt starts through ``<emulator>``.

Steps, each with its own error naming the step and the log:
fetch (Debian's ``qemu`` source through the package registry), unpack
(``dpkg-source -x``), patch (each file of ``qemu-kl/series``), configure (a
minimal x86_64-softmmu TCG build), build (``ninja``), install (stripped,
into ``cache_dir()/vmm/qemu-kl-<key>/``).  The key hashes the wanted source
version, every patch, the configure flags and this builder's version; a
directory that exists is complete (built aside and renamed), is verified by
SHA256 on use, and never replaces Debian's own QEMU.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness import proc
from harness.buildsteps import BuildSteps
from harness.errors import BuildError
from harness.images.cache import entry_lock, make_readable, replace_dir
from harness.images.manifest import sha256_file
from harness.paths import REPO_DIR, cache_dir
from harness.timeouts import active as active_timeouts
from harness.vmm import debian_source

log = logging.getLogger(__name__)

NAME = "qemu-kl"
BUILDER_VERSION = 1
PATCH_DIR = REPO_DIR / "qemu-kl"
SOURCE_PACKAGE = "qemu"
# The Debian revision the series was written on; a newer one is tried and recorded (QEMU_KL.md).
WANTED_VERSION = "1:7.2+dfsg-7+deb12u18"
CONFIGURE_FLAGS = (
    "--target-list=x86_64-softmmu", "--without-default-features", "--enable-tcg", "--enable-kvm",
    "--enable-slirp", "--disable-docs", "--disable-tools", "--disable-guest-agent", "--disable-user",
    # The DFSG tarball ships no firmware: Debian's packages (seabios, ipxe-qemu, qemu-system-data) do.
    "--firmwarepath=/usr/share/qemu:/usr/share/seabios:/usr/lib/ipxe/qemu",
)
# A plain PATH: a pyenv shim `python3` ahead of /usr/bin breaks QEMU's configure (HOST_NOTES.md).
BUILD_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C"}
BINARY = "qemu-system-x86_64"
MANIFEST = "manifest.json"


@dataclass(frozen=True)
class QemuKl:
    """An installed, verified qemu-kl build."""

    binary: Path
    key: str
    qemu_version: str
    source_version: str
    source_note: str
    patches: tuple[str, ...]
    build_seconds: float
    log: Path

    def describe(self) -> str:
        return (f"{NAME} {self.key[:12]}: QEMU {self.qemu_version} from Debian source {self.source_version} "
                f"+ {len(self.patches)} Key Locker patches ({self.binary})")

    def to_dict(self) -> dict[str, Any]:
        return {"name": NAME, "binary": str(self.binary), "key": self.key, "qemu_version": self.qemu_version,
                "source_version": self.source_version, "source_note": self.source_note,
                "patches": list(self.patches), "build_seconds": self.build_seconds, "log": str(self.log)}


def series() -> list[Path]:
    """The patch files in applying order (``qemu-kl/series``, quilt style)."""
    listing = PATCH_DIR / "series"
    if not listing.is_file():
        raise BuildError(f"{listing} is missing: the qemu-kl patch series lists its patches there")
    names = [ln.split("#", 1)[0].strip() for ln in listing.read_text().splitlines()]
    paths = [PATCH_DIR / "patches" / n for n in names if n]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing or not paths:
        raise BuildError(f"{listing}: patch files missing: {', '.join(missing) or 'the list is empty'}")
    return paths


def build_key() -> str:
    digest = hashlib.sha256()
    digest.update(json.dumps({"builder": BUILDER_VERSION, "source": [SOURCE_PACKAGE, WANTED_VERSION],
                              "flags": CONFIGURE_FLAGS}, sort_keys=True).encode())
    for patch in series():
        digest.update(patch.name.encode() + b"\0" + hashlib.sha256(patch.read_bytes()).digest())
    return digest.hexdigest()


def vmm_root() -> Path:
    path = cache_dir() / "vmm"
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(0o755)  # QEMU runs as libvirt-qemu and must reach the binary
    return path


def entry_dir(key: str) -> Path:
    return vmm_root() / f"{NAME}-{key[:16]}"


_verified: dict[tuple[str, int], QemuKl] = {}


def installed() -> QemuKl:
    """The verified build for the current patch series; BuildError saying how to build it if there is none.

    Verified once per process and binary (a SHA256 of 16 MB, ~30 ms), then remembered.
    """
    key = build_key()
    final = entry_dir(key)
    if not (final / MANIFEST).is_file():
        raise BuildError(f"{NAME} is not built for this patch series (no {final}): run `klharness vmm build "
                         f"{NAME}` (scripts/setup-host does it; ~4 min once per machine)")
    try:
        stamp = (key, (final / "bin" / BINARY).stat().st_mtime_ns)
    except OSError:
        return _verify(final)  # reports the missing binary
    if stamp not in _verified:
        _verified[stamp] = _verify(final)
    return _verified[stamp]


def obtain(*, force: bool = False, progress: Any = None) -> tuple[QemuKl, bool]:
    """(build, built_now): the cached build, or a fresh one (once, even across processes)."""
    key = build_key()
    final = entry_dir(key)
    with entry_lock(final, timeout=active_timeouts().vmm_build):
        if (final / MANIFEST).is_file() and not force:
            return _verify(final), False
        return _build(key, final, progress or (lambda msg: None)), True


def _verify(final: Path) -> QemuKl:
    try:
        data = json.loads((final / MANIFEST).read_text())
    except (OSError, ValueError) as err:
        raise BuildError(f"{final / MANIFEST} is unreadable ({err}): remove {final} and run `klharness vmm build "
                         f"{NAME}`") from err
    binary = final / "bin" / BINARY
    try:
        digest = sha256_file(binary)
    except OSError as err:
        raise BuildError(f"{binary}: {err.strerror}; remove {final} and run `klharness vmm build {NAME}`") from err
    if digest != data.get("sha256"):
        raise BuildError(f"{binary} does not match its manifest (SHA256 {digest[:16]}, recorded "
                         f"{str(data.get('sha256'))[:16]}): something changed it; remove {final} and run "
                         f"`klharness vmm build {NAME} --force`")
    return QemuKl(binary, data["key"], data["qemu_version"], data["source_version"], data["source_note"],
                  tuple(data["patches"]), data["build_seconds"], Path(data["log"]))


def _build(key: str, final: Path, progress: Any) -> QemuKl:
    root = final.parent
    logs = root / "logs"
    logs.mkdir(exist_ok=True)
    log_path = logs / f"{final.name}.log"
    for stale in root.glob(f".build-{final.name}-*"):
        shutil.rmtree(stale, ignore_errors=True)  # a killed build of this key (we hold its lock)
    work = Path(tempfile.mkdtemp(prefix=f".build-{final.name}-", dir=root))
    start = time.monotonic()
    with log_path.open("w") as logf:
        step = BuildSteps(NAME, logf, log_path, progress)
        try:
            source = step.do("fetch source", lambda: debian_source.fetch(
                SOURCE_PACKAGE, WANTED_VERSION, root / "src", work))
            logf.write(f"source: {source.note}\n")
            tree = work / "src"
            step.do("unpack", lambda: debian_source.unpack(source, tree))
            patches = series()
            for patch in patches:
                step.run(f"apply {patch.name}", ["patch", "-p1", "--forward", "--batch", "-i", str(patch)], tree,
                         active_timeouts().build_step, BUILD_ENV)
            build = tree / "build"
            build.mkdir()
            limits = active_timeouts()
            step.run("configure", ["../configure", *CONFIGURE_FLAGS], build, limits.vmm_configure, BUILD_ENV)
            step.run(f"build (ninja, ~4 min on {os.cpu_count()} cores)", ["ninja", f"-j{os.cpu_count() or 2}", BINARY],
                     build, limits.vmm_build, BUILD_ENV)
            out = work / "out"
            (out / "bin").mkdir(parents=True)
            step.run("install", ["strip", "-o", str(out / "bin" / BINARY), str(build / BINARY)], build,
                     limits.build_step, BUILD_ENV)
            version = proc.run([out / "bin" / BINARY, "--version"], timeout=limits.tool).stdout.splitlines()[0]
            took = round(time.monotonic() - start, 1)
            manifest = {"name": NAME, "key": key, "sha256": sha256_file(out / "bin" / BINARY),
                        "qemu_version": version.removeprefix("QEMU emulator version ").strip(),
                        "source_version": source.version, "source_note": source.note,
                        "patches": [p.name for p in patches], "configure": list(CONFIGURE_FLAGS),
                        "build_seconds": took, "built_at": time.time(), "log": str(log_path)}
            (out / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
            make_readable(out)
            (out / "bin" / BINARY).chmod(0o755)
            replace_dir(out, final)
            logf.write(f"installed {final} in {took} s\n")
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return _verify(final)
