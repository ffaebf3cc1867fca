"""Build libvirt domain XML as data (ElementTree), never by string pasting.

Why each choice (measured with libvirt 9.0 / QEMU 7.2, see HOST_NOTES.md):

* CPU ``max`` is ``<cpu mode='maximum'>``: libvirt has no custom model named
  ``max`` ("Unknown CPU model max"); ``maximum`` emits ``-cpu max,...`` and
  takes ``<feature policy=...>`` children (``aes`` disable reaches the guest
  under TCG).
* fw_cfg goes through ``<sysinfo type='fwcfg'>`` with ``file=`` entries only,
  so no secret ever appears in XML that is logged or dumped.
* The serial console is a pty whose ``<log>`` is written by QEMU/virtlogd
  from the process's first byte; there is no stream to attach, so no
  start-paused/attach/resume dance is needed for a complete console.  On a
  remote host that path is not ours: there the serial has no ``<log>`` and
  the console is read as a libvirt stream (:mod:`harness.virt.console_stream`).
  ``append='on'`` because a restore or a managed-save start would otherwise
  truncate the log; the harness creates the file empty before the first start.
* Networking is QEMU user-mode with a loopback port forward through
  ``<qemu:commandline>``; the NIC gets an explicit PCI slot (0x1e) that
  libvirt's allocator (which fills slots from the bottom) never reaches.
* Extra CPU properties become ``-global x86_64-cpu.PROP=VALUE`` (see
  :class:`harness.virt.spec.GuestSpec`).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

from harness.errors import ImageError
from harness.images.artifact import ImageArtifact
from harness.virt.accel import AccelChoice
from harness.virt.metadata import RunMetadata
from harness.virt.spec import GuestSpec

QEMU_NS = "http://libvirt.org/schemas/domain/qemu/1.0"
ET.register_namespace("qemu", QEMU_NS)

MACHINE = "pc"  # i440fx: the NIC slot below is chosen for its bus (pci.0)
NETDEV_ID = "klhnet"
NIC_PCI_SLOT = "0x1e"


@dataclass(frozen=True)
class DomainRuntime:
    """The per-boot inputs of a domain that are not part of its spec."""

    name: str
    ssh_port: int
    console_log: Path
    meta: RunMetadata
    overlay: Path | None = None
    fwcfg: tuple[tuple[str, Path], ...] = ()  # (entry name, absolute 0600 file)
    emulator: Path | None = None  # the QEMU binary (qemu-kl); None: libvirt's default
    remote_host: bool = False  # shares neither our files nor our loopback: no <log> file, the console is a stream


def build_domain_xml(spec: GuestSpec, image: ImageArtifact, accel: AccelChoice, rt: DomainRuntime) -> str:
    """The complete domain XML for ``spec`` booting ``image`` with ``rt``."""
    dom = ET.Element("domain", {"type": accel.domain_type})
    _text(dom, "name", rt.name)
    meta = ET.SubElement(dom, "metadata")
    meta.append(rt.meta.element())
    _text(dom, "memory", str(spec.memory_mib), unit="MiB")
    _text(dom, "vcpu", str(spec.top_vcpus), placement="static", current=str(spec.vcpus))
    if rt.fwcfg:
        dom.append(fwcfg_element(rt.fwcfg))
    dom.append(_os(image, spec))
    feats = ET.SubElement(dom, "features")
    ET.SubElement(feats, "acpi")
    ET.SubElement(feats, "apic")
    dom.append(cpu_element(spec))
    ET.SubElement(dom, "clock", offset="utc")
    _text(dom, "on_poweroff", "destroy")
    _text(dom, "on_reboot", "restart")
    _text(dom, "on_crash", "destroy")
    pm = ET.SubElement(dom, "pm")
    ET.SubElement(pm, "suspend-to-mem", enabled="yes" if spec.suspend_to_mem else "no")
    ET.SubElement(pm, "suspend-to-disk", enabled="no")
    dom.append(_devices(image, rt))
    dom.append(qemu_commandline(rt.ssh_port, spec.qemu_cpu_globals()))
    ET.indent(dom)
    return ET.tostring(dom, encoding="unicode")


def cpu_element(spec: GuestSpec) -> ET.Element:
    """``<cpu>`` for the spec's model and feature policies (KL's native flag included)."""
    if spec.cpu_model == "max":
        cpu = ET.Element("cpu", mode="maximum")
    elif spec.cpu_model == "host":
        cpu = ET.Element("cpu", mode="host-passthrough")
    else:
        cpu = ET.Element("cpu", mode="custom", match="exact")
        _text(cpu, "model", spec.cpu_model, fallback="forbid")
    for name, policy in spec.cpu_feature_policies():
        ET.SubElement(cpu, "feature", policy=policy, name=name)
    return cpu


def fwcfg_element(entries: tuple[tuple[str, Path], ...]) -> ET.Element:
    """``<sysinfo type='fwcfg'>`` with one ``file=`` entry each (never inline text)."""
    sysinfo = ET.Element("sysinfo", type="fwcfg")
    for name, path in entries:
        ET.SubElement(sysinfo, "entry", name=name, file=str(path))
    return sysinfo


def qemu_commandline(ssh_port: int, cpu_globals: tuple[str, ...]) -> ET.Element:
    """``<qemu:commandline>``: user-mode NIC with the SSH port forward, then CPU globals."""
    args = [
        "-netdev", hostfwd_netdev(ssh_port),
        "-device", f"virtio-net-pci,netdev={NETDEV_ID},bus=pci.0,addr={NIC_PCI_SLOT}",
    ]
    for g in cpu_globals:
        args += ["-global", g]
    cmd = ET.Element(f"{{{QEMU_NS}}}commandline")
    for a in args:
        ET.SubElement(cmd, f"{{{QEMU_NS}}}arg", value=a)
    return cmd


def hostfwd_netdev(ssh_port: int) -> str:
    return f"user,id={NETDEV_ID},hostfwd=tcp:127.0.0.1:{ssh_port}-:22"


def patch_for_restore(xml: str, *, ssh_port: int | None = None,
                      fwcfg: tuple[tuple[str, Path], ...] | None = None) -> str:
    """Rewrite a saved domain's XML for restore: a new SSH port and/or fw_cfg files.

    libvirt accepts these changes at restore (HOST_NOTES) but not a new name.
    Starting from the save image's own XML keeps every address libvirt
    assigned, so the ABI check passes.
    """
    root = ET.fromstring(xml)  # noqa: S314 - XML from our own libvirt daemon
    if ssh_port is not None:
        prefix = f"user,id={NETDEV_ID},"
        args = [a for a in root.iter(f"{{{QEMU_NS}}}arg") if a.get("value", "").startswith(prefix)]
        if len(args) != 1:
            raise ValueError(f"domain XML has {len(args)} '-netdev {prefix}...' arguments, expected 1")
        args[0].set("value", hostfwd_netdev(ssh_port))
    if fwcfg is not None:
        old = root.find("sysinfo[@type='fwcfg']")
        idx = list(root).index(old) if old is not None else 2
        if old is not None:
            root.remove(old)
        if fwcfg:
            root.insert(idx, fwcfg_element(fwcfg))
    return ET.tostring(root, encoding="unicode")


def ssh_port_of(xml: str) -> int | None:
    """The host port of the SSH forward in a domain XML, if it has one."""
    root = ET.fromstring(xml)  # noqa: S314 - XML from our own libvirt daemon
    for a in root.iter(f"{{{QEMU_NS}}}arg"):
        value = a.get("value", "")
        if value.startswith(f"user,id={NETDEV_ID},") and "hostfwd=tcp:127.0.0.1:" in value:
            return int(value.split("hostfwd=tcp:127.0.0.1:", 1)[1].split("-", 1)[0])
    return None


def _os(image: ImageArtifact, spec: GuestSpec) -> ET.Element:
    os_el = ET.Element("os")
    _text(os_el, "type", "hvm", arch="x86_64", machine=MACHINE)
    kernel = boot_kernel(spec, image)
    if kernel is not None:
        _text(os_el, "kernel", str(_absolute(kernel, image)))
        if image.initrd is not None:
            _text(os_el, "initrd", str(_absolute(image.initrd, image)))
        # QEMU user-mode networking always hands out 10.0.2.15: a static address skips
        # DHCP (~0.25 s of boot) on images that understand klh.net=static.
        static_net = "klh.net=static" if "net-static" in image.features else ""
        cmdline = " ".join(s for s in (image.cmdline, static_net, spec.extra_cmdline) if s)
        if cmdline:
            _text(os_el, "cmdline", cmdline)
    elif image.disk is not None:
        ET.SubElement(os_el, "boot", dev="hd")
    else:
        raise ImageError(f"image {image.name!r} has neither a kernel nor a disk to boot")
    return os_el


def boot_kernel(spec: GuestSpec, image: ImageArtifact) -> Path | None:
    """The kernel to boot directly: the bzImage when the guest will suspend to RAM.

    The PVH ``vmlinux`` boots faster under TCG but never resumes from S3.
    """
    if spec.suspend_to_mem and image.kernel_bzimage is not None:
        return image.kernel_bzimage
    return image.kernel


def _devices(image: ImageArtifact, rt: DomainRuntime) -> ET.Element:
    devs = ET.Element("devices")
    if rt.emulator is not None:
        _text(devs, "emulator", str(rt.emulator))
    if image.disk is not None:
        if rt.overlay is None:
            raise ImageError(f"image {image.name!r} is a disk image: the guest needs an overlay (the base "
                             "is never written)")
        disk = ET.SubElement(devs, "disk", type="file", device="disk")
        ET.SubElement(disk, "driver", name="qemu", type="qcow2", discard="unmap")
        ET.SubElement(disk, "source", file=str(rt.overlay))
        ET.SubElement(disk, "target", dev="vda", bus="virtio")
    if image.seed_iso is not None:
        cd = ET.SubElement(devs, "disk", type="file", device="cdrom")
        ET.SubElement(cd, "driver", name="qemu", type="raw")
        ET.SubElement(cd, "source", file=str(_absolute(image.seed_iso, image)))
        ET.SubElement(cd, "target", dev="hdc", bus="ide")
        ET.SubElement(cd, "readonly")
    serial = ET.SubElement(devs, "serial", type="pty")
    if not rt.remote_host:  # console_log is a path on this machine, not on a remote host
        ET.SubElement(serial, "log", file=str(rt.console_log), append="on")
    ET.SubElement(serial, "target", port="0")
    console = ET.SubElement(devs, "console", type="pty")
    ET.SubElement(console, "target", type="serial", port="0")
    rng = ET.SubElement(devs, "rng", model="virtio")
    _text(rng, "backend", "/dev/urandom", model="random")
    ET.SubElement(devs, "memballoon", model="none")
    return devs


def _absolute(path: Path, image: ImageArtifact) -> Path:
    """QEMU runs as another user from another cwd: every path must be absolute."""
    if not path.is_absolute():
        raise ImageError(f"image {image.name!r}: path {path} is not absolute")
    return path


def _text(parent: ET.Element, tag: str, text: str, **attrs: str) -> ET.Element:
    el = ET.SubElement(parent, tag, attrs)
    el.text = text
    return el
