"""klharness's own guest kernel: Debian's Linux source with a small config, built once per machine.

Why: under TCG every initcall of a distribution kernel is paid in emulated instructions.  The
Debian cloud kernel spends most of its boot probing drivers and running self-tests no cell
needs; a kernel with only what the catalogue uses (PVH, serial, virtio-net/-rng/-blk, fw_cfg, the
ACPI power button, S3, CPU hot-plug, modules for ``klhelper``) reaches ``/init`` in a fraction of
that (docs/performance.md has the figures).  It is the same source — Debian's patched tree from
the ``linux-source-X.Y`` package, the package the distribution's own kernels are built from — so
what a cell checks of "a Linux guest" (CPUID as the kernel leaves it, CR4 handling, #UD and #GP
delivery, S3 and hot-plug paths) is that code; only drivers and options differ.  Where the stock
kernel's own build is what a cell checks, the ``mini`` image's ``kernel: debian`` keeps it.

The config is ``make tinyconfig`` with ``guest_images/kernel/klh.config`` merged on top, then
``olddefconfig``; every option the fragment asks for is checked in the result, so an option the
source cannot give (renamed, or missing a dependency) is an error naming it, not a silent gap.
The build is cached by the hash of the source package, the fragment, the build's flags and
the compiler, under ``<cache>/kernels/``; after it, ``make clean`` leaves the tree as a module build
directory, so ``klhelper`` is built against exactly this kernel.
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

from harness import cbuild, proc
from harness.buildsteps import BuildSteps
from harness.errors import BuildError, CommandError, ImageError
from harness.images import debs
from harness.images.cache import entry_lock, replace_dir
from harness.images.kernel import KernelTree, read_config
from harness.paths import REPO_DIR, cache_dir
from harness.timeouts import active as active_timeouts

log = logging.getLogger(__name__)

FRAGMENT = REPO_DIR / "guest_images" / "kernel" / "klh.config"
LOCALVERSION = "-klh"  # the kernel release says whose config it is: 6.1.192-klh
DEFAULT_SOURCE = "linux-source"  # Debian's metapackage: depends on the stable linux-source-X.Y
DONE = "kernel.json"  # written last: an entry without it is an interrupted build
# GCC expands a memset of unknown value inline as `rep stosb`, which TCG executes a byte at a time
# (~260 ns each here): poisoning the 760 KiB of init memory freed before /init took 0.2 s of every
# boot, sampled at free_reserved_area's `rep stos`.  Unrolled store loops do the same work in a
# fraction of that under TCG and cost nothing measurable on hardware.
KCFLAGS = "-mstringop-strategy=unrolled_loop"
# What the cache key takes of this module: the build's inputs, not its text (a refactor of this file
# must not cost every machine a 5-minute rebuild).  Raise it when a change here changes the output.
BUILDER_VERSION = 1


@dataclass(frozen=True)
class KernelPlan:
    """The resolved inputs of one kernel build; ``key`` names its cache entry."""

    source: debs.Package  # linux-source-X.Y
    fragment: str  # the config fragment's text
    compiler: str  # first line of `gcc --version`

    @property
    def key(self) -> str:
        blob = json.dumps({"source": f"{self.source.name}={self.source.version} sha256:{self.source.sha256}",
                           "fragment": hashlib.sha256(self.fragment.encode()).hexdigest(),
                           "build": {"builder": BUILDER_VERSION, "kcflags": KCFLAGS, "localversion": LOCALVERSION},
                           "compiler": self.compiler}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()

    def describe(self) -> str:
        return f"{self.source.name} {self.source.version}, guest_images/kernel/klh.config"


@dataclass(frozen=True)
class OwnKernel:
    """A built kernel: ``tree`` is laid out like an unpacked kernel package (boot/, lib/modules/), so the
    initramfs code treats it as one; ``vmlinux`` is the PVH ELF; ``build`` is the tree modules build in."""

    directory: Path
    release: str  # `uname -r` in the guest: 6.1.192-klh
    source: str  # what it was built from, for the run record

    @property
    def tree(self) -> KernelTree:
        return KernelTree(self.directory / "root", self.release)

    @property
    def vmlinux(self) -> Path:
        return self.directory / "vmlinux"

    @property
    def build(self) -> Path:
        return self.directory / "build"


def plan_kernel(source_package: str = DEFAULT_SOURCE) -> KernelPlan:
    """Resolve the source package (a metapackage to the ``linux-source-X.Y`` it installs); cheap, no download."""
    name = source_package
    if name == DEFAULT_SOURCE:
        versioned = [d for d in debs.depends(name) if d.startswith("linux-source-")]
        if not versioned:
            raise ImageError(f"the apt index has no {name} package depending on a linux-source-X.Y; run "
                             "`apt-get update` (scripts/setup-host) or set the image option kernel_source=NAME")
        name = versioned[0]
    try:
        fragment = FRAGMENT.read_text()
    except OSError as err:
        raise ImageError(f"{FRAGMENT}: {err.strerror} (klharness must run from a source checkout)") from err
    return KernelPlan(debs.resolve(name), fragment, cbuild.compiler_version().splitlines()[0])


def obtain_kernel(plan: KernelPlan) -> OwnKernel:
    """The kernel of ``plan``: cached, or built now (once, even when several processes ask)."""
    root = cache_dir() / "kernels"
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"{plan.source.version}-{plan.key[:16]}"
    with entry_lock(final):
        done = final / DONE
        if not done.is_file():
            _build(plan, final)
        try:
            meta = json.loads(done.read_text())
            return OwnKernel(final, str(meta["release"]), str(meta["source"]))
        except (OSError, ValueError, KeyError) as err:
            raise ImageError(f"{done}: unreadable ({err}); remove {final} to build the kernel again") from err


def wanted_options(fragment: str) -> dict[str, str]:
    """The fragment's ``CONFIG_X=v`` and ``# CONFIG_X is not set`` lines as {option: value} ("n" for unset)."""
    wanted: dict[str, str] = {}
    for line in fragment.splitlines():
        line = line.strip()
        if line.startswith("CONFIG_") and "=" in line:
            key, _, value = line.partition("=")
            wanted[key] = value
        elif line.startswith("# CONFIG_") and line.endswith(" is not set"):
            wanted[line[2:].split(" ", 1)[0]] = "n"
    return wanted


