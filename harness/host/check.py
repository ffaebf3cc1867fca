"""``klharness host-check``: can this host run native Key Locker cells, and if not, why not?

Why one command: on a lab host nothing may be assumed (KEYLOCKER.md §6) —
firmware can keep KL off, a stock kernel never sets CR4.KL, the KL kernel
series refuses without locked GDS/RFDS mitigations, mainline KVM hides KL,
stock QEMU and libvirt have no name for it.  Each of those is read here, from
the layer that decides it, and :mod:`harness.host.verdict` turns the facts into
one verdict per backend with every reason.

Everything is read, never changed (the CPUID-faulting probe asks to keep
CPUID *enabled*, which cannot change anything), and every probe is bounded.
The result is one JSON-able dict (schema ``klharness.hostcheck``) so the run
record can embed it; :func:`render_text` is the human form.

Remote libvirt URIs: libvirt itself reports versions, domain capabilities and
which CPU feature names its cpu_map knows.  The host's own CPUID, kernel, KVM
and QEMU facts are read on that host over its SSH link when there is one
(:mod:`harness.host.remote_facts`: ``qemu+ssh://`` and ``qemu+libssh://``
URIs); without one (``qemu+tls://``) the report says to run ``klharness
host-check`` on the lab host itself.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import gzip
import json
import os
import platform
import shutil
import struct
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from harness import cbuild, proc
from harness.errors import KlharnessError
from harness.host import factparse
from harness.host import facts as hostfacts
from harness.host.factparse import KCONFIG_OPTIONS as KCONFIG_OPTIONS
from harness.host.factparse import KLOG_PATTERN as KLOG_PATTERN
from harness.host.factparse import MITIGATION_FILES as MITIGATION_FILES
from harness.host.factparse import parse_cpu_flags as parse_cpu_flags
from harness.host.remote_facts import read_remote_host
from harness.kl.cpuid import CPUID7_ECX_KL, Regs
from harness.redact import redact_uri
from harness.timeouts import active as active_timeouts
from harness.virt import capcache
from harness.virt.accel import loaded_modules
from harness.virt.spec import DEFAULT_KL_FEATURE_NAME

if TYPE_CHECKING:
    from harness.host.link import HostLink

SCHEMA = "klharness.hostcheck"
SCHEMA_VERSION = 1

# Names a patched QEMU/libvirt might give CPUID.(7,0):ECX[23]; the configured name is added.
KL_FEATURE_NAMES = ("keylocker", "kl", "aes-kl", "aeskl", "key-locker", "aeskle", "widekl")
VULN_DIR = Path("/sys/devices/system/cpu/vulnerabilities")

# <linux/kvm.h>: KVM_GET_SUPPORTED_CPUID = _IOWR(KVMIO, 0x05, struct kvm_cpuid2); entries are 40 bytes.
KVM_GET_API_VERSION = 0xAE00
KVM_GET_SUPPORTED_CPUID = 0xC008AE05
KVM_CPUID_ENTRY = struct.Struct("<7I12x")  # function, index, flags, eax, ebx, ecx, edx, padding[3]
KVM_MAX_ENTRIES = 512

# <asm/prctl.h> and the x86-64 syscall number of arch_prctl.
SYS_ARCH_PRCTL = 158
ARCH_SET_CPUID = 0x1012


# -- CPU -------------------------------------------------------------------------------------------------

def cpuid_facts(klprobe: Callable[[], Path] = lambda: cbuild.build("klprobe")) -> dict[str, Any]:
    """Host CPUID leaf 7 and 0x19, read by ``klprobe cpuid --backend native`` and decoded by name."""
    try:
        out = proc.run([klprobe(), "cpuid", "--backend", "native"], timeout=active_timeouts().tool).stdout
        return factparse.cpuid_from_probe(out, "klprobe cpuid")
    except KlharnessError as err:
        return {"ok": False, "error": str(err)}


# -- kernel ------------------------------------------------------------------------------------------------

def kernel_config(release: str | None = None, *, boot: Path = Path("/boot"),
                  proc_config: Path = Path("/proc/config.gz")) -> dict[str, Any]:
    """KL options of the running kernel's config: ``y``/``m``, ``n`` (is not set) or ``absent``
    (the option does not exist in this kernel: a kernel without the KL series)."""
    release = release or platform.release()
    tried = []
    for path in (boot / f"config-{release}", proc_config):
        tried.append(str(path))
        try:
            raw = path.read_bytes()
            text = (gzip.decompress(raw) if path.suffix == ".gz" else raw).decode(errors="replace")
        except (OSError, EOFError, gzip.BadGzipFile):
            continue
        return factparse.kernel_config_from(text, str(path))
    return factparse.kernel_config_missing(tried)


def module_support(release: str | None = None, *, proc_dir: Path = Path("/proc"),
                   lib_modules: Path = Path("/lib/modules")) -> dict[str, Any]:
    """Can an out-of-tree module (klhelper) be built and loaded on this kernel?"""
    release = release or platform.release()
    disabled_file = proc_dir / "sys" / "kernel" / "modules_disabled"
    disabled_text = None
    with contextlib.suppress(OSError):
        disabled_text = disabled_file.read_text()
    build = lib_modules / release / "build"
    return factparse.module_support_from(proc_modules=(proc_dir / "modules").exists(),
                                         disabled_file=disabled_file.exists(), disabled_text=disabled_text,
                                         build=str(build), headers=(build / "Makefile").exists())


def kernel_log(run: Callable[[list[str]], proc.CommandResult] | None = None) -> dict[str, Any]:
    """Key Locker lines of the kernel log; ``dmesg`` can be restricted (kernel.dmesg_restrict)."""
    if run is None:
        if shutil.which("dmesg") is None:
            return {"readable": False, "reason": "dmesg is not installed (package util-linux)", "lines": []}
        run = lambda argv: proc.run(argv, timeout=active_timeouts().tool, check=False)  # noqa: E731
    try:
        res = run(["dmesg"])
    except (KlharnessError, OSError) as err:
        return {"readable": False, "reason": f"dmesg did not run: {err}", "lines": []}
    return factparse.kernel_log_from(res.returncode, res.stdout, res.stderr)


def crypto_kl_drivers(proc_crypto: Path = Path("/proc/crypto")) -> dict[str, Any]:
    """Crypto algorithms whose name, driver or module says AES-KL (the KL series registers ``xts-aes-aeskl``)."""
    try:
        text = proc_crypto.read_text()
    except OSError as err:
        return {"readable": False, "reason": f"{proc_crypto}: {err.strerror}", "drivers": []}
    return factparse.crypto_facts_from(text)


def mitigations(vuln_dir: Path = VULN_DIR) -> dict[str, str | None]:
    """GDS and RFDS state as the kernel reports it (None: this kernel has no such file)."""
    out: dict[str, str | None] = {}
    for key, name in MITIGATION_FILES.items():
        try:
            out[key] = (vuln_dir / name).read_text().strip()
        except OSError:
            out[key] = None
    return out


# -- KVM ---------------------------------------------------------------------------------------------------

def kvm_supported_cpuid(dev_kvm: Path = Path("/dev/kvm")) -> dict[str, Any]:
    """What KVM can give guests: leaf 7 ECX[23] and leaf 0x19 from ``KVM_GET_SUPPORTED_CPUID``."""
    try:
        fd = os.open(dev_kvm, os.O_RDWR | os.O_CLOEXEC)
    except OSError as err:
        return {"ok": False, "error": f"cannot open {dev_kvm}: {err.strerror}"}
    try:
        api = fcntl.ioctl(fd, KVM_GET_API_VERSION)
        buf = bytearray(struct.pack("<II", KVM_MAX_ENTRIES, 0) + bytes(KVM_CPUID_ENTRY.size * KVM_MAX_ENTRIES))
        fcntl.ioctl(fd, KVM_GET_SUPPORTED_CPUID, buf, True)
    except OSError as err:
        return {"ok": False, "error": f"KVM_GET_SUPPORTED_CPUID on {dev_kvm} failed: {err.strerror}"}
    finally:
        os.close(fd)
    entries = parse_kvm_cpuid(bytes(buf))
    leaf7 = entries.get((7, 0))
    leaf19 = entries.get((0x19, 0))
    return {"ok": True, "api_version": api, "entries": len(entries),
            "leaf7_ecx": leaf7.ecx if leaf7 else None,
            "kl": bool(leaf7 and leaf7.ecx & CPUID7_ECX_KL),
            "leaf19": None if leaf19 is None else factparse.regs_dict(leaf19)}


def parse_kvm_cpuid(buf: bytes) -> dict[tuple[int, int], Regs]:
    """``struct kvm_cpuid2`` → {(function, index): registers}."""
    nent = struct.unpack_from("<I", buf)[0]
    out = {}
    for i in range(nent):
        fn, idx, _flags, a, b, c, d = KVM_CPUID_ENTRY.unpack_from(buf, 8 + i * KVM_CPUID_ENTRY.size)
        out[(fn, idx)] = Regs(a, b, c, d)
    return out


def kvm_facts(modules: set[str] | None = None, dev_kvm: Path = Path("/dev/kvm")) -> dict[str, Any]:
    mods = loaded_modules() if modules is None else modules
    present = dev_kvm.exists()
    return factparse.kvm_facts_from(mods, str(dev_kvm), present, kvm_supported_cpuid(dev_kvm) if present else None)


# -- QEMU and libvirt ----------------------------------------------------------------------------------------

def qemu_facts(binary: str | None, names: tuple[str, ...]) -> dict[str, Any]:
    """QEMU's version and CPUID flag names (``-cpu help``), and which Key Locker names it knows."""
    binary = binary or shutil.which("qemu-system-x86_64")
    if binary is None:
        return {"ok": False, "error": "qemu-system-x86_64 not found (install qemu-system-x86)"}
    try:
        version = proc.run([binary, "--version"], timeout=active_timeouts().tool).stdout
        cpu_help = proc.run([binary, "-cpu", "help"], timeout=active_timeouts().tool).stdout
        return factparse.qemu_facts_from(binary, version, cpu_help, names)
    except (KlharnessError, IndexError) as err:
        return {"ok": False, "binary": binary, "error": f"{binary} did not answer: {err}"}


