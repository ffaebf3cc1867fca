"""From a config to what must boot: guest plans (spec + the emulated VMM's
decisions) and the cells of the matrix.

Why separate from libvirt: deciding what a guest should get — which backend,
which virtual CPUID, whether the VMM refuses exposure — is pure logic, unit
tested without a daemon; harness.virt only makes it real.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from harness.config.model import Config, GuestConfig
from harness.kl.emuconfig import EmulatedCpu
from harness.virt.spec import GuestSpec, KlExposure

# GuestConfig fields a GuestSpec takes as they are (kl, kl_backend and vmm are decided by plan_guest).
_CARRIED = frozenset(f.name for f in fields(GuestSpec)) & frozenset(f.name for f in fields(GuestConfig)) \
    - {"kl", "kl_backend", "vmm"}


@dataclass(frozen=True)
class GuestPlan:
    """One guest of the matrix: the libvirt-facing spec plus the VMM's KL decisions."""

    config: GuestConfig
    spec: GuestSpec
    backend: str                     # "native" | "emulated"
    emulated_cpu: EmulatedCpu | None  # set when the emulated VMM exposes KL
    refused: str | None = None       # why the VMM refused to expose KL (exposure refused)
    helper: bool = False             # load klhelper after every boot (lab, or qemu-kl to set CR4.KL)

    @property
    def vmm(self) -> str:
        return self.spec.vmm

    @property
    def name(self) -> str:
        return self.config.name


@dataclass(frozen=True)
class Cell:
    """One question the matrix asks: a check set on a guest, or a lifecycle event on it."""

    id: str          # "kl-full/probe", "kl-full/save-restore"
    guest: str
    kind: str        # "probe" | "lifecycle"
    event: str | None = None


def resolve_backend(guest: GuestConfig, config: Config, *, host_kl_usable: bool) -> str:
    """``auto`` means native only where the host itself can run Key Locker, else emulated.

    On qemu-kl the VMM executes Key Locker, so the probe always runs the native path there.
    """
    wanted = guest.kl_backend or config.run.kl_backend
    if (guest.vmm or config.run.vmm) == "qemu-kl":
        return "native"
    if wanted == "auto":
        return "native" if host_kl_usable else "emulated"
    return wanted


def plan_guest(guest: GuestConfig, config: Config, *, host_kl_usable: bool = False) -> GuestPlan:
    backend = resolve_backend(guest, config, host_kl_usable=host_kl_usable)
    vmm = guest.vmm or config.run.vmm
    kl = guest.kl
    refused = None
    expose = kl.enabled
    host_uses_kl = config.run.host_uses_kl if guest.host_uses_kl is None else guest.host_uses_kl
    if expose and host_uses_kl:
        # KEYLOCKER.md §6: the 2021 KVM design offers KL to guests only when the
        # host kernel does not use it; klharness's VMM models the same rule.
        refused = "the host kernel uses Key Locker (modelled: host_uses_kl), so the VMM refuses exposure"
        expose = False
    exposure = KlExposure(enabled=expose, aeskle=kl.aeskle, wide=kl.wide, backup=kl.backup,
                          restrictions=frozenset(kl.restrictions), nobackup_bit=kl.nobackup,
                          random_keysource_bit=kl.random_keysource, leaf19_present_zero=kl.leaf19_present_zero)
    # What the config says as such (name, image, vCPUs, memory, CPU model and features, …) is carried
    # by name, so a field added to both dataclasses cannot be forgotten here; the rest is decided above.
    spec = GuestSpec(**{**{name: getattr(guest, name) for name in _CARRIED},
                        "kl_backend": "native" if backend == "native" else "emulated", "kl": exposure,
                        "kl_feature_name": config.run.kl_feature_name, "accel": config.run.accel, "vmm": vmm,
                        "kl_migration_blocker": kl.migration_blocker})
    emulated = None
    if backend == "emulated" and expose:
        # aeskle: false is modelled as the common real case: a guest kernel that never sets
        # CR4.KL (every stock kernel), so AESKLE reads 0 and even LOADIWKEY #UDs.
        # The emulator's CPU is the exposure itself (one virtual-CPU value), plus the modelled kernel's CR4.KL.
        emulated = EmulatedCpu(kl=True, aeskle=True, cr4_kl=exposure.aeskle, cpl=3, restrictions=exposure.restrictions,
                               wide=exposure.wide, backup=exposure.backup, nobackup=exposure.nobackup_bit,
                               random_keysource=exposure.random_keysource_bit)
    # qemu-kl: a stock guest kernel never sets CR4.KL, so klhelper does it wherever AESKLE should read 1
    # (kl.aeskle: false on qemu-kl is the real "advertised but unusable" guest, no model involved).
    helper = guest.helper or (vmm == "qemu-kl" and expose and kl.aeskle)
    return GuestPlan(guest, spec, backend, emulated, refused, helper)


def plan(config: Config, *, host_kl_usable: bool = False) -> list[GuestPlan]:
    return [plan_guest(g, config, host_kl_usable=host_kl_usable) for g in config.guests]


def lifecycle_events(p: GuestPlan, config: Config) -> tuple[str, ...]:
    """Lifecycle events asked of a guest: only guests with usable, exposed KL have handles to keep."""
    if not (p.spec.kl.enabled and p.config.kl.aeskle):
        return ()
    return config.lifecycle_for(p.config)


def cells(config: Config, plans: list[GuestPlan] | None = None) -> list[Cell]:
    """Every cell, in a stable order: each guest's probe cell, then its lifecycle cells."""
    out: list[Cell] = []
    for p in plans or plan(config):
        out.append(Cell(f"{p.name}/probe", p.name, "probe"))
        out.extend(Cell(f"{p.name}/{e}", p.name, "lifecycle", e) for e in lifecycle_events(p, config))
    return out
