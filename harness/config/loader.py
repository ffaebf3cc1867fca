"""Load a matrix config: declared settings per section, then cross-field checks in one place."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

from harness.config import fields as f
from harness.config.model import (
    KEEP_POLICIES,
    LIFECYCLE_EVENTS,
    LOCAL_PEER,
    RESTRICTIONS,
    SIM_REMOTE,
    Config,
    GuestConfig,
    HostConfig,
    KlConfig,
    RunSettings,
)
from harness.config.yamlpos import Located, PathKey, load_yaml
from harness.ssh_target import unverified_host_keys
from harness.timeouts import Timeouts

KNOWN_IMAGES = ("mini", "debian", "cloud")
_URI_RE = re.compile(r"^([a-z][a-z0-9]*)(\+[a-z0-9]+)?://[^\s]*/[a-z]*(\?\S*)?$")
# libvirt's hypervisor drivers a run can use, and its remote transports (libvirt.org/uri.html).
LIBVIRT_DRIVERS = ("qemu", "test")
LIBVIRT_TRANSPORTS = ("ssh", "libssh", "libssh2", "tcp", "tls", "unix", "ext")
URI_FORMS = "qemu:///system, qemu+ssh://[user@]host/system, qemu+tcp://host/system, test:///default"
_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,30}$")
_FEATURE_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]*$")


def uri(v: Any) -> str:
    m = _URI_RE.match(v) if isinstance(v, str) else None
    if not m:
        raise ValueError(f"{v!r} is not a libvirt URI (accepted forms: {URI_FORMS})")
    if m.group(1) not in LIBVIRT_DRIVERS:
        raise ValueError(f"{v!r}: {m.group(1)!r} is not a libvirt driver klharness can use "
                         f"({', '.join(LIBVIRT_DRIVERS)}; accepted forms: {URI_FORMS})")
    if m.group(2) and m.group(2)[1:] not in LIBVIRT_TRANSPORTS:
        raise ValueError(f"{v!r}: {m.group(2)[1:]!r} is not a libvirt transport ({', '.join(LIBVIRT_TRANSPORTS)})")
    return str(v)


def guest_name(v: Any) -> str:
    if isinstance(v, bool):
        raise ValueError(f"{v!r} is not a guest name (YAML reads on/off/yes/no as booleans: quote the name)")
    if not isinstance(v, str) or not _NAME_RE.match(v):
        raise ValueError(f"{v!r} is not a guest name (lower-case letters, digits and '-', at most 31)")
    return v


RUN_SETTINGS = (
    f.of(RunSettings, "uri", uri, "libvirt URI"),
    f.of(RunSettings, "accel", f.choice("auto", "kvm", "tcg"), "accelerator; auto proves KVM usable first"),
    f.of(RunSettings, "kl_backend", f.choice("auto", "native", "emulated"), "how guests get Key Locker"),
    f.of(RunSettings, "profile", f.string, "expectation profile in configs/profiles/"),
    f.of(RunSettings, "parallel", f.integer(1, 64), "guests booted at once"),
    f.of(RunSettings, "keep", f.choice(*KEEP_POLICIES), "which guests' artifacts to keep"),
    f.of(RunSettings, "results", f.string, "results root directory"),
    f.of(RunSettings, "host_uses_kl", f.boolean, "model a host kernel that itself uses Key Locker"),
    f.of(RunSettings, "kl_feature_name", f.string, "CPU feature name of KL in a patched libvirt/QEMU"),
    f.of(RunSettings, "vmm", f.choice("system", "qemu-kl"),
         "the VMM: system (the distribution's QEMU) or qemu-kl (its TCG executes Key Locker)"),
)

KL_SETTINGS = (
    f.of(KlConfig, "enabled", f.boolean, "expose Key Locker (CPUID.7.0:ECX[23])"),
    f.of(KlConfig, "aeskle", f.boolean, "AESKLE reads 1; false models a guest kernel leaving CR4.KL clear"),
    f.of(KlConfig, "wide", f.boolean, "AES*WIDE*KL (0x19:EBX[2])"),
    f.of(KlConfig, "backup", f.boolean, "IWKey backup MSRs (0x19:EBX[4])"),
    f.of(KlConfig, "restrictions", f.string_list(RESTRICTIONS), "handle restrictions supported"),
    f.of(KlConfig, "nobackup", f.boolean, "advertise LOADIWKEY NoBackup (0x19:ECX[0])"),
    f.of(KlConfig, "random_keysource", f.boolean, "advertise hardware-random KeySource (0x19:ECX[1])"),
    f.of(KlConfig, "leaf19_present_zero", f.boolean, "leaf 0x19 present but all zero, KL absent"),
    f.of(KlConfig, "migration_blocker", f.boolean,
         "qemu-kl: once the guest loads an IWKey, QEMU refuses to migrate it (a stack that refuses)"),
)

# The raw sub-sections (cpu_features, kl, helper) default to empty YAML; their values are built below.
GUEST_SETTINGS = (
    f.Setting("name", guest_name, None, "guest name", required=True),
    f.of(GuestConfig, "image", f.choice(*KNOWN_IMAGES), "guest image"),
    f.of(GuestConfig, "vcpus", f.integer(1, 64), "vCPUs at boot"),
    f.of(GuestConfig, "max_vcpus", f.integer(1, 64), "vCPU ceiling for hotplug"),
    f.of(GuestConfig, "memory", f.size_mib(64, 64 * 1024), "memory, e.g. 512M or 2G", attr="memory_mib"),
    f.of(GuestConfig, "cpu_model", f.string, "QEMU CPU model"),
    f.Setting("cpu_features", lambda v: v, {}, "map of CPU feature -> require|disable"),
    f.of(GuestConfig, "extra_qemu_cpu_args", f.string_list(), "PROP=VALUE CPU properties for a patched QEMU"),
    f.Setting("kl", lambda v: v, {}, "Key Locker exposure"),
    f.of(GuestConfig, "kl_backend", f.choice("auto", "native", "emulated"), "override run.kl_backend"),
    f.of(GuestConfig, "vmm", f.choice("system", "qemu-kl"), "override run.vmm"),
    f.of(GuestConfig, "lifecycle", f.string_list(LIFECYCLE_EVENTS), "override the top-level lifecycle list"),
    f.of(GuestConfig, "host_uses_kl", f.boolean, "override run.host_uses_kl for this guest"),
    f.of(GuestConfig, "extra_cmdline", f.string, "appended to the guest kernel command line"),
    f.Setting("helper", lambda v: v, {}, "klhelper in the guest: {load: true, params: [force=1]} (lab)"),
)

HELPER_SETTINGS = (
    f.of(GuestConfig, "load", f.boolean, "build and insmod klhelper after every boot", attr="helper"),
    f.of(GuestConfig, "params", f.string_list(), "insmod parameters", attr="helper_params"),
)

TOP_SETTINGS = (
    f.Setting("run", lambda v: v, {}, "run settings"),
    f.Setting("guests", lambda v: v, None, "list of guests", required=True),
    f.Setting("lifecycle", f.string_list(LIFECYCLE_EVENTS), (), "lifecycle events for KL guests"),
    f.Setting("timeouts", lambda v: v, {}, "timeout overrides in seconds"),
    f.Setting("images", lambda v: v, {}, "image options (cloud: {path: ...})"),
    f.Setting("hosts", lambda v: v, [], "libvirt hosts to spread the matrix over ({name, uri} each)"),
)


def host_uri(v: Any) -> str:
    if v in (LOCAL_PEER, SIM_REMOTE):
        return str(v)
    checked = uri(v)
    if refused := unverified_host_keys(checked):  # an SSH URI that turns host key checks off
        raise ValueError(refused)
    return checked


HOST_SETTINGS = (
    f.Setting("name", guest_name, None, "host name used in results", required=True),
    f.Setting("uri", host_uri, None, f"libvirt URI (qemu+ssh://root@lab1/system), {LOCAL_PEER} or {SIM_REMOTE}",
              required=True),
    f.of(HostConfig, "stage_files", f.boolean, "upload images and fw_cfg blobs through the host's storage pool"),
)

TIMEOUT_SETTINGS = tuple(f.of(Timeouts, fl.name, f.positive_seconds, f"{fl.name} timeout")
                         for fl in dataclasses.fields(Timeouts))


def load_config(path: Path | str, *, display: str | None = None) -> Config:
    """Load and validate a matrix config; every error names file:line: field and the fix."""
    path = Path(path)
    doc = load_yaml(path, display=display or str(path))
    top = f.parse_section(doc, (), doc.data, TOP_SETTINGS)
    run = RunSettings(**f.parse_section(doc, ("run",), top["run"], RUN_SETTINGS))
    timeouts = Timeouts(**f.parse_section(doc, ("timeouts",), top["timeouts"], TIMEOUT_SETTINGS))
    cloud = _images(doc, top["images"])
    if not isinstance(top["guests"], list) or not top["guests"]:
        raise doc.error(("guests",), "expected a non-empty list of guests")
    guests = tuple(_guest(doc, ("guests", i), raw) for i, raw in enumerate(top["guests"]))
    hosts = _hosts(doc, top["hosts"])
    config = Config(doc.source, run, guests, top["lifecycle"], timeouts, cloud, hosts,
                    _image_options(doc, top["images"]))
    _cross_checks(doc, config)
    return config


def _hosts(doc: Located, raw: Any) -> tuple[HostConfig, ...]:
    if not isinstance(raw, list):
        raise doc.error(("hosts",), "expected a list of {name, uri} (e.g. - {name: lab1, uri: qemu+ssh://lab1/system})")
    hosts: list[HostConfig] = []
    for i, item in enumerate(raw):
        h = f.parse_section(doc, ("hosts", i), item, HOST_SETTINGS)
        for j, prev in enumerate(hosts):
            if prev.name == h["name"] or prev.uri == h["uri"]:
                raise doc.error(("hosts", i), f"same name or URI as hosts[{j}]: each host once")
        hosts.append(HostConfig(h["name"], h["uri"], h["stage_files"]))
    return tuple(hosts)


IMAGE_OPTION_SETTINGS = (
    f.Setting("kernel_package", f.string, None, "Debian kernel package to boot (e.g. a KL-series build)"),
    f.Setting("cmdline", f.string, None, "the image's kernel command line"),
)


def _image_options(doc: Located, raw: Any) -> dict[str, dict[str, str]]:
    out: dict[str, dict[str, str]] = {}
    for name in ("mini", "debian"):
        if isinstance(raw, dict) and name in raw:
            opts = f.parse_section(doc, ("images", name), raw[name], IMAGE_OPTION_SETTINGS)
            out[name] = {k: v for k, v in opts.items() if v is not None}
    return out


def _images(doc: Located, raw: Any) -> str | None:
    section = f.parse_section(doc, ("images",), raw, (f.Setting("cloud", lambda v: v, {}, "cloud image"),
                                                      f.Setting("mini", lambda v: v, {}, "mini recipe options"),
                                                      f.Setting("debian", lambda v: v, {}, "debian recipe options")))
    cloud = f.parse_section(doc, ("images", "cloud"), section["cloud"],
                            (f.Setting("path", f.string, None, "absolute path of a qcow2 cloud image"),))
    path = cloud["path"]
    if path is not None and not Path(path).is_absolute():
        raise doc.error(("images", "cloud", "path"), f"{path!r} must be an absolute path")
    if path is not None and not Path(path).is_file():
        raise doc.error(("images", "cloud", "path"), f"{path}: no such image file (download or build the qcow2 "
                        "first, or fix the path)")
    return path  # type: ignore[no-any-return]


def _guest(doc: Located, path: PathKey, raw: Any) -> GuestConfig:
    g = f.parse_section(doc, path, raw, GUEST_SETTINGS)
    kl = KlConfig(**f.parse_section(doc, (*path, "kl"), g.pop("kl"), KL_SETTINGS))
    helper = f.parse_section(doc, (*path, "helper"), g.pop("helper"), HELPER_SETTINGS)
    g["helper"], g["helper_params"] = helper["load"], helper["params"]
    features = _features(doc, (*path, "cpu_features"), g.pop("cpu_features"))
    memory = g.pop("memory")
    return GuestConfig(kl=kl, cpu_features=features, memory_mib=memory, line=doc.line(path), **g)


def _features(doc: Located, path: PathKey, raw: Any) -> tuple[tuple[str, str], ...]:
    if not isinstance(raw, dict):
        raise doc.error(path, "expected a mapping of feature name -> require|disable (e.g. {aes: disable})")
    out = []
    for name, policy in raw.items():
        if not _FEATURE_RE.match(name):
            raise doc.error((*path, name), f"{name!r} is not a CPU feature name (lower case, e.g. aes)")
        try:
            out.append((name, f.choice("require", "disable", "force", "optional", "forbid")(policy)))
        except ValueError as err:
            raise doc.error((*path, name), str(err)) from None
    return tuple(out)


def _cross_checks(doc: Located, c: Config) -> None:
    """Combinations no single field can reject; all of them live here."""
    seen: dict[str, int] = {}
    for i, g in enumerate(c.guests):
        where: PathKey = ("guests", i)
        if g.name in seen:
            raise doc.error((*where, "name"), f"{g.name!r} is already the name of guests[{seen[g.name]}]")
        seen[g.name] = i
        if g.max_vcpus is not None and g.max_vcpus < g.vcpus:
            raise doc.error((*where, "max_vcpus"), f"{g.max_vcpus} is below vcpus ({g.vcpus}); raise it or drop it")
        kl = g.kl
        if not kl.enabled:
            for sub in ("nobackup", "random_keysource"):
                if getattr(kl, sub):
                    raise doc.error((*where, "kl", sub), f"{sub} without KL: set kl.enabled: true or drop {sub}")
        if kl.enabled and kl.leaf19_present_zero:
            raise doc.error((*where, "kl", "leaf19_present_zero"),
                            "a 'leaf 0x19 present but zero' guest has no KL: drop kl.enabled or this setting")
        key = _explicit(doc, (*where, "kl"), ("wide", "backup", "restrictions", "aeskle"))
        if not kl.enabled and key is not None:
            raise doc.error((*where, "kl", key), f"{key} without KL: set kl.enabled: true or drop {key}")
        vmm = g.vmm or c.run.vmm
        backend = g.kl_backend or c.run.kl_backend
        if vmm == "qemu-kl" and backend == "emulated":
            field = "kl_backend" if g.kl_backend else None
            raise doc.error((*where, field) if field else ("run", "kl_backend"),
                            "vmm qemu-kl executes Key Locker itself: its guests run the native backend (set "
                            "kl_backend: native or auto, or vmm: system for the in-guest emulator)")
        if kl.migration_blocker and vmm != "qemu-kl":
            raise doc.error((*where, "kl", "migration_blocker"),
                            "migration_blocker is a qemu-kl CPU property: set vmm: qemu-kl or drop it")
        if g.image == "cloud" and c.cloud_image is None:
            raise doc.error((*where, "image"), "image 'cloud' needs images.cloud.path (a qcow2 you bring)")
        if g.lifecycle and "vcpu-hotplug" in g.lifecycle and (g.max_vcpus or g.vcpus) <= g.vcpus:
            raise doc.error((*where, "lifecycle"), "vcpu-hotplug needs max_vcpus above vcpus")
    _check_profile_name(doc, c.run.profile)
    if "vcpu-hotplug" in c.lifecycle and not any((g.max_vcpus or g.vcpus) > g.vcpus for g in c.guests
                                                 if g.kl.enabled):
        raise doc.error(("lifecycle",), "vcpu-hotplug needs a KL guest with max_vcpus above vcpus")


def _check_profile_name(doc: Located, name: str) -> None:
    """run.profile must name a profile that exists (a path to a .yaml file is taken as given)."""
    from harness.paths import available_profiles, profile_path

    if name.endswith(".yaml") or profile_path(name).exists():
        return
    line_path: PathKey = ("run", "profile") if ("run", "profile") in doc.lines else ("run",)
    raise doc.error(line_path, f"{name!r} is not an expectation profile (available: "
                    f"{', '.join(available_profiles())}; or a path to a profile .yaml)")


def _explicit(doc: Located, path: PathKey, keys: tuple[str, ...]) -> str | None:
    """The first of ``keys`` written explicitly under ``path`` (defaults don't count)."""
    for key in keys:
        if (*path, key) in doc.lines:
            return key
    return None
