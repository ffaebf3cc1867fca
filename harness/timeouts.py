"""Every timeout klharness uses, named and documented in one place.

Why: a harness that waits forever is worse than one that fails; a harness
whose limits are scattered cannot be tuned for a slow lab host.  Override
any of them per run with ``KLHARNESS_TIMEOUT_<NAME>=seconds`` (e.g.
``KLHARNESS_TIMEOUT_BOOT=300``) or from the config's ``timeouts:`` section.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass

from harness.errors import ConfigError


@dataclass(frozen=True)
class Timeouts:
    boot: float = 120.0            # domain started -> SSH greeting (TCG boots take ~5-15 s)
    ssh_greeting: float = 10.0     # one TCP connect + read of the "SSH-" banner
    ssh_banner: float = 15.0       # paramiko's banner/kex phase
    ssh_auth: float = 15.0         # public key authentication
    exec: float = 60.0             # a guest command with no specific limit
    probe: float = 600.0           # the full probe run in a guest (TCG is slow)
    upload: float = 60.0           # copying the probe into a guest
    libvirt_connect: float = 60.0  # opening a libvirt connection (first one probes QEMU: ~8 s)
    libvirt_call: float = 30.0     # any other single libvirt call (lookups, XML dumps)
    create: float = 60.0           # createXML / define+create (~0.5 s measured)
    shutdown: float = 30.0         # ACPI shutdown before falling back to destroy (~1.7 s measured)
    destroy: float = 30.0          # ~1.5-2 s measured
    save: float = 120.0            # ~1.3-2 s for 512 MiB measured
    restore: float = 120.0         # ~0.3-0.8 s measured
    wakeup: float = 30.0           # S3/freeze wake (~0.7 s measured)
    hotplug: float = 30.0          # vCPU add (~0.03 s measured)
    qemu_img: float = 60.0         # creating an overlay
    reboot: float = 180.0          # reboot -> SSH back
    migrate: float = 300.0
    image_build: float = 1800.0    # building a guest image from packages


DEFAULT_TIMEOUTS = Timeouts()


def from_environment(base: Timeouts | None = None) -> Timeouts:
    """Apply ``KLHARNESS_TIMEOUT_*`` overrides; a bad value is a ConfigError naming the variable."""
    base = base or Timeouts()
    changes: dict[str, float] = {}
    for f in dataclasses.fields(Timeouts):
        var = f"KLHARNESS_TIMEOUT_{f.name.upper()}"
        raw = os.environ.get(var)
        if raw is None:
            continue
        try:
            value = float(raw)
        except ValueError:
            raise ConfigError(f"${var}: {raw!r} is not a number of seconds (e.g. {var}=300)") from None
        if value <= 0:
            raise ConfigError(f"${var}: {raw!r} must be positive")
        changes[f.name] = value
    return dataclasses.replace(base, **changes)