def vmm_facts() -> dict[str, Any]:
    """qemu-kl, the Key Locker VMM: built and verified for the current patch series, and its KL names."""
    from harness.vmm import qemu_kl

    try:
        build = qemu_kl.installed()
    except KlharnessError as err:
        return {"built": False, "reason": str(err)}
    try:
        flags = parse_cpu_flags(proc.run([build.binary, "-cpu", "help"], timeout=active_timeouts().tool).stdout)
    except KlharnessError as err:
        return {"built": True, **build.to_dict(), "kl_names": [], "reason": f"{build.binary} did not answer: {err}"}
    return {"built": True, **build.to_dict(), "kl_names": sorted(n for n in flags if n.startswith("keylocker"))}


def libvirt_host_facts(conn: Any, names: tuple[str, ...], *, timeout: float | None = None) -> dict[str, Any]:
    """Versions, domain types, host-model CPU and the cpu_map's Key Locker names, as libvirt reports them."""
    timeout = timeout or active_timeouts().domcapabilities
    import libvirt

    from harness.virt.bounded import bounded

    facts: dict[str, Any] = {"ok": True, **hostfacts.libvirt_facts(conn), "domain_types": {}}
    for virttype in ("kvm", "qemu"):
        try:
            xml = bounded(partial(conn.getDomainCapabilities, None, "x86_64", None, virttype, 0),
                          timeout=timeout, what=f"domain capabilities ({virttype})")
        except (libvirt.libvirtError, KlharnessError) as err:
            msg = err.get_error_message() if isinstance(err, libvirt.libvirtError) else str(err)
            facts["domain_types"][virttype] = {"offered": False, "reason": msg}
            continue
        facts["domain_types"][virttype] = {"offered": True, **parse_domcaps(xml, names)}
    vt = "kvm" if facts["domain_types"].get("kvm", {}).get("offered") else "qemu"
    facts["caps_cache"] = caps_cache_facts(conn, timeout=timeout)
    known, unknown = [], {}
    for name in names:
        cpu = f"<cpu mode='custom' match='exact'><model>qemu64</model><feature policy='require' name='{name}'/></cpu>"
        try:
            bounded(partial(conn.compareHypervisorCPU, None, "x86_64", None, vt, cpu, 0),
                    timeout=timeout, what=f"compareHypervisorCPU({name})")
            known.append(name)
        except libvirt.libvirtError as err:
            unknown[name] = err.get_error_message()
        except KlharnessError as err:
            unknown[name] = str(err)
    facts["cpu_map"] = {"virttype": vt, "kl_names": known, "looked_for": list(names),
                        "how": "compareHypervisorCPU with <feature policy='require' name=NAME/>: "
                               "'Unknown CPU feature' means the cpu_map has no such name",
                        "errors": {k: v for k, v in unknown.items() if "Unknown CPU feature" not in v}}
    return facts


