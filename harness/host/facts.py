"""Facts about the host a run used, for the run record and reports.

Why: a result without its environment cannot be compared with last night's
or with another lab's.  Everything here is read, never changed, and every
probe of the host is bounded.
"""

from __future__ import annotations

import contextlib
import platform
from pathlib import Path
from typing import Any

from harness.redact import redact_uri


def cpu_model(cpuinfo: Path = Path("/proc/cpuinfo")) -> dict[str, str]:
    """This machine's CPU from ``cpuinfo`` ({} when it cannot be read)."""
    try:
        return cpu_model_of(cpuinfo.read_text())
    except OSError:
        return {}


def cpu_model_of(cpuinfo: str) -> dict[str, str]:
    """Vendor, model, microcode and the flags klharness cares about, from ``/proc/cpuinfo``'s text (here or
    read on a remote host)."""
    facts: dict[str, str] = {}
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key in ("model name", "microcode", "vendor_id") and key not in facts:
            facts[key] = value.strip()
        if key == "flags" and "flags" not in facts:
            flags = set(value.split())
            facts["cpuid_fault"] = "yes" if "cpuid_fault" in flags else "no"
            facts["aes"] = "yes" if "aes" in flags else "no"
    return facts


def libvirt_facts(conn: Any) -> dict[str, Any]:
    """Versions as the (possibly remote) daemon reports them."""
    facts: dict[str, Any] = {}
    with contextlib.suppress(Exception):
        facts["uri"] = redact_uri(conn.getURI())
        facts["hostname"] = conn.getHostname()
        facts["libvirt"] = _version(conn.getLibVersion())
        facts["hypervisor"] = conn.getType()
        facts["qemu"] = _version(conn.getVersion())
    return facts


def _version(n: int) -> str:
    return f"{n // 1000000}.{n // 1000 % 1000}.{n % 1000}"


def collect(conn: Any | None = None) -> dict[str, Any]:
    """This machine's kernel, CPU and Python, and the daemon's versions; the run record adds the host
    check to these (:func:`harness.host.check.run_facts`)."""
    facts: dict[str, Any] = {
        "kernel": platform.release(),
        "machine": platform.machine(),
        "python": platform.python_version(),
        "cpu": cpu_model(),
    }
    if conn is not None:
        facts["libvirt"] = libvirt_facts(conn)
    return facts
