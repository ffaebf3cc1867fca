"""GuestSpec / KlExposure / FwCfgEntry: values, validation messages, and the pooling key."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.errors import ConfigError
from harness.virt.spec import FwCfgEntry, GuestSpec, KlExposure, spec_key


def test_equal_configs_share_a_key_whatever_their_label() -> None:
    a = GuestSpec(name="a", kl=KlExposure(enabled=True, restrictions=frozenset({"cpl0"})))
    b = GuestSpec(name="b", kl=KlExposure(enabled=True, restrictions=frozenset({"cpl0"})))
    assert spec_key(a) == spec_key(b) and len(spec_key(a)) == 16


@pytest.mark.parametrize("change", [
    dict(vcpus=2), dict(memory_mib=1024), dict(cpu_features=(("aes", "disable"),)),
    dict(kl=KlExposure(enabled=True)), dict(kl_backend="native"), dict(suspend_to_mem=True),
    dict(fwcfg=(FwCfgEntry("opt/x", text="1"),)), dict(extra_qemu_cpu_args=("kl=on",)),
])
def test_any_real_difference_changes_the_key(change: dict[str, object]) -> None:
    assert spec_key(GuestSpec(name="a")) != spec_key(GuestSpec(name="a", **change))  # type: ignore[arg-type]


def test_tiger_lake_leaf19_by_default_and_zero_when_disabled() -> None:
    assert KlExposure(enabled=True).leaf19() == (0x7, 0x15, 0x3, 0)
    assert KlExposure(enabled=True, aeskle=False, nobackup_bit=False, random_keysource_bit=False,
                      restrictions=frozenset()).leaf19() == (0, 0x14, 0, 0)
    assert KlExposure().leaf19() == (0, 0, 0, 0)


def test_unknown_restriction_is_named() -> None:
    with pytest.raises(ConfigError, match=r"kl.restrictions: unknown \['ring3'\]"):
        KlExposure(restrictions=frozenset({"ring3"}))


def test_leaf19_present_zero_excludes_enabled() -> None:
    with pytest.raises(ConfigError, match="exclude each other"):
        KlExposure(enabled=True, leaf19_present_zero=True)


@pytest.mark.parametrize(("kw", "msg"), [
    (dict(name="bad name"), "name must match"),
    (dict(vcpus=4, max_vcpus=2), r"vcpus \(4\) <= max_vcpus \(2\)"),
    (dict(memory_mib=16), "below 64"),
    (dict(cpu_features=(("aes", "maybe"),)), "policy 'maybe'"),
    (dict(extra_qemu_cpu_args=("-cpu host",)), "not PROP=VALUE"),
    (dict(kl_backend="hw"), "kl_backend 'hw'"),
    (dict(accel="xen"), "accel 'xen'"),
    (dict(fwcfg=(FwCfgEntry("opt/x", text="1"), FwCfgEntry("opt/x", text="2"))), "unique"),
])
def test_bad_spec_fields_are_config_errors_naming_the_guest(kw: dict[str, object], msg: str) -> None:
    kw.setdefault("name", "g")
    with pytest.raises(ConfigError, match=msg):
        GuestSpec(**kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(("kw", "msg"), [
    (dict(name="etc/x", text="1"), "start with 'opt/'"),
    (dict(name="opt/" + "x" * 60, text="1"), "at most 55"),
    (dict(name="opt/x"), "exactly one of path or text"),
    (dict(name="opt/x", path=Path("rel")), "must be absolute"),
    (dict(name="opt/x", text="a" * 70000), "more than 65536 bytes"),
])
def test_bad_fwcfg_entries(kw: dict[str, object], msg: str) -> None:
    with pytest.raises(ConfigError, match=msg):
        FwCfgEntry(**kw)  # type: ignore[arg-type]


def test_native_kl_feature_and_cpu_globals() -> None:
    spec = GuestSpec(name="g", kl_backend="native", kl=KlExposure(enabled=True), cpu_features=(("aes", "disable"),))
    assert spec.cpu_feature_policies() == (("aes", "disable"), ("keylocker", "require"))
    assert GuestSpec(name="g", kl=KlExposure(enabled=True)).cpu_feature_policies() == ()
    assert GuestSpec(name="g", kl=KlExposure(leaf19_present_zero=True)).qemu_cpu_globals() == (
        "x86_64-cpu.level=0x19", "x86_64-cpu.min-level=0x19")


def test_qemu_kl_guests_get_every_kl_property_explicit_and_no_cpu_map_feature() -> None:
    from harness.virt.spec import GuestSpec, KlExposure

    kl = KlExposure(enabled=True, wide=False, restrictions=frozenset({"cpl0"}))
    spec = GuestSpec(name="q", vmm="qemu-kl", kl_backend="native", kl=kl, kl_migration_blocker=True,
                     cpu_features=(("aes", "require"), ("keylocker-backup", "disable")))
    assert spec.qemu_cpu_globals() == tuple(f"x86_64-cpu.{p}" for p in (
        "keylocker=on", "keylocker-aeskle=on", "keylocker-wide=off", "keylocker-backup=on", "keylocker-cpl0=on",
        "keylocker-noencrypt=off", "keylocker-nodecrypt=off", "keylocker-nobackup=on", "keylocker-random=on",
        "keylocker-block-migration=on", "keylocker-backup=off"))  # the cpu_features line last: it wins
    assert spec.cpu_feature_policies() == (("aes", "require"),)  # libvirt's cpu_map knows no keylocker
    off = GuestSpec(name="o", vmm="qemu-kl", kl_backend="native")
    assert off.qemu_cpu_globals() == ("x86_64-cpu.keylocker=off",)
    lab = GuestSpec(name="l", kl_backend="native", kl=kl)
    assert ("keylocker", "require") in lab.cpu_feature_policies() and lab.qemu_cpu_globals() == ()


def test_qemu_kl_needs_the_native_backend() -> None:
    from harness.errors import ConfigError
    from harness.virt.spec import GuestSpec

    with pytest.raises(ConfigError, match="vmm qemu-kl executes Key Locker itself"):
        GuestSpec(name="q", vmm="qemu-kl", kl_backend="emulated")
    with pytest.raises(ConfigError, match="vmm 'kvm' is not one of system, qemu-kl"):
        GuestSpec(name="q", vmm="kvm")  # type: ignore[arg-type]
