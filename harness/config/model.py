"""The typed, frozen form of a klharness config (one dataclass per YAML section)."""

from __future__ import annotations

from dataclasses import dataclass, field

from harness.timeouts import Timeouts

LIFECYCLE_EVENTS = ("save-restore", "managed-save", "reboot", "suspend", "vcpu-hotplug", "migrate")
RESTRICTIONS = ("cpl0", "noencrypt", "nodecrypt")
KEEP_POLICIES = ("failed", "all", "none")  # whose guests (domain, disk, artifacts) outlive the run


@dataclass(frozen=True)
class RunSettings:
    """``run:`` — where and how the matrix runs."""

    uri: str = "qemu:///system"
    accel: str = "auto"          # auto | kvm | tcg
    kl_backend: str = "auto"     # auto | native | emulated
    profile: str = "emulated"
    parallel: int = 2            # guests booted at once
    keep: str = "failed"         # one of KEEP_POLICIES: whose guests and artifacts are kept
    results: str = "results"     # results root directory
    host_uses_kl: bool = False   # modelled host state: the host kernel itself uses KL
    kl_feature_name: str = "keylocker"  # CPU feature name a patched libvirt/QEMU knows
    vmm: str = "system"          # system (the distribution's QEMU) | qemu-kl (its TCG executes Key Locker)


@dataclass(frozen=True)
class KlConfig:
    """``guests[].kl`` — the Key Locker a guest's virtual CPU exposes."""

    enabled: bool = False
    aeskle: bool = True
    wide: bool = True
    backup: bool = True
    restrictions: tuple[str, ...] = RESTRICTIONS
    nobackup: bool = False
    random_keysource: bool = False
    leaf19_present_zero: bool = False
    migration_blocker: bool = False  # qemu-kl: a guest that loaded an IWKey refuses migration (the stack refuses)


@dataclass(frozen=True)
class GuestConfig:
    """``guests[]`` — one guest specification of the matrix."""

    name: str
    image: str = "mini"
    vcpus: int = 1
    max_vcpus: int | None = None
    memory_mib: int = 512
    cpu_model: str = "max"
    cpu_features: tuple[tuple[str, str], ...] = ()
    extra_qemu_cpu_args: tuple[str, ...] = ()
    kl: KlConfig = field(default_factory=KlConfig)
    kl_backend: str | None = None     # overrides run.kl_backend
    vmm: str | None = None            # overrides run.vmm
    lifecycle: tuple[str, ...] | None = None  # overrides the top-level list
    host_uses_kl: bool | None = None  # overrides run.host_uses_kl (modelled host state)
    extra_cmdline: str = ""           # appended to the guest kernel command line (e.g. a KL series' knobs)
    helper: bool = False              # build and insmod klhelper in the guest after every boot (lab)
    helper_params: tuple[str, ...] = ()  # insmod parameters (e.g. force=1)
    line: int = 0                     # where it was declared, for messages


LOCAL_PEER = "local-peer"  # a second libvirtd on this host, started by the harness (stands in for a lab host)
# A simulated remote host (scripts/sim-remote-host) started for the run: shares nothing with this machine
# but an SSH port, and is reached exactly as a lab host is (harness.virt.simhost).
SIM_REMOTE = "sim-remote"


@dataclass(frozen=True)
class HostConfig:
    """``hosts[]`` — one libvirt host the matrix may use (a URI, or ``local-peer``)."""

    name: str
    uri: str
    stage_files: bool = False  # upload images and fw_cfg blobs through the host's storage pool


@dataclass(frozen=True)
class Config:
    source: str
    run: RunSettings
    guests: tuple[GuestConfig, ...]
    lifecycle: tuple[str, ...] = ()
    timeouts: Timeouts = field(default_factory=Timeouts)
    cloud_image: str | None = None
    hosts: tuple[HostConfig, ...] = ()  # empty: the single host run.uri
    image_options: dict[str, dict[str, str]] = field(default_factory=dict)  # images.<name>: recipe options

    def all_hosts(self) -> tuple[HostConfig, ...]:
        return self.hosts or (HostConfig("local", self.run.uri),)

    def guest(self, name: str) -> GuestConfig:
        for g in self.guests:
            if g.name == name:
                return g
        raise KeyError(name)

    def lifecycle_for(self, guest: GuestConfig) -> tuple[str, ...]:
        """Lifecycle events that apply to a guest: only KL-enabled guests have handles to keep."""
        events = guest.lifecycle if guest.lifecycle is not None else self.lifecycle
        if not guest.kl.enabled:
            return ()
        top = guest.max_vcpus or guest.vcpus
        return tuple(e for e in events if e != "vcpu-hotplug" or top > guest.vcpus)
