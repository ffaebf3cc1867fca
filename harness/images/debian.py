"""The ``debian`` image: a debootstrap'ed bookworm disk with OpenSSH, gcc, make and the
headers of its own kernel — for tests that build code (e.g. a kernel module) inside the guest.

Why this shape:
- The kernel is the same Debian package the ``mini`` image uses, installed with dpkg in
  the root (modules, ``/lib/modules/VER/build`` → headers), and booted directly as a PVH
  ``vmlinux`` with ``root=/dev/vda``; a tiny initramfs of ours loads virtio_blk and
  switch_roots.  No init system: the root runs the same ``klh-init`` as ``mini``
  (guest_images/common/init) with OpenSSH instead of dropbear, which boots in seconds
  under TCG where systemd takes 10+.
- The root file system is made without mounting anything (``mke2fs -d``), then converted
  to qcow2: the base guests never write (each gets an overlay).
- The key covers the recipe files, the kernel/header package versions and the options;
  the rest of the Debian userland is whatever the mirror serves at build time, and its
  package list is recorded in the manifest (``inputs.notes.dpkg``).

Takes about a minute (debootstrap ≈ 40 s with a warm --cache-dir); never built by default.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import ClassVar

from harness import proc
from harness.errors import CommandError, ImageError
from harness.images import debs, initramfs, kernel
from harness.images.artifact import READY_MARKER
from harness.images.cpio import Archive
from harness.images.manifest import sha256_file
from harness.images.mini import BUSYBOX, DEFAULT_CMDLINE, KERNEL_REQUIREMENTS, module_list
from harness.images.recipe import BuildResult, Option, Plan, Recipe, guest_file
from harness.paths import cache_dir
from harness.timeouts import active as active_timeouts

log = logging.getLogger(__name__)


# linux-base, initramfs-tools, pahole, libelf1, libssl3: what the kernel image and header
# packages depend on (they are installed with dpkg -i, which resolves nothing).
GUEST_PACKAGES = ("openssh-server", "gcc", "make", "libc6-dev", "kmod", "busybox-static", "linux-base",
                  "initramfs-tools", "pahole", "libelf1", "libssl3", "ca-certificates")
ROOT_MODULES = "virtio_net,virtio_rng,qemu_fw_cfg,button,evdev"
INITRAMFS_MODULES = ("virtio_pci", "virtio_blk")
DEBIAN_REQUIREMENTS = {**KERNEL_REQUIREMENTS, "CONFIG_VIRTIO_BLK": "ym", "CONFIG_EXT4_FS": "y"}
# Trimmed from the root: documentation and translations nobody reads in a test guest.
PRUNE = ("usr/share/doc", "usr/share/man", "usr/share/info", "usr/share/locale", "var/cache/apt/archives",
         "var/lib/apt/lists")


class DebianRecipe(Recipe):
    name = "debian"
    summary = "debootstrap bookworm disk with OpenSSH, gcc, make and kernel headers (about a minute to build)"
    sources = ("harness/images/debian.py", "harness/images/mini.py", "harness/images/cpio.py",
               "harness/images/kernel.py", "harness/images/initramfs.py", "harness/images/debs.py",
               "guest_images/common/*", "guest_images/debian/*")
    options: ClassVar[Mapping[str, Option]] = {
        "kernel_package": Option("Debian kernel image package (default: newest linux-image-*-FLAVOUR)"),
        "flavour": Option("kernel flavour searched when kernel_package is not set", "cloud-amd64"),
        "suite": Option("Debian suite for debootstrap", "bookworm"),
        "mirror": Option("Debian mirror for debootstrap", "http://deb.debian.org/debian"),
        "size": Option("virtual size of the root file system (mke2fs size, e.g. 4G)", "4G"),
        "packages": Option("extra comma-separated packages for debootstrap --include", ""),
        "cmdline": Option("kernel command line recorded in the artifact", DEFAULT_CMDLINE + " root=/dev/vda"),
    }

    def plan(self, options: Mapping[str, str]) -> Plan:
        opts = self.check_options(options)
        image = debs.resolve(opts.get("kernel_package") or debs.default_kernel(opts["flavour"]))
        headers = debs.resolve(image.name.replace("linux-image-", "linux-headers-", 1))
        extra = [debs.resolve(n) for n in debs.depends(headers.name) if re.match(r"linux-(headers|kbuild|compiler)", n)]
        packages = [image, headers, *extra]
        if not re.fullmatch(r"\d+[KMGT]", opts["size"]):
            raise ImageError(f"image debian: size {opts['size']!r} is not a size (use e.g. 4G or 3072M)")
        inputs = {
            "sources": self.source_hashes(),
            "kernel_packages": [f"{p.name}={p.version} sha256:{p.sha256}" for p in packages],
            "guest_packages": sorted({*GUEST_PACKAGES, *module_list(opts["packages"])}),
            "suite": opts["suite"],
            "mirror": opts["mirror"],
            "size": opts["size"],
            "cmdline": opts["cmdline"],
            "busybox": sha256_file(BUSYBOX),
        }
        return Plan(self.name, opts, inputs, {"packages": packages})

    def build(self, plan: Plan, out: Path, work: Path) -> BuildResult:
        if os.geteuid() != 0:
            raise ImageError("image debian: building needs root (debootstrap, chroot, mount); run it as root")
        packages: list[debs.Package] = plan.private["packages"]
        deb_files = [debs.fetch(p) for p in packages]  # first: fail fast before debootstrap
        root = work / "root"
        _debootstrap(root, plan)
        _install_kernel(root, deb_files)
        tree, compression = kernel.prepare_boot_kernel(deb_files[0], work / "kernel", out, DEBIAN_REQUIREMENTS)
        _configure(root, tree)
        host_key = _host_key(root)
        notes = {"kernel_compression": compression, "dpkg": _package_list(root)}
        _prune(root)
        _write_initramfs(out / "initrd.cpio", tree, work / "modroot")
        _make_disk(root, work / "disk.raw", out / "disk.qcow2", plan.options["size"])
        return BuildResult(
            artifact={
                "kernel": "vmlinux",
                "kernel_bzimage": "bzImage",
                "initrd": "initrd.cpio",
                "disk": "disk.qcow2",
                "cmdline": plan.options["cmdline"],
                "host_key": host_key,
                "ssh_user": "root",
                "ready_marker": READY_MARKER,
                "features": sorted({"fwcfg", "acpi-button", "net-static", "pvh", "s3-bzimage", "gcc",
                                    "kernel-headers"}),
            },
            kernel_version=tree.version,
            notes=notes,
        )


def _run(argv: list[str], what: str, timeout: float, env: Mapping[str, str] | None = None) -> str:
    try:
        return proc.run(argv, timeout=timeout, env=env).stdout
    except CommandError as err:
        raise ImageError(f"image debian: {what} failed: {err}") from err


def _debootstrap(root: Path, plan: Plan) -> None:
    include = ",".join(plan.inputs["guest_packages"])
    debcache = cache_dir() / "debootstrap"
    debcache.mkdir(parents=True, exist_ok=True)
    log.info("debootstrap %s into %s (about a minute)", plan.options["suite"], root)
    try:
        _run(["debootstrap", "--variant=minbase", f"--cache-dir={debcache}", f"--include={include}",
              plan.options["suite"], str(root), plan.options["mirror"]], "debootstrap", active_timeouts().debootstrap)
    finally:
        _unmount_under(root)


def _install_kernel(root: Path, deb_files: list[Path]) -> None:
    """dpkg -i the kernel and headers in the root, without building an initramfs (ours is smaller)."""
    (root / "etc/initramfs-tools/update-initramfs.conf").write_text("update_initramfs=no\n")
    staging = root / "tmp/klh-debs"
    staging.mkdir(parents=True, exist_ok=True)
    for deb in deb_files:
        shutil.copyfile(deb, staging / deb.name)
    env = {"INITRD": "No", "DEBIAN_FRONTEND": "noninteractive", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
    try:
        _run(["mount", "-t", "proc", "proc", str(root / "proc")], "mounting /proc in the root", 30)
        _run(["chroot", str(root), "dpkg", "-i", *(f"/tmp/klh-debs/{d.name}" for d in deb_files)],
             "installing the kernel and headers with dpkg", active_timeouts().chroot, env)
    finally:
        _unmount_under(root)
        shutil.rmtree(staging, ignore_errors=True)


def _configure(root: Path, tree: kernel.KernelTree) -> None:
    deps = kernel.parse_modules_dep((root / "lib/modules" / tree.version / "modules.dep").read_text())
    builtin = (root / "lib/modules" / tree.version / "modules.builtin").read_text().split()
    order = kernel.load_order(deps, module_list(ROOT_MODULES), builtin)
    modules = [f"/lib/modules/{tree.version}/{rel}" for rel in order]
    for rel, (data, mode) in initramfs.guest_common_files(modules, hostname="klh-debian").items():
        _write(root / rel, data, mode)
    _write(root / "sbin/klh-init", guest_file("common", "init").read_bytes(), 0o755)
    _write(root / "etc/fstab", b"/dev/vda / ext4 rw,relatime 0 1\n", 0o644)
    _write(root / "etc/ssh/sshd_config.d/klharness.conf",
           b"# klharness: one pinned host key, keys only, no DNS lookups (slow under TCG)\n"
           b"HostKey /etc/ssh/ssh_host_ed25519_key\nPermitRootLogin prohibit-password\n"
           b"PasswordAuthentication no\nUseDNS no\n", 0o644)
    (root / "root/.ssh").mkdir(mode=0o700, parents=True, exist_ok=True)


def _write(path: Path, data: bytes, mode: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    path.chmod(mode)


def _host_key(root: Path) -> str:
    """Replace the keys openssh-server's postinst made by one ed25519 key, and return it."""
    for old in (root / "etc/ssh").glob("ssh_host_*"):
        old.unlink()
    _run(["chroot", str(root), "ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "root@klh-debian",
          "-f", "/etc/ssh/ssh_host_ed25519_key"], "generating the SSH host key", 60)
    public = (root / "etc/ssh/ssh_host_ed25519_key.pub").read_text().split()
    return " ".join(public[:2])


