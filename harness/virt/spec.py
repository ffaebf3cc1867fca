"""What a guest should be: the schema half of harness.virt (runtime state lives in guest.py).

Why frozen dataclasses: a spec is a value.  Two matrix cells that ask for the
same guest get equal specs and the same :func:`spec_key`, so they can share
one boot; nothing here may change once a guest runs from it.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

from harness.errors import ConfigError
from harness.kl.cpuid import CPUID7_ECX_KL, L19_EBX_AESKLE, KeyLockerCpuid, Regs, decode, leaf19_words

KlBackend = Literal["native", "emulated"]
# The VMM a guest runs on: the distribution's QEMU, or qemu-kl (its TCG executes Key Locker).
Vmm = Literal["system", "qemu-kl"]
VMMS = ("system", "qemu-kl")
AccelRequest = Literal["auto", "kvm", "tcg"]
FeaturePolicy = Literal["require", "disable", "force", "optional", "forbid"]

RESTRICTIONS = frozenset({"cpl0", "noencrypt", "nodecrypt"})
FEATURE_POLICIES = frozenset({"require", "disable", "force", "optional", "forbid"})
# CPUID.7.0:ECX[23] has no name in stock QEMU/libvirt; a patched stack picks one.
# Linux's out-of-tree series called it "keylocker", so that is the default.
DEFAULT_KL_FEATURE_NAME = "keylocker"

FWCFG_PREFIX = "opt/"
FWCFG_MAX_NAME = 55  # QEMU's FW_CFG_MAX_FILE_PATH (56) minus the NUL
FWCFG_MAX_BYTES = 64 * 1024  # larger entries take seconds to read in a TCG guest
FWCFG_MAX_ENTRIES = 19  # what fits beside QEMU's own files (HOST_NOTES)

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,39}$")
_QEMU_PROP_RE = re.compile(r"^[A-Za-z0-9_.-]+=[A-Za-z0-9_.,:+-]+$")


@dataclass(frozen=True)
class KlExposure:
    """The Key Locker a guest's virtual CPU should advertise (KEYLOCKER.md §2).

    Defaults copy a Tiger Lake (leaf 0x19 = EAX 7, EBX 0x15 with CR4.KL,
    ECX 3).  ``leaf19_present_zero`` is the "leaf present, feature absent"
    shape (``-cpu max,level=0x19,min-level=0x19``) and excludes ``enabled``.
    """

    enabled: bool = False
    aeskle: bool = True
    wide: bool = True
    backup: bool = True
    restrictions: frozenset[str] = RESTRICTIONS
    nobackup_bit: bool = True
    random_keysource_bit: bool = True
    leaf19_present_zero: bool = False

    def __post_init__(self) -> None:
        unknown = set(self.restrictions) - RESTRICTIONS
        if unknown:
            raise ConfigError(f"kl.restrictions: unknown {sorted(unknown)} (choose from {sorted(RESTRICTIONS)})")
        if self.enabled and self.leaf19_present_zero:
            raise ConfigError("kl: enabled and leaf19_present_zero exclude each other "
                              "(the latter is the 'leaf 0x19 present but all zero' guest without KL)")

    def leaf19(self) -> tuple[int, int, int, int]:
        """CPUID.(0x19,0) EAX, EBX, ECX, EDX as advertised; all zero unless enabled.

        EBX[0] (AESKLE) is reported as configured; whether it reads 1 before
        CR4.KL is set is the emulator's or the VMM's business, not the spec's.
        """
        if not self.enabled:
            return (0, 0, 0, 0)
        eax, ebx, ecx = leaf19_words(restrictions=self.restrictions, wide=self.wide, backup=self.backup,
                                     nobackup=self.nobackup_bit, random_keysource=self.random_keysource_bit)
        return (eax, ebx | (L19_EBX_AESKLE if self.aeskle else 0), ecx, 0)

    def cpuid(self) -> KeyLockerCpuid:
        """The decoded CPUID a guest with this exposure reads (what the probe's checks depend on)."""
        if not self.enabled:
            return decode(0, None)
        return decode(CPUID7_ECX_KL, Regs(*self.leaf19()))


@dataclass(frozen=True)
class FwCfgEntry:
    """One fw_cfg blob for the guest, from a host file (``path``) or from ``text``.

    Text entries are written to a 0600 file at launch and passed by ``file=``,
    so no entry's content ever appears in the domain XML (which gets logged).
    """

    name: str
    path: Path | None = None
    text: str | None = None

    def __post_init__(self) -> None:
        if not self.name.startswith(FWCFG_PREFIX) or len(self.name) > FWCFG_MAX_NAME:
            raise ConfigError(f"fw_cfg entry {self.name!r}: names start with {FWCFG_PREFIX!r} and have at most "
                              f"{FWCFG_MAX_NAME} characters")
        if (self.path is None) == (self.text is None):
            raise ConfigError(f"fw_cfg entry {self.name!r}: give exactly one of path or text")
        if self.path is not None and not self.path.is_absolute():
            raise ConfigError(f"fw_cfg entry {self.name!r}: path {self.path} must be absolute (QEMU opens it)")
        if self.text is not None and len(self.text.encode()) > FWCFG_MAX_BYTES:
            raise ConfigError(f"fw_cfg entry {self.name!r}: more than {FWCFG_MAX_BYTES} bytes")


@dataclass(frozen=True)
class GuestSpec:
    """Everything that decides what guest boots; equal specs may share a guest.

    ``extra_qemu_cpu_args`` are ``prop=value`` CPU properties for a patched
    QEMU.  libvirt owns ``-cpu``; QEMU would take a second ``-cpu`` from
    ``<qemu:commandline>`` and drop libvirt's feature list, so each property
    becomes ``-global x86_64-cpu.PROP=VALUE`` instead: globals apply to every
    x86 CPU model and to hot-plugged vCPUs, and libvirt's own ``-cpu``
    features still win on conflict (verified with QEMU 7.2 ``level``).
    A property the QEMU lacks fails the start ("Property ... not found"),
    reported as CapabilityError.
    """

    name: str
    image: str = "mini"
    vcpus: int = 1
    max_vcpus: int | None = None
    memory_mib: int = 512
    cpu_model: str = "max"
    cpu_features: tuple[tuple[str, FeaturePolicy], ...] = ()
    extra_qemu_cpu_args: tuple[str, ...] = ()
    kl_backend: KlBackend = "emulated"
    kl: KlExposure = field(default_factory=KlExposure)
    kl_feature_name: str = DEFAULT_KL_FEATURE_NAME
    accel: AccelRequest = "auto"
    suspend_to_mem: bool = False
    persistent: bool = False  # defined, not transient: needed for managed save
    fwcfg: tuple[FwCfgEntry, ...] = ()
    extra_cmdline: str = ""
    vmm: Vmm = "system"
    kl_migration_blocker: bool = False  # qemu-kl: LOADIWKEY makes the guest unmigratable (a stack that refuses)

    def __post_init__(self) -> None:
        where = f"guest {self.name!r}"
        if not _NAME_RE.match(self.name):
            raise ConfigError(f"{where}: name must match {_NAME_RE.pattern} (it becomes part of the domain name)")
        if self.vcpus < 1 or self.top_vcpus < self.vcpus:
            raise ConfigError(f"{where}: need 1 <= vcpus ({self.vcpus}) <= max_vcpus ({self.top_vcpus})")
        if self.memory_mib < 64:
            raise ConfigError(f"{where}: memory_mib {self.memory_mib} is below 64")
        for feat, policy in self.cpu_features:
            if policy not in FEATURE_POLICIES:
                raise ConfigError(f"{where}: cpu feature {feat!r}: policy {policy!r} not in {sorted(FEATURE_POLICIES)}")
        for arg in self.extra_qemu_cpu_args:
            if not _QEMU_PROP_RE.match(arg):
                raise ConfigError(f"{where}: extra_qemu_cpu_args item {arg!r} is not PROP=VALUE")
        if self.kl_backend not in ("native", "emulated"):
            raise ConfigError(f"{where}: kl_backend {self.kl_backend!r} is not 'native' or 'emulated'")
        if self.vmm not in VMMS:
            raise ConfigError(f"{where}: vmm {self.vmm!r} is not one of {', '.join(VMMS)}")
        if self.vmm == "qemu-kl" and self.kl_backend != "native":
            raise ConfigError(f"{where}: vmm qemu-kl executes Key Locker itself: its guests take kl_backend native")
        if self.accel not in ("auto", "kvm", "tcg"):
            raise ConfigError(f"{where}: accel {self.accel!r} is not 'auto', 'kvm' or 'tcg'")
        names = [e.name for e in self.fwcfg]
        if len(set(names)) != len(names) or len(names) > FWCFG_MAX_ENTRIES:
            raise ConfigError(f"{where}: fw_cfg entry names must be unique and at most {FWCFG_MAX_ENTRIES}")

    @property
    def top_vcpus(self) -> int:
        """The vCPU ceiling for hot-plug (``max_vcpus`` or ``vcpus``)."""
        return self.max_vcpus if self.max_vcpus is not None else self.vcpus

    def cpu_feature_policies(self) -> tuple[tuple[str, str], ...]:
        """The ``<feature>`` elements to emit, KL's native flag included."""
        feats: list[tuple[str, str]] = [(n, p) for n, p in self.cpu_features if not self._qemu_kl_property(n)]
        if self.kl_backend == "native" and self.kl.enabled and self.vmm == "system":
            feats.append((self.kl_feature_name, "require"))  # a patched libvirt cpu_map (lab)
        return tuple(feats)

    def _qemu_kl_property(self, feature: str) -> bool:
        """On qemu-kl, a Key Locker feature is a QEMU CPU property libvirt's cpu_map does not know."""
        return self.vmm == "qemu-kl" and feature.startswith("keylocker")

    def qemu_cpu_globals(self) -> tuple[str, ...]:
        """``x86_64-cpu.PROP=VALUE`` strings for ``-global``, leaf-0x19 shape and qemu-kl's KL included."""
        props = list(self.extra_qemu_cpu_args)
        if self.kl.leaf19_present_zero:
            props += ["level=0x19", "min-level=0x19"]
        if self.vmm == "qemu-kl":
            props += qemu_kl_properties(self.kl, block_migration=self.kl_migration_blocker)
            # cpu_features naming Key Locker (a lab config's {keylocker: disable}) become properties too;
            # they come last, so they win over the exposure's.
            props += [f"{n}={'on' if p in ('require', 'force') else 'off'}" for n, p in self.cpu_features
                      if self._qemu_kl_property(n)]
        return tuple(f"x86_64-cpu.{p}" for p in props)


def qemu_kl_properties(kl: KlExposure, *, block_migration: bool = False) -> list[str]:
    """The qemu-kl CPU properties for an exposure, every one explicit (``-cpu max`` turns them all on).

    ``kl.aeskle`` is not among them: on qemu-kl, "AESKLE reads 0" is the real
    thing — a guest kernel that leaves CR4.KL clear — so it decides whether
    the harness loads klhelper, not what the CPU enumerates.
    """
    if not kl.enabled:
        return ["keylocker=off"]

    def on(flag: bool) -> str:
        return "on" if flag else "off"

    flags = {"wide": kl.wide, "backup": kl.backup, "cpl0": "cpl0" in kl.restrictions,
             "noencrypt": "noencrypt" in kl.restrictions, "nodecrypt": "nodecrypt" in kl.restrictions,
             "nobackup": kl.nobackup_bit, "random": kl.random_keysource_bit, "block-migration": block_migration}
    return ["keylocker=on", "keylocker-aeskle=on", *(f"keylocker-{name}={on(v)}" for name, v in flags.items())]


def spec_key(spec: GuestSpec) -> str:
    """A stable 16-hex-digit hash of everything but the label ``name``.

    Guests whose keys match are interchangeable, so the pool boots one.
    """
    data = asdict(spec)
    data.pop("name")
    blob = json.dumps(data, sort_keys=True, default=_jsonable, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _jsonable(obj: object) -> object:
    if isinstance(obj, frozenset | set):
        return sorted(obj)
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"cannot hash {type(obj).__name__} in a GuestSpec")
