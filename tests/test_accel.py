"""Accelerator choice: KVM only with a hardware KVM module, else TCG, always with a reason."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.errors import CapabilityError, ConfigError
from harness.virt.accel import choose_accel, kvm_usability, loaded_modules

PROC_MODULES_PVM = """\
kvm_pvm 139264 0 - Live 0x0000000000000000
kvm 1142784 1 kvm_pvm, Live 0x0000000000000000
irqbypass 16384 1 kvm, Live 0x0000000000000000
"""
PROC_MODULES_INTEL = """\
kvm_intel 380928 0 - Live 0x0000000000000000
kvm 1142784 1 kvm_intel, Live 0x0000000000000000
"""


@pytest.fixture()
def dev_kvm(tmp_path: Path) -> Path:
    p = tmp_path / "kvm"
    p.write_text("")
    return p


def modules_from(text: str, tmp_path: Path, sys_names: tuple[str, ...] = ()) -> set[str]:
    (tmp_path / "modules").write_text(text)
    sysdir = tmp_path / "sys_module"
    sysdir.mkdir(exist_ok=True)
    for n in sys_names:
        (sysdir / n).mkdir()
    return loaded_modules(tmp_path / "modules", sysdir)


def test_kvm_pvm_host_gets_tcg_with_the_reason(tmp_path: Path, dev_kvm: Path) -> None:
    choice = choose_accel("auto", modules=modules_from(PROC_MODULES_PVM, tmp_path), dev_kvm=dev_kvm)
    assert choice.accel == "tcg" and choice.domain_type == "qemu"
    assert "kvm_pvm" in choice.reason and "software nesting" in choice.reason


def test_kvm_intel_host_gets_kvm(tmp_path: Path, dev_kvm: Path) -> None:
    choice = choose_accel("auto", modules=modules_from(PROC_MODULES_INTEL, tmp_path), dev_kvm=dev_kvm)
    assert choice.accel == "kvm" and choice.domain_type == "kvm"
    assert "kvm_intel" in choice.reason


def test_builtin_kvm_amd_seen_through_sys_module_when_proc_modules_is_missing(tmp_path: Path,
                                                                             dev_kvm: Path) -> None:
    mods = loaded_modules(tmp_path / "absent", tmp_path / "absent-too")
    assert mods == set()
    mods = modules_from("", tmp_path, sys_names=("kvm", "kvm_amd"))
    assert choose_accel("auto", modules=mods, dev_kvm=dev_kvm).accel == "kvm"


def test_hardware_module_without_dev_kvm_is_not_usable(tmp_path: Path) -> None:
    usable, why = kvm_usability({"kvm", "kvm_intel"}, tmp_path / "no-kvm")
    assert not usable and "missing" in why


def test_forced_kvm_where_unusable_is_a_capability_error(tmp_path: Path, dev_kvm: Path) -> None:
    with pytest.raises(CapabilityError, match=r"accel 'kvm' was requested but KVM is not usable.*kvm_pvm"):
        choose_accel("kvm", modules=modules_from(PROC_MODULES_PVM, tmp_path), dev_kvm=dev_kvm)


def test_no_kvm_module_at_all(tmp_path: Path, dev_kvm: Path) -> None:
    choice = choose_accel("auto", modules=set(), dev_kvm=dev_kvm)
    assert choice.accel == "tcg" and "no kvm_intel or kvm_amd module loaded" in choice.reason


def test_tcg_requested_is_tcg_even_with_kvm() -> None:
    choice = choose_accel("tcg", modules={"kvm_intel"})
    assert choice.accel == "tcg" and choice.reason == "TCG requested"
    assert "TCG" in choice.slow_hint


def test_remote_host_auto_is_tcg_and_forced_kvm_is_trusted() -> None:
    assert choose_accel("auto", local=False, modules={"kvm_intel"}).accel == "tcg"
    assert choose_accel("kvm", local=False, modules=set()).accel == "kvm"


def test_unknown_request_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="accel 'hvf' is not one of auto, kvm, tcg"):
        choose_accel("hvf")


def test_this_host_is_detected_without_injection() -> None:
    # On the project's machines KVM is kvm_pvm: auto must never pick it.  Elsewhere either is fine,
    # but the reason must say which module decided.
    choice = choose_accel("auto")
    mods = loaded_modules()
    if "kvm_pvm" in mods and not {"kvm_intel", "kvm_amd"} & mods:
        assert choice.accel == "tcg" and "kvm_pvm" in choice.reason
    assert choice.reason


def test_a_remote_hosts_own_kvm_facts_decide_auto() -> None:
    usable = {"usable": True, "reason": "kvm_intel loaded, /dev/kvm usable"}
    assert choose_accel("auto", local=False, remote_kvm=usable).accel == "kvm"
    unusable = {"usable": False, "reason": "only kvm_pvm (software nesting)"}
    auto = choose_accel("auto", local=False, remote_kvm=unusable)
    assert auto.accel == "tcg" and "kvm_pvm" in auto.reason
    with pytest.raises(CapabilityError, match="not usable on the remote host: only kvm_pvm"):
        choose_accel("kvm", local=False, remote_kvm=unusable)
    unread = {"usable": None, "reason": "the kernel modules of lab were not read"}
    assert choose_accel("auto", local=False, remote_kvm=unread).accel == "tcg"
    assert choose_accel("kvm", local=False, remote_kvm=unread).accel == "kvm"  # the user's word, as without facts
