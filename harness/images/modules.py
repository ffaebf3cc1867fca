"""Out-of-tree kernel modules (``klhelper``) built on this host for a guest image's kernel.

Why on the host: the ``mini`` image has no compiler, and building a module in
a TCG guest takes 30-60 s per boot.  The image's kernel is a distribution
package, so its headers are one too: they are downloaded (never installed on
the host), unpacked into the cache, and the module is built against them
with the host's compiler — the same GCC major version the distribution built
its kernel with (Debian 12: GCC 12).  The result is cached by the hash of
the module sources, the exact header package versions and the compiler, and
its ``vermagic`` is checked against the image's kernel before it is used.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from harness import cbuild, proc
from harness.errors import BuildError, CommandError, ImageError
from harness.images import debs
from harness.images.artifact import ImageArtifact
from harness.images.cache import entry_lock, replace_dir
from harness.paths import cache_dir
from harness.timeouts import active as active_timeouts

log = logging.getLogger(__name__)



@dataclass(frozen=True)
class ModuleSource:
    """An out-of-tree module: its name, the file it builds, and its sources as one archive."""

    name: str
    archive: bytes  # a tar.gz of the sources (harness.guest.klhelper.source_archive)


def headers_packages(kernel_version: str) -> list[debs.Package]:
    """``linux-headers-<version>`` and the ``linux-*`` packages it depends on (common headers, kbuild)."""
    top = f"linux-headers-{kernel_version}"
    names = [top, *(d for d in debs.depends(top) if d.startswith("linux-") and "compiler" not in d)]
    return [debs.resolve(n) for n in names]


def module_for(image: ImageArtifact, source: ModuleSource) -> Path:
    """The ``.ko`` of ``source`` for ``image``'s kernel: cached, or built now — against the kernel's own build
    tree when it is ours (``kernel_build``), else against the distribution's headers packages."""
    if not image.kernel_version:
        raise ImageError(f"image {image.name} does not say which kernel it boots: the module must be built in the "
                         "guest against its own headers")
    packages = [] if image.kernel_build else headers_packages(image.kernel_version)
    compiler = cbuild.compiler_version().splitlines()[0]
    against = [str(image.kernel_build)] if image.kernel_build else [str(p) for p in packages]
    key = hashlib.sha256(json.dumps({"module": source.name, "sources": hashlib.sha256(source.archive).hexdigest(),
                                     "headers": against, "compiler": compiler},
                                    sort_keys=True).encode()).hexdigest()
    root = cache_dir() / "modules"
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"{source.name}-{image.kernel_version}-{key[:16]}"
    ko = final / f"{source.name}.ko"
    with entry_lock(final):
        if not ko.is_file():
            _build(source, image.kernel_version, packages, final, kdir=image.kernel_build)
        _check_vermagic(ko, image.kernel_version)
    return ko


def _build(source: ModuleSource, kernel_version: str, packages: list[debs.Package], final: Path, *,
           kdir: Path | None) -> None:
    import io
    import tarfile

    work = Path(tempfile.mkdtemp(prefix=f".build-{final.name}-", dir=final.parent))
    try:
        if kdir is None:
            tree = work / "headers"
            for pkg in packages:
                debs.extract(debs.fetch(pkg), tree)
            kdir = tree / "usr" / "src" / f"linux-headers-{kernel_version}"
            _relocate_makefile(kdir, tree)
        elif not (kdir / "Module.symvers").is_file():
            raise BuildError(f"{kdir}: not a kernel build tree (no Module.symvers); rebuild the image "
                             "(klharness image build --force mini)")
        src = work / "src"
        src.mkdir()
        with tarfile.open(fileobj=io.BytesIO(source.archive), mode="r:gz") as tar:
            tar.extractall(src, filter="data")
        try:
            res = proc.run(["make", "-C", str(src), f"KDIR={kdir}"], timeout=active_timeouts().module_build,
                           check=False)
        except CommandError as err:
            raise BuildError(f"building {source.name} for {kernel_version} on this host: {err}") from err
        if not res.ok:
            raise BuildError(f"building {source.name} for {kernel_version} on this host failed: {res.describe()}")
        out = work / "out"
        out.mkdir()
        shutil.copy2(src / f"{source.name}.ko", out / f"{source.name}.ko")
        (out / f"{source.name}.ko").chmod(0o644)
        (out / "build.log").write_text(res.stdout + res.stderr)
        replace_dir(out, final)
        log.info("built %s.ko for %s on the host", source.name, kernel_version)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _relocate_makefile(kdir: Path, tree: Path) -> None:
    """Debian's per-flavour headers Makefile includes the common one by absolute path: point it into ``tree``."""
    makefile = kdir / "Makefile"
    try:
        text = makefile.read_text()
    except OSError as err:
        raise BuildError(f"{makefile}: {err.strerror} (is {kdir.name} a headers package?)") from err
    makefile.write_text(text.replace("include /usr/src/", f"include {tree}/usr/src/"))


def _check_vermagic(ko: Path, kernel_version: str) -> None:
    vermagic = proc.run(["modinfo", "-F", "vermagic", str(ko)], timeout=active_timeouts().tool).stdout.strip()
    if vermagic.split(" ", 1)[0] != kernel_version:
        raise BuildError(f"{ko}: vermagic {vermagic!r} is not for {kernel_version}; remove {ko.parent} to rebuild")