def caps_cache_facts(conn: Any, *, timeout: float) -> dict[str, Any]:
    """Whether libvirt keeps its QEMU capabilities cached, or re-probes QEMU on every call (and why)."""
    import libvirt

    from harness.virt.bounded import bounded
    from harness.virt.connection import is_local

    uri = ""
    with contextlib.suppress(Exception):
        uri = conn.getURI()
    call = capcache.domcaps_call(conn)
    try:
        check = capcache.measure(lambda: bounded(call, timeout=timeout, what="domain capabilities"),
                                 local=is_local(uri))
    except (libvirt.libvirtError, KlharnessError) as err:
        msg = err.get_error_message() if isinstance(err, libvirt.libvirtError) else str(err)
        return {"stable": None, "durations": [], "causes": [], "summary": f"not measured: {msg}"}
    return check.to_dict()


def parse_domcaps(xml: str, names: tuple[str, ...]) -> dict[str, Any]:
    root = ET.fromstring(xml)  # noqa: S314 - XML from the libvirt daemon
    host_model = root.find("cpu/mode[@name='host-model']")
    feats = [] if host_model is None else [f.get("name", "") for f in host_model.findall("feature")]
    maximum = root.find("cpu/mode[@name='maximum']")
    passthrough = root.find("cpu/mode[@name='host-passthrough']")
    return {"emulator": root.findtext("path"),
            "host_model": None if host_model is None else host_model.findtext("model"),
            "host_model_kl": sorted(n for n in feats if n in names),
            "maximum": maximum is not None and maximum.get("supported") == "yes",
            "host_passthrough": passthrough is not None and passthrough.get("supported") == "yes"}