def _package_list(root: Path) -> list[str]:
    out = _run(["chroot", str(root), "dpkg-query", "-W", "-f=${Package}=${Version}\\n"], "listing packages", 60)
    return sorted(out.split())


def _prune(root: Path) -> None:
    for rel in PRUNE:
        target = root / rel
        if target.is_dir():
            for child in target.iterdir():
                if child.is_dir() and not child.is_symlink():
                    shutil.rmtree(child)
                elif child.name != "lock":
                    child.unlink()


def _write_initramfs(dest: Path, tree: kernel.KernelTree, modroot: Path) -> None:
    archive = Archive()
    initramfs.add_base_layout(archive)
    initramfs.add_busybox(archive, BUSYBOX)
    archive.dir("newroot")
    paths = initramfs.add_modules(archive, tree, list(INITRAMFS_MODULES), modroot)
    archive.file("etc/klh/modules", "".join(p + "\n" for p in paths).encode())
    archive.copy("init", guest_file("debian", "initramfs-init"), 0o755)
    with dest.open("wb") as f:
        archive.write(f)


def _make_disk(root: Path, raw: Path, dest: Path, size: str) -> None:
    """ext4 from the directory (mke2fs -d: no loop device, no mount), then qcow2."""
    limit = active_timeouts().disk_image
    _run(["mke2fs", "-q", "-t", "ext4", "-L", "klh-root", "-E", "root_owner=0:0", "-d", str(root), "-F",
          str(raw), size], "making the ext4 root file system (mke2fs -d, package e2fsprogs)", limit)
    _run(["qemu-img", "convert", "-O", "qcow2", str(raw), str(dest)], "converting the disk to qcow2", limit)
    raw.unlink()


def _unmount_under(root: Path) -> None:
    """Unmount anything still mounted below ``root`` (debootstrap or we mounted proc/sys there)."""
    prefix = str(root.resolve()) + "/"
    try:
        mounts = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()]
    except OSError:
        return
    for mountpoint in sorted((m for m in mounts if m.startswith(prefix)), key=len, reverse=True):
        proc.run(["umount", "-l", mountpoint], timeout=active_timeouts().tool, check=False)
    if any(m.startswith(prefix) for m in Path("/proc/mounts").read_text().split()):
        raise ImageError(f"image debian: could not unmount everything under {root}; check `mount | grep {root}`")
    os.sync()
