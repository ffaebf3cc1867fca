"""Domain XML as data: build it, parse it back, check elements; validate it with libvirt's schema."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import libvirt
import pytest

from harness.errors import ImageError
from harness.images.artifact import ImageArtifact
from harness.virt.accel import AccelChoice
from harness.virt.domain_xml import QEMU_NS, DomainRuntime, build_domain_xml, patch_for_restore, ssh_port_of
from harness.virt.fwcfg import materialize
from harness.virt.metadata import NS, RunMetadata
from harness.virt.spec import FwCfgEntry, GuestSpec, KlExposure, spec_key

TCG = AccelChoice("auto", "tcg", "KVM not usable (test); using TCG")
Q = f"{{{QEMU_NS}}}"


def kernel_image(tmp: Path = Path("/srv/img")) -> ImageArtifact:
    return ImageArtifact(name="mini", key="k" * 64, directory=tmp, kernel=tmp / "vmlinux",
                         kernel_bzimage=tmp / "bzImage", initrd=tmp / "initrd.cpio", cmdline="console=ttyS0 quiet")


def runtime(spec: GuestSpec, **kw: object) -> DomainRuntime:
    base: dict[str, object] = dict(
        name=f"klh-r1-{spec.name}", ssh_port=40022, console_log=Path("/var/tmp/klharness/x/console.log"),
        meta=RunMetadata(run_id="r1", guest=spec.name, spec_key=spec_key(spec), accel="tcg", accel_reason="test",
                         workdir="/var/tmp/klharness/x"),
        fwcfg=(("opt/klharness/authorized_key", Path("/var/tmp/klharness/x/fwcfg-0-0")),),
    )
    base.update(kw)
    return DomainRuntime(**base)  # type: ignore[arg-type]


def build(spec: GuestSpec | None = None, image: ImageArtifact | None = None, **kw: object) -> ET.Element:
    spec = spec or GuestSpec(name="g")
    return ET.fromstring(build_domain_xml(spec, image or kernel_image(), TCG, runtime(spec, **kw)))


def qemu_args(root: ET.Element) -> list[str]:
    return [a.get("value", "") for a in root.iter(f"{Q}arg")]


def test_tcg_domain_boots_the_kernel_directly_with_the_spec_cmdline() -> None:
    root = build(GuestSpec(name="g", extra_cmdline="klh.net=static"))
    assert root.get("type") == "qemu"
    assert root.findtext("name") == "klh-r1-g"
    assert root.findtext("os/kernel") == "/srv/img/vmlinux"
    assert root.findtext("os/initrd") == "/srv/img/initrd.cpio"
    assert root.findtext("os/cmdline") == "console=ttyS0 quiet klh.net=static"
    assert root.find("os/type").get("machine") == "pc"  # type: ignore[union-attr]


def test_metadata_names_run_pid_host_spec_key_and_start_time() -> None:
    spec = GuestSpec(name="g")
    root = build(spec)
    run = root.find(f"metadata/{{{NS}}}run")
    assert run is not None
    assert run.get("id") == "r1" and run.get("spec-key") == spec_key(spec)
    assert run.get("pid", "").isdigit() and run.get("host") and run.get("started")
    assert run.find(f"{{{NS}}}workdir").get("path") == "/var/tmp/klharness/x"  # type: ignore[union-attr]
    back = RunMetadata.from_domain_xml(ET.tostring(root, encoding="unicode"))
    assert back is not None and back.run_id == "r1" and back.accel == "tcg"


def test_fwcfg_is_a_sysinfo_fwcfg_block_of_file_entries_and_no_smbios() -> None:
    root = build()
    entries = root.findall("sysinfo[@type='fwcfg']/entry")
    assert [(e.get("name"), e.get("file"), e.text) for e in entries] == [
        ("opt/klharness/authorized_key", "/var/tmp/klharness/x/fwcfg-0-0", None)]
    assert root.find("os/smbios") is None


def test_text_fwcfg_secret_never_appears_in_the_xml(tmp_path: Path) -> None:
    secret = "klemu-secret-0123456789abcdef"
    entries = materialize([FwCfgEntry("opt/klharness/klemu.conf", text=secret)], tmp_path)
    assert (tmp_path / "fwcfg-0-0").stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "fwcfg-0-0").read_text() == secret
    xml = build_domain_xml(GuestSpec(name="g"), kernel_image(), TCG, runtime(GuestSpec(name="g"), fwcfg=entries))
    assert secret not in xml
    assert str(tmp_path / "fwcfg-0-0") in xml


def test_serial_console_logs_to_file_and_console_is_the_serial() -> None:
    root = build()
    log = root.find("devices/serial[@type='pty']/log")
    assert log is not None and log.get("file") == "/var/tmp/klharness/x/console.log" and log.get("append") == "on"
    assert root.find("devices/console/target").get("type") == "serial"  # type: ignore[union-attr]


def test_user_networking_with_port_forward_on_an_explicit_pci_slot() -> None:
    args = qemu_args(build())
    assert args[:4] == ["-netdev", "user,id=klhnet,hostfwd=tcp:127.0.0.1:40022-:22",
                        "-device", "virtio-net-pci,netdev=klhnet,bus=pci.0,addr=0x1e"]


def test_max_cpu_is_maximum_mode_with_feature_policies() -> None:
    cpu = build(GuestSpec(name="g", cpu_features=(("aes", "disable"), ("rdrand", "require")))).find("cpu")
    assert cpu is not None and cpu.get("mode") == "maximum" and cpu.find("model") is None
    assert [(f.get("name"), f.get("policy")) for f in cpu.findall("feature")] == [
        ("aes", "disable"), ("rdrand", "require")]


def test_named_cpu_model_is_custom_exact_without_fallback() -> None:
    cpu = build(GuestSpec(name="g", cpu_model="Skylake-Client")).find("cpu")
    assert cpu is not None and cpu.get("mode") == "custom" and cpu.get("match") == "exact"
    model = cpu.find("model")
    assert model is not None and model.text == "Skylake-Client" and model.get("fallback") == "forbid"


def test_native_kl_requires_the_configured_feature_name() -> None:
    spec = GuestSpec(name="g", kl_backend="native", kl=KlExposure(enabled=True), kl_feature_name="kl")
    feats = [(f.get("name"), f.get("policy")) for f in build(spec).findall("cpu/feature")]
    assert feats == [("kl", "require")]


def test_emulated_kl_adds_no_cpu_flag() -> None:
    spec = GuestSpec(name="g", kl_backend="emulated", kl=KlExposure(enabled=True))
    root = build(spec)
    assert root.findall("cpu/feature") == []
    assert "-global" not in qemu_args(root)


def test_leaf19_present_zero_and_extra_cpu_args_become_cpu_globals() -> None:
    spec = GuestSpec(name="g", kl=KlExposure(leaf19_present_zero=True), extra_qemu_cpu_args=("kl=on",))
    args = qemu_args(build(spec))
    globals_ = [args[i + 1] for i, a in enumerate(args) if a == "-global"]
    assert globals_ == ["x86_64-cpu.kl=on", "x86_64-cpu.level=0x19", "x86_64-cpu.min-level=0x19"]


def test_vcpus_current_and_max_for_hotplug() -> None:
    vcpu = build(GuestSpec(name="g", vcpus=1, max_vcpus=4)).find("vcpu")
    assert vcpu is not None and vcpu.text == "4" and vcpu.get("current") == "1"


def test_suspend_to_mem_enables_pm_and_boots_the_bzimage() -> None:
    root = build(GuestSpec(name="g", suspend_to_mem=True))
    assert root.find("pm/suspend-to-mem").get("enabled") == "yes"  # type: ignore[union-attr]
    assert root.findtext("os/kernel") == "/srv/img/bzImage"
    assert build().find("pm/suspend-to-mem").get("enabled") == "no"  # type: ignore[union-attr]


def test_lifecycle_actions_and_quiet_devices() -> None:
    root = build()
    assert root.findtext("on_crash") == "destroy" and root.findtext("on_reboot") == "restart"
    assert root.find("devices/memballoon").get("model") == "none"  # type: ignore[union-attr]
    assert root.find("devices/graphics") is None and root.find("devices/video") is None
    assert root.find("devices/rng").get("model") == "virtio"  # type: ignore[union-attr]
    assert root.find("features/acpi") is not None


def test_disk_image_boots_from_its_overlay_never_the_base() -> None:
    img = ImageArtifact(name="debian", key="d", directory=Path("/srv"), disk=Path("/srv/base.qcow2"))
    root = build(GuestSpec(name="g"), img, overlay=Path("/var/tmp/klharness/x/overlay.qcow2"))
    sources = [s.get("file") for s in root.iter("source")]
    assert sources == ["/var/tmp/klharness/x/overlay.qcow2"]
    assert root.find("os/kernel") is None and root.find("os/boot").get("dev") == "hd"  # type: ignore[union-attr]


def test_disk_image_without_overlay_is_refused() -> None:
    img = ImageArtifact(name="debian", key="d", directory=Path("/srv"), disk=Path("/srv/base.qcow2"))
    with pytest.raises(ImageError, match="needs an overlay"):
        build(GuestSpec(name="g"), img)


def test_relative_kernel_path_is_refused() -> None:
    img = ImageArtifact(name="mini", key="k", directory=Path("x"), kernel=Path("x/vmlinux"))
    with pytest.raises(ImageError, match="not absolute"):
        build(GuestSpec(name="g"), img)


def test_patch_for_restore_changes_port_and_fwcfg_only() -> None:
    xml = build_domain_xml(GuestSpec(name="g"), kernel_image(), TCG, runtime(GuestSpec(name="g")))
    new = patch_for_restore(xml, ssh_port=41000, fwcfg=(("opt/klharness/authorized_key", Path("/w/fwcfg-1-0")),))
    assert ssh_port_of(xml) == 40022 and ssh_port_of(new) == 41000
    root = ET.fromstring(new)
    assert [e.get("file") for e in root.findall("sysinfo/entry")] == ["/w/fwcfg-1-0"]
    assert root.findtext("name") == "klh-r1-g"
    assert patch_for_restore(xml) == ET.tostring(ET.fromstring(xml), encoding="unicode")


@pytest.fixture()
def test_conn() -> libvirt.virConnect:
    libvirt.registerErrorHandler(lambda _c, _e: None, None)
    conn = libvirt.open("test:///default")
    yield conn
    conn.close()


@pytest.mark.parametrize("spec", [
    GuestSpec(name="plain"),
    GuestSpec(name="full", vcpus=2, max_vcpus=4, suspend_to_mem=True, persistent=True,
              cpu_features=(("aes", "disable"),), extra_qemu_cpu_args=("kl=on",),
              kl=KlExposure(leaf19_present_zero=True)),
    GuestSpec(name="native", kl_backend="native", kl=KlExposure(enabled=True)),
], ids=lambda s: s.name)
def test_xml_validates_against_libvirts_domain_schema(test_conn: libvirt.virConnect, spec: GuestSpec) -> None:
    # VIR_DOMAIN_DEFINE_VALIDATE checks the whole document against domain.rng, qemu:commandline
    # included; the test driver then ignores the qemu namespace (the real daemon is exercised by
    # the integration tests).
    xml = build_domain_xml(spec, kernel_image(), TCG, runtime(spec))
    dom = test_conn.defineXMLFlags(xml, libvirt.VIR_DOMAIN_DEFINE_VALIDATE)
    try:
        back = RunMetadata.from_domain_xml(dom.XMLDesc(0))
        assert back is not None and back.spec_key == spec_key(spec)
    finally:
        dom.undefine()


def test_schema_validation_can_fail(test_conn: libvirt.virConnect) -> None:
    xml = build_domain_xml(GuestSpec(name="g"), kernel_image(), TCG, runtime(GuestSpec(name="g")))
    bad = xml.replace("<qemu:arg value=\"-netdev\"", "<qemu:arg bogus=\"1\" value=\"-netdev\"")
    assert bad != xml
    with pytest.raises(libvirt.libvirtError, match="failed to validate"):
        test_conn.defineXMLFlags(bad, libvirt.VIR_DOMAIN_DEFINE_VALIDATE)
