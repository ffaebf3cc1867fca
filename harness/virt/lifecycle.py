"""Lifecycle steps on a running guest, each bounded by a named timeout.

Why these semantics (measured under TCG, HOST_NOTES.md): ACPI shutdown and
reboot only work when the guest handles the power button (``button`` +
``evdev`` + an acpid) — without one libvirt reports success and nothing
happens, so every step here *waits for evidence* (state change or a console
line) instead of trusting the call's return.  Save/restore may change the
SSH port and fw_cfg files but not the name.  vCPU hot-plug is add-only:
removal leaves libvirt with a stale count.  S3 resume needs a bzImage
kernel; freeze works with any kernel and is woken by a key press.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import libvirt

from harness.errors import CapabilityError, HostError, VirtError
from harness.virt import fwcfg as fwcfg_files
from harness.virt import ports
from harness.virt.bounded import bounded
from harness.virt.connection import capability_error, libvirt_error
from harness.virt.domain_xml import patch_for_restore
from harness.virt.guest import ACTIVE_STATES, Guest
from harness.virt.ports import PortTaken, free_loopback_port, is_hostfwd_conflict, lost_port_race
from harness.virt.spec import FwCfgEntry
from harness.wait import NotYet, retry_lost_race, wait_for

log = logging.getLogger(__name__)

KEY_LEFTSHIFT = 42  # linux keycode; any key wakes a frozen guest with keyboard wakeup enabled
ACPI_HINT = ("the guest may not handle the ACPI power button (it needs the button and evdev modules and an "
             "acpid); libvirt reports success either way")


def _call(guest: Guest, what: str, fn: Callable[[], object], timeout: float) -> object:
    try:
        return bounded(fn, timeout=timeout, what=f"{what} {guest.name}")
    except libvirt.libvirtError as err:
        raise libvirt_error(err, f"{what} {guest.name}") from err


def _wait_state(guest: Guest, done: Callable[[str], bool], timeout: float, what: str) -> float:
    """Poll the domain state until ``done(state)``; seconds taken, VirtError on timeout."""
    start = time.monotonic()

    def poll() -> float:
        st = guest.state()
        if not done(st):
            raise NotYet(f"domain state is {st!r}")
        return time.monotonic() - start

    return wait_for(f"{what} {guest.name}", poll, timeout=timeout, cap=0.5, error=VirtError)


def shutdown(guest: Guest, *, timeout: float | None = None) -> bool:
    """ACPI power-off, waited for; destroy when the guest ignores it.  True if it went gracefully."""
    t = timeout or guest.timeouts.shutdown
    dom = guest.domain()
    _call(guest, "shutting down", lambda: dom.shutdownFlags(libvirt.VIR_DOMAIN_SHUTDOWN_ACPI_POWER_BTN), t)
    try:
        guest.timings["shutdown"] = _wait_state(guest, lambda s: s not in ACTIVE_STATES, t, "shutting down")
        return True
    except VirtError as err:
        log.warning("%s; %s; destroying it", err, ACPI_HINT)
        guest.destroy()
        return False


def reboot(guest: Guest, *, wait: bool = True, timeout: float | None = None) -> float:
    """ACPI reboot; with ``wait``, wait for the ready marker of the new boot.  Seconds taken."""
    mark = guest.console.mark()
    start = time.monotonic()
    dom = guest.domain()
    _call(guest, "rebooting", lambda: dom.reboot(libvirt.VIR_DOMAIN_REBOOT_ACPI_POWER_BTN), guest.timeouts.create)
    if wait:
        guest.console.wait_for(guest.ready_marker, after=mark, timeout=timeout or guest.timeouts.boot,
                               what=f"guest {guest.name}: ACPI reboot", stopped=guest.stopped_reason,
                               hint=f"{ACPI_HINT}; or: {guest.accel.slow_hint}")
    guest.timings["reboot"] = took = time.monotonic() - start
    return took


def reset(guest: Guest, *, wait: bool = True, timeout: float | None = None) -> float:
    """Hard reset (no guest cooperation); with ``wait``, wait for the new boot's ready marker.  Seconds taken."""
    mark = guest.console.mark()
    start = time.monotonic()
    dom = guest.domain()
    _call(guest, "resetting", lambda: dom.reset(0), guest.timeouts.create)
    if wait:
        guest.wait_for_console(after=mark, timeout=timeout, what="reset")
    guest.timings["reset"] = took = time.monotonic() - start
    return took


