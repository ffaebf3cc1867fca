"""Every time limit harness.virt applies, named and documented in one place.

Why: a libvirt call or a guest can hang forever; each wait needs a bound
that a slow lab host can raise per run without touching code.  Defaults are
sized for TCG on a 2-core machine (HOST_NOTES.md timings x ~5).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class VirtTimeouts:
    """Seconds allowed for each virtualization step."""

    connect: float = 60.0  # first connection on a fresh host takes ~8 s while libvirt probes QEMU
    create: float = 60.0  # createXML/define+create (~0.5 s measured)
    boot: float = 120.0  # console marker after start (~6-13 s measured under TCG)
    shutdown: float = 30.0  # ACPI power-off before falling back to destroy
    destroy: float = 30.0  # ~1.5-2 s measured
    save: float = 120.0  # ~2 s for 512 MiB measured
    restore: float = 120.0  # ~0.5-0.8 s measured
    wakeup: float = 30.0  # S3/freeze wake (~0.7 s measured)
    hotplug: float = 30.0  # vCPU add (~0.1 s measured)
    libvirt_call: float = 30.0  # any other single libvirt call (lookups, XML dumps)
    qemu_img: float = 60.0  # creating an overlay


DEFAULT_TIMEOUTS = VirtTimeouts()
