"""Host facts as text turns them into facts: the parsers both host readers share.

Why a module: :mod:`harness.host.check` reads this machine's files, :mod:`harness.host.remote_facts` reads a
remote host's over SSH; both hand the same kinds of text (``/proc/cpuinfo``, a kernel config, ``/proc/crypto``,
``qemu -cpu help``, the probe's ``cpuid`` output) to these functions, so a fact means the same whichever host it
came from.
"""

from __future__ import annotations

import contextlib
import re
from typing import Any

from harness.kl.cpuid import Regs
from harness.kl.observations import parse_probe_output
from harness.virt.accel import HARDWARE_KVM_MODULES, SOFTWARE_KVM_MODULES, kvm_usability_of

KCONFIG_OPTIONS = ("CONFIG_X86_KEYLOCKER", "CONFIG_X86_KL", "CONFIG_CRYPTO_AES_KL")
KLOG_PATTERN = re.compile(r"key ?locker|aes-?kl|iwkey|loadiwkey|x86/kl\b|klhelper", re.IGNORECASE)
KLOG_KEEP = 40  # the last Key Locker lines of the kernel log a report keeps
MITIGATION_FILES = {"gds": "gather_data_sampling", "rfds": "reg_file_data_sampling"}
VULN_DIR = "/sys/devices/system/cpu/vulnerabilities"

def regs_dict(r: Regs) -> dict[str, int]:
    return {"eax": r.eax, "ebx": r.ebx, "ecx": r.ecx, "edx": r.edx}


def cpu_summary(cpu: dict[str, str]) -> dict[str, Any]:
    """The report's ``cpu`` fact from :func:`harness.host.facts.cpu_model`'s fields."""
    return {"vendor": cpu.get("vendor_id"), "model": cpu.get("model name"), "microcode": cpu.get("microcode"),
            "flags_cpuid_fault": cpu.get("cpuid_fault") == "yes" if "cpuid_fault" in cpu else None}


def cpuid_from_probe(out: str | bytes, source: str) -> dict[str, Any]:
    """The ``cpuid`` fact from ``klprobe cpuid --backend native`` output; ProbeOutputError when it is not one."""
    doc = parse_probe_output(out, source)
    cpu = doc.hardware_cpu
    kl = cpu.kl
    return {
        "ok": True, "vendor": cpu.vendor, "hypervisor": cpu.hypervisor, "max_leaf": cpu.max_leaf,
        "aesni": cpu.aesni, "leaf7_ecx": cpu.leaf7.ecx,
        "leaf19": None if cpu.leaf19 is None else regs_dict(cpu.leaf19),
        "kl": kl.kl, "leaf19_present": kl.leaf19_present, "aeskle": kl.aeskle, "wide": kl.wide,
        "backup": kl.backup, "restrictions": sorted(kl.restrictions), "nobackup": kl.nobackup,
        "random_keysource": kl.random_keysource, "reserved_bits_set": kl.reserved_bits_set, "usable": kl.usable,
        "probe_backend": doc.backend, "probe_reason": doc.backend_reason,
    }


def kconfig_value(text: str, option: str) -> str:
    if m := re.search(rf"^{option}=(\S+)$", text, re.MULTILINE):
        return m.group(1)
    if re.search(rf"^# {option} is not set$", text, re.MULTILINE):
        return "n"
    return "absent"


def kernel_config_from(text: str, source: str) -> dict[str, Any]:
    """The ``kernel.config`` fact from a kernel config's text (read from ``source``)."""
    return {"source": source, "options": {o: kconfig_value(text, o) for o in KCONFIG_OPTIONS}, "reason": None}


def kernel_config_missing(tried: list[str]) -> dict[str, Any]:
    return {"source": None, "options": {o: "unknown" for o in KCONFIG_OPTIONS},
            "reason": f"no kernel config found (tried {', '.join(tried)}; /proc/config.gz needs "
                      "CONFIG_IKCONFIG_PROC)"}


