"""The ``mini`` image: a Debian kernel booted directly, with a busybox + dropbear initramfs.

Why this shape: it is the fastest guest that still has a real distribution
kernel (the one whose CPUID handling we test) — no disk, no init system, no
DHCP wait, an uncompressed PVH ``vmlinux`` and an uncompressed initramfs.
Build ≈ 2-3 s once the kernel ``.deb`` is cached.  The probe is not in the
image: the harness uploads it over SSH, so the image does not change with it.

Outputs: ``vmlinux`` (PVH ELF), ``bzImage`` (for suspend-to-RAM),
``initrd.cpio`` (uncompressed).  The SSH host key is made at build time and
pinned through ``ImageArtifact.host_key``.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import ClassVar

from harness import proc
from harness.errors import CommandError, ImageError
from harness.images import debs, initramfs, kernel, ownkernel
from harness.images.artifact import READY_MARKER
from harness.images.cpio import Archive
from harness.images.manifest import sha256_file
from harness.images.recipe import BuildResult, Option, Plan, Recipe, guest_file
from harness.timeouts import active as active_timeouts

log = logging.getLogger(__name__)

BUSYBOX = Path("/bin/busybox")
DROPBEAR = Path("/usr/sbin/dropbear")
DROPBEARKEY = Path("/usr/bin/dropbearkey")

# virtio_pci: the bus; virtio_net: eth0; qemu_fw_cfg: the authorized key and the emulator's
# secret; button + evdev: the ACPI power button as an input device for acpid; virtio_rng:
# entropy from the host when the CPU model has no RDRAND (else sshd waits ~1 s for the CRNG).  Built-in ones
# (e.g. virtio_pci in 6.12 cloud kernels) are skipped automatically.
DEFAULT_MODULES = "virtio_pci,virtio_net,virtio_rng,qemu_fw_cfg,button,evdev"

# console=ttyS0: the harness reads the serial console from the first byte.
# panic=0: a panicked guest stays halted with the panic text as the last console lines (the
#   harness detects it there); rebooting instead would bury it and could look like a good boot.
# No `quiet`: measured, it saves nothing under TCG here, and the full log shows boot progress
#   from ~0.3 s (the harness's "no console progress" check) and what happened before a panic.
# random.trust_cpu=on: seed the CRNG from RDRAND at once, so sshd's getrandom() never waits.
# i8042.*: less PS/2 probing; the power button is ACPI, not i8042.
# cryptomgr.notests (-0.4 s under TCG) and initcall_blacklist (-0.2 s): skip the kernel crypto
#   self-tests, the KDF/jitterentropy self-tests and BPF/trace registrations nothing here uses.
#   Key Locker is exercised from user space (instructions, or the emulator), not through the
#   kernel crypto API.  Measured with benchmarks/bench_boot.py; see guest_images/README.md.
BOOT_BLACKLIST = ("crypto_kdf108_init", "jent_mod_init", "bpf_tcp_ca_kfunc_init", "bpf_dummy_struct_ops_init",
                  "trace_eval_init")
DEFAULT_CMDLINE = ("console=ttyS0 panic=0 random.trust_cpu=on i8042.noaux i8042.nomux i8042.nopnp "
                   f"i8042.dumbkbd cryptomgr.notests initcall_blacklist={','.join(BOOT_BLACKLIST)}")
# With our own kernel only:
# pci=noacpi: PCI interrupts routed from the BIOS's $PIR table, not by ACPI's PCI link devices,
#   whose AML (evaluated once per virtio device, ~0.4 s each under TCG) made virtio-pci's probe
#   the slowest step of the boot (0.9 s; 17 ms without).  ACPI itself stays on: the power button,
#   S3 and CPU hot-plug are ACPI.  Not for Debian's kernel: its virtio-net MSI-X set-up then hits
#   a WARN in pci_msi_setup_msi_irqs (and a boot log with a kernel WARN is not a clean boot).
OWN_KERNEL_ARGS = "pci=noacpi"

# What the guest side needs from the kernel config ("ym": built in or a module).
KERNEL_REQUIREMENTS = {
    "CONFIG_PVH": "y",
    "CONFIG_BLK_DEV_INITRD": "y",
    "CONFIG_DEVTMPFS": "y",
    "CONFIG_SERIAL_8250_CONSOLE": "y",
    "CONFIG_VIRTIO_PCI": "ym",
    "CONFIG_VIRTIO_NET": "ym",
    "CONFIG_FW_CFG_SYSFS": "ym",
    "CONFIG_ACPI_BUTTON": "ym",
    "CONFIG_INPUT_EVDEV": "ym",
    "CONFIG_UNIX": "y",
}


class MiniRecipe(Recipe):
    name = "mini"
    summary = "Debian kernel (PVH vmlinux) + busybox/dropbear initramfs: seconds to build and to boot"
    default = True
    sources = ("harness/images/mini.py", "harness/images/cpio.py", "harness/images/kernel.py",
               "harness/images/initramfs.py", "harness/images/debs.py", "guest_images/common/*")
    options: ClassVar[Mapping[str, Option]] = {
        "kernel": Option("whose kernel: klh (ours: Debian's source, guest_images/kernel/klh.config; boots "
                         "fastest) or debian (the distribution's package, for cells about its own build)", "klh"),
        "kernel_source": Option("kernel: klh: the Debian source package", ownkernel.DEFAULT_SOURCE),
        "kernel_package": Option("kernel: debian: the kernel image package "
                                 "(default: the one linux-image-FLAVOUR installs)"),
        "flavour": Option("kernel flavour searched when kernel_package is not set", "cloud-amd64"),
        "modules": Option("comma-separated kernel modules loaded at boot, dependencies added", DEFAULT_MODULES),
        "cmdline": Option("kernel command line recorded in the artifact (default: ours, with "
                          f"{OWN_KERNEL_ARGS} for kernel=klh)"),
    }

    def plan(self, options: Mapping[str, str]) -> Plan:
        opts = self.check_options(options)
        if opts["kernel"] not in KERNELS:
            raise ImageError(f"image {self.name}: option kernel={opts['kernel']!r}: expected one of "
                             f"{', '.join(KERNELS)} (klh: our small config of Debian's source; debian: its package)")
        opts.setdefault("cmdline", DEFAULT_CMDLINE + (f" {OWN_KERNEL_ARGS}" if opts["kernel"] == "klh" else ""))
        if opts["kernel"] == "klh" and "kernel_package" in opts:
            raise ImageError(f"image {self.name}: option kernel_package={opts['kernel_package']} picks a Debian "
                             "kernel package, but kernel is klh (our own build): add kernel=debian to boot the "
                             "package, or drop kernel_package")
        host_files = [BUSYBOX, DROPBEAR, *initramfs.shared_libraries(DROPBEAR)]
        for path in (*host_files, DROPBEARKEY):
            if not path.is_file():
                raise ImageError(f"{path} is missing on the host; run scripts/setup-host "
                                 "(packages busybox-static, dropbear-bin)")
        inputs = {
            "sources": self.source_hashes(),
            "host_files": {str(p): sha256_file(p) for p in host_files},
            "modules": sorted(module_list(opts["modules"])),
            "cmdline": opts["cmdline"],
        }
        private: dict[str, object] = {}
        if opts["kernel"] == "klh":
            kplan = ownkernel.plan_kernel(opts["kernel_source"])
            inputs["kernel_build"] = kplan.key
            private["kernel_plan"] = kplan
        else:
            package = debs.resolve(opts.get("kernel_package") or debs.default_kernel(opts["flavour"]))
            inputs["kernel_package"] = f"{package.name}={package.version} sha256:{package.sha256}"
            private["package"] = package
        return Plan(self.name, opts, inputs, private)

    def build(self, plan: Plan, out: Path, work: Path) -> BuildResult:
        kernel_info: dict[str, object]
        notes: dict[str, object]
        if "kernel_plan" in plan.private:
            own = ownkernel.obtain_kernel(plan.private["kernel_plan"])
            tree = own.tree
            kernel.check_config(kernel.read_config(tree.config), KERNEL_REQUIREMENTS, source=tree.config)
            shutil.copyfile(own.vmlinux, out / "vmlinux")
            shutil.copyfile(tree.bzimage, out / "bzImage")
            kernel_info = {"kernel_origin": f"klharness: {own.source}", "kernel_build": str(own.build)}
            notes = {"kernel": own.release, "kernel_dir": str(own.directory)}
            external: tuple[Path, ...] = (own.build / "Module.symvers",)
        else:
            package: debs.Package = plan.private["package"]
            deb = debs.fetch(package)
            tree, compression = kernel.prepare_boot_kernel(deb, work / "kernel", out, KERNEL_REQUIREMENTS)
            kernel_info = {"kernel_origin": f"Debian: {package.name} {package.version}"}
            notes = {"kernel_compression": compression, "deb": deb.name}
            external = ()

        archive = Archive()
        initramfs.add_base_layout(archive)
        module_paths = initramfs.add_modules(archive, tree, module_list(plan.options["modules"]), work / "modroot")
        _add_userland(archive, module_paths)
        host_key = _add_host_key(archive, work)
        with (out / "initrd.cpio").open("wb") as f:
            archive.write(f)

        return BuildResult(
            artifact={
                "kernel": "vmlinux",
                "kernel_bzimage": "bzImage",
                "initrd": "initrd.cpio",
                "cmdline": plan.options["cmdline"],
                "host_key": host_key,
                "ssh_user": "root",
                "ready_marker": READY_MARKER,
                "features": sorted({"fwcfg", "acpi-button", "net-static", "pvh", "s3-bzimage"}),
                **kernel_info,
            },
            kernel_version=tree.version,
            external=external,
            notes=notes,
        )


KERNELS = ("klh", "debian")


def module_list(text: str) -> list[str]:
    return [m.strip() for m in text.split(",") if m.strip()]


def _add_userland(archive: Archive, module_paths: list[str]) -> None:
    archive.copy("init", guest_file("common", "init"), 0o755)
    initramfs.add_busybox(archive, BUSYBOX)
    initramfs.add_dynamic_binary(archive, DROPBEAR, "usr/sbin/dropbear")
    initramfs.add_guest_common(archive, module_paths, hostname="klh-mini")
    archive.file("etc/passwd", b"root:x:0:0:root:/root:/bin/sh\n")
    archive.file("etc/group", b"root:x:0:\ntty:x:5:\n")
    archive.file("etc/shadow", b"root:*:19000:0:99999:7:::\n", 0o600)
    archive.file("etc/shells", b"/bin/sh\n/bin/ash\n")
    archive.file("etc/nsswitch.conf", b"passwd: files\ngroup: files\nshadow: files\nhosts: files dns\n")
    archive.file("etc/os-release", b'NAME="klharness mini"\nID=klh-mini\n')
    archive.dir("root/.ssh", 0o700)


def _add_host_key(archive: Archive, work: Path) -> str:
    """Make the guest's ed25519 host key now, so the harness can pin it (no trust on first use)."""
    key_file = work / "dropbear_ed25519_host_key"
    try:
        proc.run([str(DROPBEARKEY), "-t", "ed25519", "-f", str(key_file)], timeout=active_timeouts().build_step)
        shown = proc.run([str(DROPBEARKEY), "-y", "-f", str(key_file)], timeout=active_timeouts().build_step).stdout
    except CommandError as err:
        raise ImageError(f"generating the guest SSH host key with dropbearkey failed: {err}") from err
    public = next((line for line in shown.splitlines() if line.startswith("ssh-ed25519 ")), None)
    if public is None:
        raise ImageError(f"dropbearkey -y printed no ssh-ed25519 line: {shown!r}")
    archive.copy("etc/dropbear/dropbear_ed25519_host_key", key_file, 0o600)
    return " ".join(public.split()[:2])
