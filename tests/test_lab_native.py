"""The native path of configs/lab-tigerlake.yaml, checked as data: the config loads under its
profile, plans native on a KL host, and turns into domain XML whose CPU requires (or disables)
the configured Key Locker feature name and whose QEMU arguments carry the patched-QEMU
``-global x86_64-cpu.PROP=VALUE`` properties — everything a lab host would be given, without one."""

from __future__ import annotations

import dataclasses
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from harness.config import load_config
from harness.config.model import Config
from harness.images.artifact import ImageArtifact
from harness.paths import REPO_DIR
from harness.plan.matrix import GuestPlan, cells, plan
from harness.plan.profiles import check_config, load_profile
from harness.virt.accel import AccelChoice
from harness.virt.domain_xml import QEMU_NS, DomainRuntime, build_domain_xml
from harness.virt.metadata import RunMetadata
from harness.virt.spec import spec_key

LAB = REPO_DIR / "configs" / "lab-tigerlake.yaml"
KVM = AccelChoice("kvm", "kvm", "hardware KVM module kvm_intel loaded and /dev/kvm present (test)")
DEBIAN = ImageArtifact(name="debian", key="d" * 64, directory=Path("/srv/img"), disk=Path("/srv/img/disk.qcow2"),
                       kernel=Path("/srv/img/vmlinux"), initrd=Path("/srv/img/initrd.cpio"),
                       cmdline="console=ttyS0 root=/dev/vda")


@pytest.fixture(scope="module")
def lab() -> Config:
    return load_config(LAB)


def plans_of(config: Config) -> dict[str, GuestPlan]:
    return {p.name: p for p in plan(config, host_kl_usable=True)}


def domain(p: GuestPlan) -> ET.Element:
    spec = p.spec
    rt = DomainRuntime(name=f"klh-lab-{spec.name}", ssh_port=40022, console_log=Path("/var/tmp/klh/console.log"),
                       meta=RunMetadata(run_id="lab", guest=spec.name, spec_key=spec_key(spec), accel="kvm",
                                        accel_reason=KVM.reason, workdir="/var/tmp/klh"),
                       overlay=Path("/var/tmp/klh/overlay.qcow2"))
    return ET.fromstring(build_domain_xml(spec, DEBIAN, KVM, rt))


def qemu_args(root: ET.Element) -> list[str]:
    return [a.get("value", "") for a in root.iter(f"{{{QEMU_NS}}}arg")]


def globals_of(root: ET.Element) -> list[str]:
    args = qemu_args(root)
    return [args[i + 1] for i, a in enumerate(args) if a == "-global"]


def features(root: ET.Element) -> list[tuple[str | None, str | None]]:
    return [(f.get("policy"), f.get("name")) for f in root.findall("cpu/feature")]


def test_the_lab_config_loads_under_its_profile_and_plans_every_guest_native(lab: Config) -> None:
    assert (lab.run.kl_backend, lab.run.profile, lab.run.accel) == ("native", "kvm-kl-rfc", "kvm")
    check_config(lab, load_profile(lab.run.profile))
    plans = plans_of(lab)
    assert set(plans) == {"kl-full", "kl-off", "kl-no-aeskle", "leaf19-zero"}
    for p in plans.values():
        assert p.backend == "native" and p.spec.kl_backend == "native"
        assert p.emulated_cpu is None, f"{p.name}: a native guest gets no emulator hand-over (no klemu fw_cfg)"
        assert p.refused is None


def test_native_is_chosen_from_the_config_not_from_the_host(lab: Config) -> None:
    # kl_backend: native is explicit, so even a host without usable KL plans native (and host-check says why
    # it cannot run) rather than silently falling back to emulation.
    assert {p.backend for p in plan(lab, host_kl_usable=False)} == {"native"}


def test_kl_guest_requires_the_configured_feature_and_gets_the_cpu_globals(lab: Config) -> None:
    root = domain(plans_of(lab)["kl-full"])
    assert root.get("type") == "kvm"
    # -cpu max under KVM: every feature the (patched) KVM offers, the configured KL name required on top.
    assert root.find("cpu").get("mode") == "maximum"  # type: ignore[union-attr]
    assert features(root) == [("require", "keylocker")]
    assert globals_of(root) == ["x86_64-cpu.min-level=0x19"]
    args = qemu_args(root)
    i = args.index("-global")
    assert args[i:i + 2] == ["-global", "x86_64-cpu.min-level=0x19"]
    assert "-cpu" not in args, "libvirt owns -cpu; a second one would drop its feature list"
    assert root.find("vcpu").get("current") == "2" and root.findtext("vcpu") == "3"  # type: ignore[union-attr]


def test_the_feature_name_follows_run_kl_feature_name(lab: Config) -> None:
    renamed = dataclasses.replace(lab, run=dataclasses.replace(lab.run, kl_feature_name="kl"))
    root = domain(plans_of(renamed)["kl-full"])
    assert features(root) == [("require", "kl")]


def test_hidden_and_leaf19_guests_disable_kl_and_shape_the_leaf(lab: Config) -> None:
    plans = plans_of(lab)
    off = domain(plans["kl-off"])
    assert features(off) == [("disable", "keylocker")]
    assert globals_of(off) == []
    zero = domain(plans["leaf19-zero"])
    assert features(zero) == [("disable", "keylocker")]
    assert globals_of(zero) == ["x86_64-cpu.level=0x19", "x86_64-cpu.min-level=0x19"]


def test_advertised_unusable_guest_still_requires_the_feature(lab: Config) -> None:
    p = plans_of(lab)["kl-no-aeskle"]
    assert not p.config.kl.aeskle
    assert features(domain(p)) == [("require", "keylocker")]


def test_only_the_usable_kl_guest_gets_lifecycle_cells(lab: Config) -> None:
    ids = [c.id for c in cells(lab, plan(lab, host_kl_usable=True))]
    assert [i for i in ids if i.startswith("kl-full/")] == [
        "kl-full/probe", "kl-full/save-restore", "kl-full/managed-save", "kl-full/suspend",
        "kl-full/vcpu-hotplug", "kl-full/reboot", "kl-full/migrate"]
    assert {i for i in ids if not i.startswith("kl-full/")} == {"kl-off/probe", "kl-no-aeskle/probe",
                                                                  "leaf19-zero/probe"}


def test_the_kvm_kl_rfc_profile_expects_migration_refused_and_native_provenance() -> None:
    profile = load_profile("kvm-kl-rfc")
    assert profile.provenance == "native"
    assert profile.lifecycle["migrate"].handle == "refused"
    assert profile.lifecycle["reboot"].handle == "invalid"