# -- CPUID faulting ----------------------------------------------------------------------------------------------

def cpuid_faulting(cpuinfo_flag: bool | None) -> dict[str, Any]:
    """Whether the kernel offers CPUID faulting (``arch_prctl(ARCH_SET_CPUID)``).

    The probe asks to keep CPUID *enabled* (argument 1): the kernel answers
    ENODEV without CPUID-fault support and 0 with it, and nothing changes
    either way, so it runs in this process.
    """
    facts: dict[str, Any] = {"cpuinfo_flag": cpuinfo_flag}
    if platform.machine() != "x86_64" or platform.system() != "Linux":
        facts.update(supported=None, how=f"not an x86-64 Linux host ({platform.system()} {platform.machine()})")
        return facts
    libc = ctypes.CDLL(None, use_errno=True)
    rc = libc.syscall(SYS_ARCH_PRCTL, ARCH_SET_CPUID, 1)
    err = ctypes.get_errno() if rc != 0 else 0
    facts["supported"] = rc == 0
    facts["how"] = (f"arch_prctl(ARCH_SET_CPUID, 1) -> {'0' if rc == 0 else errno.errorcode.get(err, str(err))}")
    return facts


# -- the whole check ---------------------------------------------------------------------------------------------

def feature_names(configured: str | None) -> tuple[str, ...]:
    names = list(KL_FEATURE_NAMES)
    if configured and configured not in names:
        names.insert(0, configured)
    return tuple(names)


def local_facts(names: tuple[str, ...], *, qemu_binary: str | None = None) -> dict[str, Any]:
    """Every fact read on this machine itself (no libvirt)."""
    facts: dict[str, Any] = {
        "cpu": factparse.cpu_summary(hostfacts.cpu_model()),
        "cpuid": cpuid_facts(),
        "kernel": {"release": platform.release(), "config": kernel_config(), "modules": module_support()},
        "kernel_log": kernel_log(),
        "crypto": crypto_kl_drivers(),
        "klhelper_loaded": Path("/sys/module/klhelper").exists(),
        "mitigations": mitigations(),
        "kvm": kvm_facts(),
        "qemu": qemu_facts(qemu_binary, names),
        "vmm": {"qemu-kl": vmm_facts()},
    }
    facts["cpuid_faulting"] = cpuid_faulting(facts["cpu"]["flags_cpuid_fault"])
    return facts


