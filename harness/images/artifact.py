"""What a built guest image is, as the rest of the harness sees it.

Why a separate type: the orchestration code (harness.virt) must not care how
an image was made (initramfs recipe, debootstrap, a user's cloud image); it
needs paths, how to boot them, and how to trust the guest's SSH host key.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

# fw_cfg entry names the guest side reads (see guest_images/README.md).
FWCFG_AUTHORIZED_KEY = "opt/klharness/authorized_key"
FWCFG_KLEMU_CONF = "opt/klharness/klemu.conf"
# The line our guest images print on the serial console once sshd listens.
READY_MARKER = "klh: ssh ready"


@dataclass(frozen=True)
class ImageArtifact:
    """A built, verified guest image.

    ``kernel``/``initrd``/``cmdline`` are set for direct kernel boot images
    (``mini``); ``disk`` for disk images (``debian``, ``cloud``; a base that is
    never written: every guest gets a qcow2 overlay).  ``host_key`` is the
    guest's SSH host public key line (``ssh-ed25519 AAAA...``) recorded at
    build time, or ``None`` when it must be read from the console at boot.
    ``kernel`` is the uncompressed PVH ``vmlinux`` (fastest boot under TCG);
    ``kernel_bzimage`` is the same kernel as a bzImage, needed for
    suspend-to-RAM (the PVH path never resumes from S3).  ``ready_marker`` is
    the console line printed once sshd listens (``None``: the image prints none).
    ``kernel_origin`` says whose kernel it is (Debian's package, or klharness's own config of
    Debian's source); ``kernel_build`` is where out-of-tree modules (``klhelper``) build against it.
    """

    name: str
    key: str  # content hash of recipe + package versions
    directory: Path
    kernel: Path | None = None
    kernel_bzimage: Path | None = None
    initrd: Path | None = None
    cmdline: str = ""
    disk: Path | None = None
    seed_iso: Path | None = None  # cloud-init NoCloud seed, for `cloud`
    host_key: str | None = None
    ssh_user: str = "root"
    ready_marker: str | None = None
    kernel_version: str = ""
    kernel_origin: str = ""  # what the kernel was built from (the run records it per guest)
    kernel_build: Path | None = None  # a module build tree of this kernel (ours); None: its headers packages
    features: frozenset[str] = field(default_factory=frozenset)  # e.g. {"fwcfg", "acpi-button", "s3"}
    build_seconds: float = 0.0
    size_bytes: int = 0
