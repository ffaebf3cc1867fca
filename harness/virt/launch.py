"""Start a guest: work directory, overlay, fw_cfg files, XML, domain, boot wait.

Why one function: the steps must happen in this order and be undone when a
later one fails (a guest that never booted must not leak a domain or an
overlay), and the SSH port race needs a retry around the create call only.
"""

from __future__ import annotations

import logging
import re
import shutil
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import libvirt

from harness.errors import CapabilityError, ConfigError, GuestError, HostError, KlharnessError, VirtError
from harness.images.artifact import ImageArtifact
from harness.redact import redact_uri
from harness.timeouts import DEFAULT_TIMEOUTS, Timeouts
from harness.virt import fwcfg as fwcfg_files
from harness.virt import ports
from harness.virt.accel import AccelChoice, choose_accel
from harness.virt.bounded import bounded
from harness.virt.connection import capability_error, is_local, libvirt_error
from harness.virt.domain_xml import DomainRuntime, boot_kernel, build_domain_xml
from harness.virt.guest import Guest, make_workdir
from harness.virt.metadata import DOMAIN_PREFIX, RunMetadata
from harness.virt.overlay import create_overlay
from harness.virt.ports import PortTaken, free_loopback_port, is_hostfwd_conflict, lost_port_race
from harness.virt.qemu_access import check_qemu_can_read
from harness.virt.registry import RunGuests
from harness.virt.spec import FwCfgEntry, GuestSpec, spec_key
from harness.virt.storage import STAGED_FEATURE, create_overlay_volume, run_volume
from harness.wait import Deadline, NotYet, retry_lost_race, wait_for

log = logging.getLogger(__name__)

_RUN_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,39}$")


def domain_name(run_id: str, guest: str) -> str:
    """``klh-<run id>-<guest>``: the prefix the reaper looks for."""
    if not _RUN_ID_RE.match(run_id):
        raise ConfigError(f"run id {run_id!r} must match {_RUN_ID_RE.pattern}")
    return f"{DOMAIN_PREFIX}{run_id}-{guest}"


def launch(conn: Any, spec: GuestSpec, image: ImageArtifact, *, run_id: str,
           accel: AccelChoice | None = None, ssh_port: int | None = None,
           fwcfg: Sequence[FwCfgEntry] = (), console_log: Path | None = None,
           workdir_root: Path | None = None, wait: bool = True,
           registry: RunGuests | None = None, timeouts: Timeouts = DEFAULT_TIMEOUTS,
           stage: Callable[[Path, str], Path] | None = None, deadline: Deadline | None = None) -> Guest:
    """Boot ``spec`` from ``image`` and return the running :class:`Guest`.

    ``fwcfg`` adds per-boot entries (the SSH key, the emulator's
    ``klemu.conf`` with its secret) to the spec's own.  ``ssh_port`` pins the
    forward's port (a taken port is then a HostError, no retry).
    ``console_log`` defaults to ``console.log`` in the guest's work directory
    (deleted at teardown unless kept).  With ``wait`` the call returns only
    once the image's ready marker (``klh: ssh ready``) is on the console, within ``deadline`` (a boot
    budget the caller goes on spending, e.g. on SSH) or else ``timeouts.boot``.  A guest in
    ``registry`` is torn down by the run's signal handler too.

    Raises CapabilityError (unknown CPU feature/property/model, KVM forced
    but unusable, S3 with a PVH kernel), HostError (port taken), VirtError,
    GuestError (no boot progress).
    """
    uri = str(conn.getURI())
    accel = accel or choose_accel(spec.accel, local=is_local(uri))
    if spec.vmm == "qemu-kl" and accel.accel != "tcg":
        accel = AccelChoice(accel.requested, "tcg", "vmm qemu-kl executes Key Locker in TCG (its KVM path has none)")
    _check_capabilities(spec, image)
    staged = STAGED_FEATURE in image.features
    if is_local(uri) and uri.split("?")[0].endswith("/system") and not staged:
        boot = [p for p in (boot_kernel(spec, image), image.initrd, image.disk, image.seed_iso) if p is not None]
        check_qemu_can_read(boot, f"image {image.name!r}")
    name = domain_name(run_id, spec.name)
    workdir = make_workdir(name, run_id, workdir_root)
    remote = not is_local(uri)
    if remote and stage is None:
        raise HostError(f"guest {spec.name!r}: the host {redact_uri(uri)} shares no files with this machine, so "
                        "its fw_cfg blobs must be staged (this is a bug: the run stages for every remote host)")
    guest: Guest | None = None
    try:
        entries = fwcfg_files.materialize([*spec.fwcfg, *fwcfg], workdir)
        overlay = None
        if image.disk is not None and not remote:
            overlay = create_overlay(image.disk, workdir / "overlay.qcow2", timeout=timeouts.qemu_img)
        console = (console_log or workdir / "console.log").absolute()
        meta = RunMetadata(run_id=run_id, guest=spec.name, spec_key=spec_key(spec), accel=accel.accel,
                           accel_reason=accel.reason, workdir=str(workdir))
        rt = DomainRuntime(name=name, ssh_port=ssh_port or 0, console_log=console, meta=meta, overlay=overlay,
                           emulator=emulator_for(spec), remote_host=remote)
        guest = Guest(conn, spec, image, accel, rt, workdir, timeouts, stage=stage)
        if registry is not None:
            registry.add(guest)
        # a host that cannot read our files: fw_cfg blobs go through its pool, 0600
        guest.update_runtime(fwcfg=guest.stage_fwcfg(entries))
        if image.disk is not None and remote:  # the base was staged into the host's pool: the overlay goes there
            ovl_volume = run_volume("ovl", name, "overlay.qcow2")
            guest.volumes.append(ovl_volume)
            guest.update_runtime(overlay=create_overlay_volume(conn, image.disk, ovl_volume))
        guest.console.reset()
        _create_with_port_retry(guest, pinned_port=ssh_port)
        started = time.monotonic()
        _wait_first_byte(guest)
        if wait:
            guest.wait_for_console(guest.ready_marker, timeout=deadline or Deadline(timeouts.boot, "boot"))
            guest.timings["boot"] = time.monotonic() - started  # domain running -> ready marker
        return guest
    except BaseException:
        if guest is None:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            try:
                guest.teardown(keep_console=console_log is not None)
            except KlharnessError as err:
                log.warning("cleanup after failed launch of %s: %s", name, err)
            if registry is not None:
                registry.discard(guest)
        raise


