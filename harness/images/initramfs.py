"""Fill an initramfs with host programs: busybox, dynamic binaries and their libraries.

Why from the host: busybox-static and dropbear-bin are Debian packages the
setup script installs anyway, so the guest userland needs no download and no
cross-build; their libraries are found with ``ldd`` and copied to the same
multiarch paths, where glibc's built-in search path finds them without an
``ld.so.cache``.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from harness import proc
from harness.errors import CommandError, ImageError
from harness.images import kernel
from harness.images.cpio import Archive
from harness.images.recipe import guest_file
from harness.timeouts import active as active_timeouts

_LDD_LINE = re.compile(r"^\s*(?:\S+\s+=>\s+)?(/\S+)\s+\(0x[0-9a-f]+\)\s*$")

BASE_DIRS = ("bin", "sbin", "usr/bin", "usr/sbin", "lib", "etc", "proc", "sys", "dev", "run", "var/log", "root")


def add_base_layout(archive: Archive) -> None:
    """Directories, ``/dev/console`` (the kernel opens it before ``/init`` runs) and a world-writable ``/tmp``."""
    for d in BASE_DIRS:
        archive.dir(d, 0o700 if d == "root" else 0o755)
    archive.dir("tmp", 0o1777)
    archive.chardev("dev/console", 5, 1, 0o600)
    archive.chardev("dev/null", 1, 3, 0o666)


def shared_libraries(binary: Path) -> list[Path]:
    """Absolute paths of the libraries (and the dynamic loader) ``binary`` needs; [] if static."""
    try:
        result = proc.run(["ldd", str(binary)], timeout=active_timeouts().tool, check=False)
    except CommandError as err:
        raise ImageError(f"ldd {binary} failed: {err}") from err
    text = result.stdout + result.stderr
    if "not a dynamic executable" in text or "statically linked" in text:
        return []
    if not result.ok:
        raise ImageError(f"ldd {binary} failed: {result.describe()}")
    libs = []
    for line in result.stdout.splitlines():
        if "not found" in line:
            raise ImageError(f"{binary} needs a library the host lacks: {line.strip()}")
        match = _LDD_LINE.match(line)
        if match:
            libs.append(Path(match.group(1)))
    return libs


def add_dynamic_binary(archive: Archive, binary: Path, dest: str) -> list[Path]:
    """Copy ``binary`` to ``dest`` plus every library it loads, at the paths ``ldd`` names.

    Libraries are copied as resolved files (no symlinks to chase in the guest);
    returns the host files used, for the cache key.
    """
    archive.copy(dest, binary.resolve(), 0o755)
    used = [binary]
    for lib in shared_libraries(binary):
        target = str(lib).lstrip("/")
        if target not in archive:
            archive.copy(target, lib.resolve(), 0o755)
            used.append(lib)
    return used


def require_static(binary: Path) -> None:
    if shared_libraries(binary):
        raise ImageError(f"{binary} is dynamically linked; the image needs the static busybox "
                         "(apt-get install busybox-static, or run scripts/setup-host)")


def add_busybox(archive: Archive, busybox: Path, *, skip: frozenset[str] = frozenset()) -> list[str]:
    """Install static ``busybox`` as ``/bin/busybox`` with a symlink per applet; return the applets."""
    require_static(busybox)
    archive.copy("bin/busybox", busybox.resolve(), 0o755)
    try:
        listing = proc.run([str(busybox), "--list-full"], timeout=active_timeouts().tool).stdout
    except CommandError as err:
        raise ImageError(f"{busybox} --list-full failed: {err}") from err
    applets = []
    for rel in listing.split():
        if rel in skip or rel == "linuxrc" or rel in archive:
            continue
        archive.symlink(rel, "/bin/busybox")
        applets.append(rel)
    return applets


def add_modules(archive: Archive, tree: kernel.KernelTree, wanted: list[str], modroot: Path) -> list[str]:
    """Copy the wanted modules and their dependencies (decompressed), run depmod so that
    ``modprobe`` works in the guest too; return guest paths in load order."""
    try:
        proc.run(["depmod", "-b", str(tree.root), tree.version], timeout=active_timeouts().build_step)
    except CommandError as err:
        raise ImageError(f"depmod on the unpacked kernel {tree.version} failed (package kmod): {err}") from err
    deps = kernel.parse_modules_dep((tree.modules / "modules.dep").read_text())
    builtin = (tree.modules / "modules.builtin").read_text().split()
    order = kernel.load_order(deps, wanted, builtin)

    dest_root = modroot / "lib" / "modules" / tree.version
    for meta in ("modules.builtin", "modules.order"):
        if (tree.modules / meta).is_file():
            dest_root.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(tree.modules / meta, dest_root / meta)
    guest_paths = []
    for rel in order:
        dest = dest_root / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(tree.modules / rel, dest)
        plain = kernel.decompress_module(dest)
        guest_paths.append("/" + str(plain.relative_to(modroot)))
    try:
        proc.run(["depmod", "-b", str(modroot), tree.version], timeout=active_timeouts().build_step)
    except CommandError as err:
        raise ImageError(f"depmod on the initramfs modules failed: {err}") from err
    for path in sorted(modroot.rglob("*")):
        rel = str(path.relative_to(modroot))
        if path.is_dir():
            archive.dir(rel)
        else:
            archive.copy(rel, path, 0o644)
    return guest_paths


def guest_common_files(module_paths: list[str], *, hostname: str) -> dict[str, tuple[bytes, int]]:
    """The guest-side files our images share (guest_images/common and generated ones), as
    {guest path: (content, mode)}: ACPI power button handler, DHCP hook, inittab, module
    list (load order), hostname."""
    return {
        "etc/acpi/PWRF/00000080": (guest_file("common", "power-button").read_bytes(), 0o755),
        "etc/klh/udhcpc.script": (guest_file("common", "udhcpc.script").read_bytes(), 0o755),
        "etc/inittab": (guest_file("common", "inittab").read_bytes(), 0o644),
        "etc/klh/modules": ("".join(p + "\n" for p in module_paths).encode(), 0o644),
        "etc/hostname": (f"{hostname}\n".encode(), 0o644),
        "etc/hosts": (f"127.0.0.1 localhost\n127.0.1.1 {hostname}\n".encode(), 0o644),
    }


def add_guest_common(archive: Archive, module_paths: list[str], *, hostname: str) -> None:
    for path, (data, mode) in guest_common_files(module_paths, hostname=hostname).items():
        archive.file(path, data, mode)
