"""Every timeout klharness uses, named and documented in one place (docs/timeouts.md).

Why: a harness that waits forever is worse than one that fails; a harness
whose limits are scattered cannot be tuned for a slow lab host.  Override
any of them per run with ``KLHARNESS_TIMEOUT_<NAME>=seconds`` (e.g.
``KLHARNESS_TIMEOUT_BOOT=300``) or from the config's ``timeouts:`` section.

Code that holds a run's context reads its ``Timeouts`` from there; code with
none (image and VMM builds, host tools, the C builds) reads :func:`active`:
the defaults with the environment's overrides, or the running session's
timeouts once it has called :func:`use`.  ``tests/test_timeouts.py`` fails on
a timeout written as a number anywhere else.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass

from harness.errors import ConfigError


@dataclass(frozen=True)
class Timeouts:
    boot: float = 120.0            # one budget: domain started -> console ready marker -> SSH greeting
    ssh_greeting: float = 10.0     # one TCP connect + read of the "SSH-" banner
    ssh_greeting_first: float = 1.0  # the first such attempt; each retry doubles it, up to ssh_greeting
    ssh_banner: float = 15.0       # paramiko's banner/kex phase
    ssh_auth: float = 15.0         # public key authentication
    exec: float = 60.0             # a guest command with no specific limit
    probe: float = 600.0           # the full probe run in a guest (TCG is slow)
    upload: float = 60.0           # copying the probe into a guest
    libvirt_connect: float = 60.0  # opening a libvirt connection (first one probes QEMU: ~8 s)
    libvirt_call: float = 30.0     # any other single libvirt call (lookups, XML dumps)
    libvirt_reconnect: float = 60.0  # a restarted daemon coming back (one reconnect, then the call again)
    domcapabilities: float = 60.0  # one domain-capabilities call (the first probes QEMU: seconds)
    create: float = 60.0           # createXML / define+create (~0.5 s measured)
    shutdown: float = 30.0         # ACPI shutdown before falling back to destroy (~1.7 s measured)
    destroy: float = 30.0          # ~1.5-2 s measured
    save: float = 120.0            # ~1.3-2 s for 512 MiB measured
    restore: float = 120.0         # ~0.3-0.8 s measured
    wakeup: float = 30.0           # S3/freeze wake (~0.7 s measured)
    hotplug: float = 30.0          # vCPU add (~0.03 s measured)
    qemu_img: float = 60.0         # creating an overlay
    reboot: float = 180.0          # reboot -> SSH back
    migrate: float = 300.0         # one live migration (~2.4 s measured on one host)
    helper_build: float = 900.0    # klhelper built inside a guest (a TCG guest compiles it in ~1-3 min)
    helper_load: float = 120.0     # insmod klhelper (it loads and backs up an IWKey on every vCPU)
    local_probe: float = 300.0     # klprobe run on the host itself (bare-metal cells)
    vectors_stream: float = 21600.0  # `klharness vectors`: a whole vector stream through one guest
    display_close: float = 5.0     # the progress log's heartbeat thread, at the end of a run
    console_first_byte: float = 15.0  # first console byte, for the timing record only (boot owns the deadline)
    daemon_stop: float = 10.0      # SIGTERM -> exit of a peer libvirtd/virtlogd (libvirtd needs ~1 s), then SIGKILL
    process_stop: float = 3.0      # SIGTERM -> exit of a background helper process, then SIGKILL
    sim_host_start: float = 60.0   # scripts/sim-remote-host start (~0.3 s measured; 15 s is its own limit)
    # -- host tools and builds (no run context: read through active()) --
    tool: float = 30.0             # a quick host tool: --version, -cpu help, ldd, modinfo, umount, uname
    compile: float = 180.0         # one C build of the probe, the emulator or a test program
    image_lock: float = 1800.0     # waiting for another process that builds the same cache entry
    build_step: float = 120.0      # one build step: depmod, dropbearkey, qemu-img, zstd/lz4, patch, strip
    package_index: float = 60.0    # apt-cache questions to the package registry
    package_download: float = 600.0  # apt-get download of an image's packages
    package_extract: float = 300.0  # dpkg-deb -x of one package
    debootstrap: float = 1800.0    # the debian image's root file system
    chroot: float = 600.0          # installing the kernel and headers in that root
    disk_image: float = 600.0      # mke2fs -d and qemu-img convert of a root file system
    kernel_build: float = 3600.0   # make of klharness's own guest kernel (~5 min on 2 cores), on the host
    module_build: float = 600.0    # make of klhelper.ko against a guest kernel's headers, on the host
    source_index: float = 300.0    # apt-get update of the private source index (qemu-kl)
    source_download: float = 900.0  # apt-get source of Debian's QEMU
    source_unpack: float = 600.0   # dpkg-source -x of it
    vmm_configure: float = 600.0   # QEMU's configure
    vmm_build: float = 3600.0      # ninja of qemu-system-x86_64 (~4 min on 2 cores; room for a loaded host)


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


_active: Timeouts | None = None


def active() -> Timeouts:
    """This process's timeouts for code without a run context: the defaults with ``KLHARNESS_TIMEOUT_*``
    applied, or what the running session set with :func:`use` (its config's ``timeouts:`` too)."""
    global _active
    if _active is None:
        _active = from_environment()
    return _active


def use(timeouts: Timeouts) -> None:
    """Make ``timeouts`` what :func:`active` returns (a session does, so its builds honour its config)."""
    global _active
    _active = timeouts