def check_result(config: dict[str, str], fragment: str, *, source: Path) -> None:
    """Every option the fragment sets must be set so in the final config; else name each and why it may be."""
    wrong = [f"{opt}={want} (got {config.get(opt, 'n')})" for opt, want in wanted_options(fragment).items()
             if config.get(opt, "n") != want]
    if wrong:
        raise BuildError(f"{FRAGMENT}: options the kernel config did not take: {', '.join(wrong)} "
                         f"(renamed in this source, or a dependency missing; see {source})")


def _build(plan: KernelPlan, final: Path) -> None:
    """Unpack, configure, build and install into a fresh directory, then move it into place."""
    for stale in final.parent.glob(f".build-{final.name}-*"):
        shutil.rmtree(stale, ignore_errors=True)  # a killed build of this key (we hold its lock)
    work = Path(tempfile.mkdtemp(prefix=f".build-{final.name}-", dir=final.parent))
    log_path = final.parent / f"{final.name}.log"  # beside the entry: kept when the build fails
    start = time.monotonic()
    limits = active_timeouts()
    try:
        with log_path.open("w") as logf:
            step = BuildSteps(f"kernel {plan.source.version}", logf, log_path, log.info)
            src = step.do("unpack the source", lambda: _unpack(plan.source, work))
            make = ["make", "-C", str(src), f"-j{os.cpu_count() or 1}", f"LOCALVERSION={LOCALVERSION}",
                    f"KCFLAGS={KCFLAGS}"]
            step.run("make tinyconfig", ["make", "-C", str(src), "tinyconfig"], None, limits.build_step)
            merge = src / "scripts" / "kconfig" / "merge_config.sh"
            step.run("merge_config.sh of the fragment",
                     [str(merge), "-m", "-O", str(src), str(src / ".config"), str(FRAGMENT)], src, limits.build_step)
            step.run("make olddefconfig", ["make", "-C", str(src), "olddefconfig"], None, limits.build_step)
            step.do("check the config", lambda: check_result(read_config(src / ".config"), plan.fragment,
                                                             source=src / ".config"))
            step.run("make vmlinux bzImage modules", [*make, "vmlinux", "bzImage", "modules"], None,
                     limits.kernel_build)
            release = (src / "include" / "config" / "kernel.release").read_text().strip()
            out = work / "out"
            boot = out / "root" / "boot"
            boot.mkdir(parents=True)
            shutil.copyfile(src / "arch" / "x86" / "boot" / "bzImage", boot / f"vmlinuz-{release}")
            shutil.copyfile(src / ".config", boot / f"config-{release}")
            shutil.copyfile(src / "vmlinux", out / "vmlinux")
            step.run("make modules_install",
                     [*make, f"INSTALL_MOD_PATH={out / 'root'}", "DEPMOD=/bin/true", "modules_install"], None,
                     limits.build_step)
            (out / "root" / "lib" / "modules" / release / "build").unlink(missing_ok=True)
            (out / "root" / "lib" / "modules" / release / "source").unlink(missing_ok=True)
            # `make clean` keeps the config, generated headers, Module.symvers and scripts: what an
            # out-of-tree module needs.  The objects (hundreds of MiB) go.
            step.run("make clean", ["make", "-C", str(src), "clean"], None, limits.build_step)
        src.rename(out / "build")
        shutil.move(str(log_path), out / "build.log")
        seconds = round(time.monotonic() - start, 1)
        (out / DONE).write_text(json.dumps({"release": release, "source": plan.describe(), "key": plan.key,
                                            "build_seconds": seconds}, indent=2) + "\n")
        replace_dir(out, final)
        log.info("built kernel %s in %.0f s", release, seconds)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _unpack(package: debs.Package, work: Path) -> Path:
    """The source tree of ``package``: the deb holds ``usr/src/linux-source-X.Y.tar.xz``."""
    pkg_root = work / "pkg"
    debs.extract(debs.fetch(package), pkg_root)
    tarballs = sorted((pkg_root / "usr" / "src").glob("linux-source-*.tar.*"))
    if len(tarballs) != 1:
        raise ImageError(f"{package}: expected one usr/src/linux-source-*.tar.* in the package, found "
                         f"{len(tarballs)} (is it a linux-source-X.Y package?)")
    try:
        proc.run(["tar", "-xf", str(tarballs[0]), "-C", str(work)], timeout=active_timeouts().package_extract)
    except CommandError as err:
        raise ImageError(f"unpacking {tarballs[0].name} failed (disk full?): {err}") from err
    shutil.rmtree(pkg_root)
    trees = [p for p in work.iterdir() if p.is_dir() and p.name.startswith("linux-source-")]
    if len(trees) != 1:
        raise ImageError(f"{tarballs[0].name}: expected one linux-source-* directory inside, found {len(trees)}")
    return trees[0]