def emulator_for(spec: GuestSpec) -> Path | None:
    """The QEMU binary of the spec's VMM (None: libvirt's default, the distribution's QEMU)."""
    if spec.vmm == "system":
        return None
    from harness.errors import BuildError
    from harness.vmm import qemu_kl

    try:
        return qemu_kl.installed().binary
    except BuildError as err:
        raise HostError(f"guest {spec.name!r} runs on vmm {spec.vmm}: {err}") from err


def _check_capabilities(spec: GuestSpec, image: ImageArtifact) -> None:
    """Refuse early what is known not to work here (a skip, not a failure)."""
    kernel = boot_kernel(spec, image)
    if spec.suspend_to_mem and kernel is not None and _is_elf(kernel):
        raise CapabilityError(
            f"guest {spec.name!r}: suspend_to_mem needs a bzImage kernel; image {image.name!r} has only the "
            f"uncompressed ELF {kernel} (PVH entry), which never resumes from S3 (resets in a loop)")


def _is_elf(path: Path) -> bool:
    try:
        with path.open("rb") as f:
            return f.read(4) == b"\x7fELF"
    except OSError:
        return False


def _create_with_port_retry(guest: Guest, *, pinned_port: int | None) -> None:
    """Define/create the domain; on a lost port race pick a new port (unless pinned) and retry."""
    attempts = 1 if pinned_port else ports.ATTEMPTS

    def attempt(_: int) -> None:
        port = pinned_port or free_loopback_port()
        guest.update_runtime(ssh_port=port)
        xml = build_domain_xml(guest.spec, guest.image, guest.accel, guest.runtime)
        log.debug("domain XML for %s:\n%s", guest.name, xml)
        try:
            start = time.monotonic()
            _create(guest, xml)
            guest.timings["create"] = time.monotonic() - start
        except libvirt.libvirtError as err:
            msg = err.get_error_message() or str(err)
            _forget_definition(guest)
            if cap := capability_error(err, guest.name):
                raise cap from err
            if not is_hostfwd_conflict(msg):
                raise libvirt_error(err, f"starting domain {guest.name}") from err
            raise PortTaken(port, msg.strip().splitlines()[-1]) from err

    try:
        retry_lost_race(f"the SSH forward port of {guest.name}", attempt, attempts=attempts,
                        lost=lost_port_race)
    except PortTaken as err:
        if pinned_port:
            raise HostError(f"port 127.0.0.1:{err.port} for the SSH forward of {guest.name} is already in use "
                            f"(QEMU: {err.qemu_message}); choose another port or leave it unset so a free one "
                            "is picked") from err
        raise HostError(f"could not find a free SSH forward port for {guest.name} in {attempts} attempts: "
                        f"{err}") from err


def _create(guest: Guest, xml: str) -> None:
    conn, t = guest.conn, guest.timeouts.create
    paused = libvirt.VIR_DOMAIN_START_PAUSED
    if guest.spec.persistent:
        dom = bounded(lambda: conn.defineXML(xml), timeout=t, what=f"defining {guest.name}")
        guest.start_attached(lambda flags: bounded(lambda: dom.createWithFlags(flags), timeout=t,
                                                   what=f"starting {guest.name}"), paused)
    else:
        guest.start_attached(lambda flags: bounded(lambda: conn.createXML(xml, flags), timeout=t,
                                                   what=f"creating {guest.name}"), paused)


def _forget_definition(guest: Guest) -> None:
    """After a failed start of a persistent domain, drop the definition so a retry starts clean."""
    if guest.spec.persistent:
        try:
            guest.undefine()
        except VirtError as err:
            log.warning("undefining %s after a failed start: %s", guest.name, err)


def _wait_first_byte(guest: Guest) -> None:
    """Record when the console log got its first byte (a cheap sign QEMU really runs the guest)."""
    start = time.monotonic()

    def poll() -> bool:
        if guest.console.size() > 0:
            return True
        if guest.stopped_reason():
            return False
        raise NotYet("the console log is empty")

    try:
        if wait_for("the first console byte", poll, timeout=min(guest.timeouts.boot, guest.timeouts.console_first_byte),
                    initial=0.01, cap=0.2):
            guest.timings["console_first_byte"] = time.monotonic() - start
    except GuestError:
        pass  # the marker wait reports the empty console (or the stop) with its hint