def save(guest: Guest, path: Path | None = None) -> Path:
    """Save the guest's memory to ``path`` (default: its work directory, or the remote host's pool); the
    domain stops."""
    dest = (path or guest.save_path()).absolute()
    dom = guest.domain()
    start = time.monotonic()
    _call(guest, "saving", lambda: dom.save(str(dest)), guest.timeouts.save)
    guest.timings["save"] = time.monotonic() - start
    guest.saved_image = dest
    return dest


def restore(guest: Guest, path: Path | None = None, *, new_port: bool = False,
            fwcfg: Sequence[FwCfgEntry] | None = None) -> float:
    """Restore a saved guest, optionally on a new SSH port and/or with new fw_cfg entries.

    The XML is the save image's own, patched, so libvirt's ABI check passes.
    New fw_cfg content of another size is seen cut to the old size until the
    guest reloads ``qemu_fw_cfg`` (HOST_NOTES).  Returns seconds taken.
    """
    src = path or guest.saved_image
    if src is None:
        raise VirtError(f"restoring {guest.name}: no save image (call save first or pass a path)")
    conn = guest.conn
    base_xml = str(_call(guest, "reading the save image of",
                         lambda: conn.saveImageGetXMLDesc(str(src), libvirt.VIR_DOMAIN_SAVE_IMAGE_XML_SECURE),
                         guest.timeouts.libvirt_call))
    entries = None
    if fwcfg is not None:
        gen = 1 + max((int(p.name.split("-")[1]) for _, p in guest.runtime.fwcfg), default=0)
        entries = guest.stage_fwcfg(fwcfg_files.materialize(fwcfg, guest.workdir, generation=gen))
    attempts = ports.ATTEMPTS if new_port else 1

    def attempt(_: int) -> float:
        port = free_loopback_port() if new_port else None
        xml = patch_for_restore(base_xml, ssh_port=port, fwcfg=entries)
        start = time.monotonic()
        try:
            guest.start_attached(lambda flags: bounded(lambda: conn.restoreFlags(str(src), xml, flags),
                                                       timeout=guest.timeouts.restore, what=f"restoring {guest.name}"),
                                 libvirt.VIR_DOMAIN_SAVE_PAUSED)
        except libvirt.libvirtError as err:
            msg = err.get_error_message() or str(err)
            if cap := capability_error(err, guest.name):
                raise cap from err
            if is_hostfwd_conflict(msg):
                raise PortTaken(port or guest.ssh_port, msg) from err
            raise libvirt_error(err, f"restoring {guest.name}") from err
        guest.timings["restore"] = took = time.monotonic() - start
        changes: dict[str, object] = {}
        if port is not None:
            changes["ssh_port"] = port
        if entries is not None:
            changes["fwcfg"] = entries
        if changes:
            guest.update_runtime(**changes)
        return took

    try:
        return retry_lost_race(f"restoring {guest.name}", attempt, attempts=attempts, lost=lost_port_race)
    except PortTaken as err:
        raise HostError(f"restoring {guest.name}: SSH forward port {err.port} is taken: {err.qemu_message}") from err


def managed_save(guest: Guest) -> float:
    """libvirt-managed save of a persistent guest; ``start`` resumes it.  Seconds taken."""
    _require_persistent(guest, "managed save")
    dom = guest.domain()
    start = time.monotonic()
    _call(guest, "managed-saving", lambda: dom.managedSave(0), guest.timeouts.save)
    guest.timings["managed_save"] = took = time.monotonic() - start
    return took