def module_support_from(*, proc_modules: bool, disabled_file: bool, disabled_text: str | None, build: str,
                        headers: bool) -> dict[str, Any]:
    """The ``kernel.modules`` fact: can an out-of-tree module (klhelper) be built and loaded on this kernel?

    ``proc_modules``/``disabled_file``: /proc/modules and /proc/sys/kernel/modules_disabled exist;
    ``headers``: ``build``/Makefile exists.
    """
    disabled = None
    if disabled_text is not None:
        with contextlib.suppress(ValueError):
            disabled = int(disabled_text.strip()) != 0
    return {"supported": proc_modules or disabled_file, "disabled": disabled,
            "headers": build if headers else None, "headers_path": build}


def kernel_log_from(returncode: int, stdout: str, stderr: str) -> dict[str, Any]:
    """The ``kernel_log`` fact from how ``dmesg`` ended; ``dmesg`` can be restricted (kernel.dmesg_restrict)."""
    if returncode != 0:
        why = (stderr.strip().splitlines() or ["no output"])[-1]
        return {"readable": False, "lines": [],
                "reason": f"dmesg exited {returncode}: {why} (kernel.dmesg_restrict=1? run as root)"}
    lines = [ln.strip() for ln in stdout.splitlines() if KLOG_PATTERN.search(ln)]
    return {"readable": True, "reason": None, "lines": lines[-KLOG_KEEP:]}


def crypto_facts_from(text: str) -> dict[str, Any]:
    """The ``crypto`` fact: algorithms whose name, driver or module says AES-KL (the KL series registers
    ``xts-aes-aeskl``), from /proc/crypto's text."""
    found = []
    for block in text.split("\n\n"):
        fields = {k.strip(): v.strip() for k, _, v in (ln.partition(":") for ln in block.splitlines())}
        if any("aeskl" in fields.get(k, "") for k in ("name", "driver", "module")):
            found.append(fields.get("driver") or fields.get("name", "?"))
    return {"readable": True, "reason": None, "drivers": sorted(set(found))}


def kvm_facts_from(modules: set[str], dev_kvm: str, present: bool,
                   supported_cpuid: dict[str, Any] | None) -> dict[str, Any]:
    """The ``kvm`` fact from the loaded modules, whether ``dev_kvm`` exists, and what
    ``KVM_GET_SUPPORTED_CPUID`` answered (None: not asked because /dev/kvm does not exist)."""
    usable, why = kvm_usability_of(modules, dev_kvm=dev_kvm, present=present)
    backed = [m for m in (*HARDWARE_KVM_MODULES, *SOFTWARE_KVM_MODULES) if m in modules]
    facts: dict[str, Any] = {"dev_kvm": present, "modules": backed, "usable": usable, "reason": why}
    facts["supported_cpuid"] = supported_cpuid if facts["dev_kvm"] and supported_cpuid is not None else \
        {"ok": False, "error": f"{dev_kvm} does not exist"}
    return facts


def parse_cpu_flags(help_text: str) -> set[str]:
    """The words after ``Recognized CPUID flags:`` in ``qemu-system-x86_64 -cpu help``."""
    _, found, tail = help_text.partition("Recognized CPUID flags:")
    return set(tail.split()) if found else set()


def qemu_facts_from(binary: str, version_out: str, help_out: str, names: tuple[str, ...]) -> dict[str, Any]:
    """The ``qemu`` fact from ``BINARY --version`` and ``BINARY -cpu help``; IndexError when --version said nothing."""
    version = version_out.splitlines()[0].strip().removeprefix("QEMU emulator version ")
    flags = parse_cpu_flags(help_out)
    return {"ok": True, "binary": binary, "version": version, "cpu_flags": len(flags),
            "kl_names": sorted(n for n in names if n in flags), "looked_for": list(names)}