def host_check(conn: Any | None = None, *, uri: str | None = None,
               feature_name: str | None = DEFAULT_KL_FEATURE_NAME, local: bool | None = None,
               libvirt_error: str | None = None, link: HostLink | None = None) -> dict[str, Any]:
    """The host check as one JSON-able dict (facts + verdicts); for the CLI and the run record.

    ``conn`` is an open libvirt connection, or None: then ``libvirt_error``
    says why there is none (a failed connect), else libvirt is "not checked".
    ``local`` defaults to "the URI names this host" (True without a URI).
    ``link`` is the SSH link to a remote host: its own facts are read there
    (without one only what libvirt reports is known of a remote host).
    """
    from harness.host.verdict import verdicts
    from harness.virt.connection import is_local

    if conn is not None and uri is None:
        with contextlib.suppress(Exception):
            uri = conn.getURI()
    if local is None:
        local = uri is None or is_local(uri)
    names = feature_names(feature_name)
    report: dict[str, Any] = {"schema": SCHEMA, "schema_version": SCHEMA_VERSION, "checked_at": time.time(),
                              "scope": "local" if local else "remote", "uri": redact_uri(uri) if uri else uri,
                              "feature_name": feature_name,
                              "hostname": platform.node()}
    if conn is not None:
        report["libvirt"] = libvirt_host_facts(conn, names)
    else:
        report["libvirt"] = {"ok": False, "error": libvirt_error or "libvirt not checked (no connection)"}
    emulator = None
    for dt in report["libvirt"].get("domain_types", {}).values():
        emulator = emulator or dt.get("emulator")
    if local:
        report.update(local_facts(names, qemu_binary=emulator))
        report["verdicts"] = verdicts(report)
        return report
    report["hostname"] = report["libvirt"].get("hostname") or urlsplit(uri or "").hostname
    if link is not None:
        remote = read_remote_host(link, names, qemu_binary=emulator)
        report.update(remote.facts)
        report["hostname"] = remote.hostname or report["hostname"]
        report["facts_from"] = {"via": "ssh", "where": remote.where}
        report["remote_note"] = (f"the host's CPUID, kernel, KVM and QEMU facts were read over SSH from "
                                 f"{remote.where}; KVM_GET_SUPPORTED_CPUID (an ioctl on /dev/kvm) cannot be read "
                                 "that way")
    else:
        report["remote_note"] = (f"remote URI {uri}: only libvirt-visible facts were read; for the host's CPUID, "
                                 "kernel, KVM and QEMU facts run `klharness host-check --json` on the lab host "
                                 "itself and send that file along")
    report["verdicts"] = verdicts(report)
    return report


def run_facts(conn: Any | None, link: HostLink | None = None) -> dict[str, Any]:
    """What a run records about a host: the facts of :mod:`harness.host.facts` and the host check (or why
    it could not be made: a run goes on without it).  ``link``: the SSH link to a remote host, whose own
    facts are then read there."""
    facts = hostfacts.collect(conn)
    try:
        facts["host_check"] = report = host_check(conn, link=link)
    except KlharnessError as err:
        facts["host_check"] = {"error": str(err)}
        return facts
    if report.get("facts_from", {}).get("via") == "ssh":  # the host's kernel and CPU, not this machine's
        facts["harness_machine"] = {"kernel": facts.pop("kernel"), "cpu": facts.pop("cpu")}
        cpu = report.get("cpu", {})
        facts["kernel"] = report.get("kernel", {}).get("release")
        facts["cpu"] = {"vendor_id": cpu.get("vendor"), "model name": cpu.get("model"),
                        "microcode": cpu.get("microcode")}
    return facts


def to_json(report: dict[str, Any]) -> str:
    return json.dumps(report, indent=2, sort_keys=False) + "\n"