def start(guest: Guest) -> float:
    """Start a defined guest (from its managed-save image when it has one).  Seconds taken."""
    _require_persistent(guest, "start")
    dom = guest.domain()
    begin = time.monotonic()
    guest.start_attached(lambda flags: _call(guest, "starting", lambda: dom.createWithFlags(flags),
                                             guest.timeouts.restore), libvirt.VIR_DOMAIN_START_PAUSED)
    guest.timings["start"] = took = time.monotonic() - begin
    return took


def has_managed_save(guest: Guest) -> bool:
    dom = guest.domain()
    return bool(_call(guest, "checking the managed save of", lambda: dom.hasManagedSaveImage(0),
                      guest.timeouts.libvirt_call))


def pm_wakeup(guest: Guest) -> float:
    """Wake a guest that suspended itself to RAM (``echo mem > /sys/power/state``).  Seconds taken."""
    if not guest.spec.suspend_to_mem:
        raise CapabilityError(f"guest {guest.name}: S3 wake needs suspend_to_mem in its spec")
    st = guest.state()
    if st != "pmsuspended":
        raise VirtError(f"waking {guest.name}: it is {st!r}, not suspended to RAM")
    dom = guest.domain()
    start_t = time.monotonic()
    _call(guest, "waking", lambda: dom.pMWakeup(0), guest.timeouts.wakeup)
    _wait_state(guest, lambda s: s == "running", guest.timeouts.wakeup, "waking")
    guest.timings["pm_wakeup"] = took = time.monotonic() - start_t
    return took


def wake_from_freeze(guest: Guest) -> None:
    """Press a key to wake a guest in suspend-to-idle (``echo freeze > /sys/power/state``).

    The guest must have enabled keyboard wakeup
    (``echo enabled > /sys/devices/platform/i8042/serio0/power/wakeup``).
    The domain state stays ``running`` throughout, so callers wait for a
    console line or SSH to see it back.
    """
    dom = guest.domain()
    _call(guest, "sending a key to", lambda: dom.sendKey(libvirt.VIR_KEYCODE_SET_LINUX, 50, [KEY_LEFTSHIFT], 1, 0),
          guest.timeouts.wakeup)


def vcpu_count(guest: Guest) -> int:
    dom = guest.domain()
    count = _call(guest, "counting vCPUs of", lambda: dom.vcpusFlags(libvirt.VIR_DOMAIN_AFFECT_LIVE),
                  guest.timeouts.libvirt_call)
    assert isinstance(count, int)
    return count


def add_vcpus(guest: Guest, count: int) -> float:
    """Hot-plug vCPUs up to ``count`` (they appear offline in the guest until onlined).  Seconds taken.

    Add-only: removal under libvirt 9.0 + QEMU 7.2 times out and leaves a
    stale count, so asking for fewer vCPUs is a VirtError.
    """
    current = vcpu_count(guest)
    if count <= current:
        raise VirtError(f"vCPU hot-unplug is not supported (guest {guest.name} has {current}, asked {count}): "
                        "libvirt 9.0 + QEMU 7.2 time out and keep a stale count; hot-plug is add-only")
    if count > guest.spec.top_vcpus:
        raise VirtError(f"guest {guest.name}: {count} vCPUs exceed max_vcpus {guest.spec.top_vcpus} of its spec")
    dom = guest.domain()
    start_t = time.monotonic()
    _call(guest, "hot-plugging vCPUs into", lambda: dom.setVcpusFlags(count, libvirt.VIR_DOMAIN_AFFECT_LIVE),
          guest.timeouts.hotplug)

    def poll() -> None:
        now = vcpu_count(guest)
        if now != count:
            raise NotYet(f"libvirt counts {now} vCPUs")

    wait_for(f"{count} vCPUs in {guest.name}", poll, timeout=guest.timeouts.hotplug, error=VirtError)
    guest.timings["add_vcpus"] = took = time.monotonic() - start_t
    return took


def _require_persistent(guest: Guest, what: str) -> None:
    if not guest.spec.persistent:
        raise VirtError(f"{what} of {guest.name} needs a persistent (defined) domain: set persistent in its spec")
