"""Choose the libvirt domain type (KVM or TCG) and say why.

Why not trust ``/dev/kvm``: on the project's machines ``/dev/kvm`` works and
libvirt advertises ``<domain type='kvm'>``, but the module behind it is
``kvm_pvm`` (software nesting, ~1000x slower; ``-cpu max`` aborts).  KVM is
chosen only when a hardware KVM module (``kvm_intel``/``kvm_amd``) is loaded;
everything else runs under TCG.  The reason travels into the results.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from harness.errors import CapabilityError, ConfigError

HARDWARE_KVM_MODULES = ("kvm_intel", "kvm_amd")
SOFTWARE_KVM_MODULES = {"kvm_pvm": "software nesting (PVM), ~1000x slower than hardware KVM; -cpu max aborts"}


@dataclass(frozen=True)
class AccelChoice:
    """Which accelerator a guest runs on, and the evidence for it."""

    requested: str  # auto | kvm | tcg
    accel: Literal["kvm", "tcg"]
    reason: str

    @property
    def domain_type(self) -> Literal["kvm", "qemu"]:
        """The ``<domain type=...>`` value libvirt wants."""
        return "kvm" if self.accel == "kvm" else "qemu"

    @property
    def slow_hint(self) -> str:
        """What to blame when a boot makes no progress (used in timeout messages)."""
        if self.accel == "tcg":
            return ("the guest runs under TCG (software emulation): a stock kernel needs ~8 s to reach user space "
                    "and much longer on a loaded host; raise the boot timeout or check the kernel cmdline has "
                    "console=ttyS0")
        return "the guest runs under KVM; if KVM is nested or software-emulated it can be 1000x slower"


def loaded_modules(proc_modules: Path = Path("/proc/modules"), sys_module: Path = Path("/sys/module")) -> set[str]:
    """Names of loaded (or built-in) kernel modules.

    ``/proc/modules`` is missing in some containers and never lists built-ins;
    ``/sys/module`` has both, so the union is taken.
    """
    names: set[str] = set()
    with contextlib.suppress(OSError):
        names |= {line.split()[0] for line in proc_modules.read_text().splitlines() if line.strip()}
    with contextlib.suppress(OSError):
        names |= {p.name for p in sys_module.iterdir()}
    return names


def kvm_usability(modules: set[str], dev_kvm: Path = Path("/dev/kvm")) -> tuple[bool, str]:
    """Whether hardware KVM is usable here, with a one-line reason either way."""
    return kvm_usability_of(modules, dev_kvm=str(dev_kvm), present=dev_kvm.exists())


def kvm_usability_of(modules: set[str], *, dev_kvm: str, present: bool) -> tuple[bool, str]:
    """The same judgement from facts read anywhere (a remote host's modules and whether its /dev/kvm exists)."""
    hw = [m for m in HARDWARE_KVM_MODULES if m in modules]
    if hw and present:
        return True, f"hardware KVM module {hw[0]} loaded and {dev_kvm} present"
    if hw:
        return False, f"module {hw[0]} loaded but {dev_kvm} is missing"
    soft = [m for m in SOFTWARE_KVM_MODULES if m in modules]
    if soft:
        return False, (f"{dev_kvm} is backed by {soft[0]} ({SOFTWARE_KVM_MODULES[soft[0]]}), "
                       f"not by {' or '.join(HARDWARE_KVM_MODULES)}")
    return False, f"no {' or '.join(HARDWARE_KVM_MODULES)} module loaded"


def choose_accel(requested: str, *, local: bool = True, modules: set[str] | None = None,
                 dev_kvm: Path = Path("/dev/kvm"), remote_kvm: Mapping[str, Any] | None = None) -> AccelChoice:
    """Decide KVM or TCG for ``requested`` (auto | kvm | tcg).

    ``local`` is False for a remote libvirt URI: this host's modules say
    nothing about the remote one.  ``remote_kvm`` is the remote host's own
    ``kvm`` fact when it was read there (over its SSH link: ``usable`` and
    ``reason``, judged like ours); without it ``auto`` falls back to TCG and
    ``kvm`` is trusted as the user's statement.  ``modules`` and ``dev_kvm``
    are injectable for tests.

    Raises CapabilityError when ``kvm`` is forced on a local host without
    usable KVM, ConfigError for an unknown request.
    """
    if requested == "tcg":
        return AccelChoice(requested, "tcg", "TCG requested")
    if requested not in ("auto", "kvm"):
        raise ConfigError(f"accel {requested!r} is not one of auto, kvm, tcg")
    if not local and remote_kvm is not None and isinstance(remote_kvm.get("usable"), bool):
        why = str(remote_kvm.get("reason") or "")
        if remote_kvm["usable"]:
            return AccelChoice(requested, "kvm", f"KVM usable on the remote host (read there): {why}")
        if requested == "kvm":
            raise CapabilityError(f"accel 'kvm' was requested but KVM is not usable on the remote host: {why}")
        return AccelChoice(requested, "tcg", f"remote host: KVM not usable ({why}); using TCG")
    if not local:
        if requested == "kvm":
            return AccelChoice(requested, "kvm", "KVM requested for a remote libvirt host (not verified from here)")
        return AccelChoice(requested, "tcg", "remote libvirt host: KVM usability cannot be checked from here; "
                                             "set accel: kvm for lab hosts with hardware KVM")
    usable, why = kvm_usability(loaded_modules() if modules is None else modules, dev_kvm)
    if usable:
        return AccelChoice(requested, "kvm", why)
    if requested == "kvm":
        raise CapabilityError(f"accel 'kvm' was requested but KVM is not usable on this host: {why}")
    return AccelChoice(requested, "tcg", f"KVM not usable ({why}); using TCG")
