"""Move a running guest to another libvirt daemon: live (``migrate3``) or offline (save, then restore there).

Why these choices (measured with two daemons on one host, HOST_NOTES.md):

* an explicit migration URI ``tcp://127.0.0.1:PORT`` on a free port: without
  it libvirt derives one from the destination's hostname, which here is a
  name in the peer's UTS namespace that nothing resolves;
* a destination XML with a fresh SSH forward port: both QEMUs run at once
  during a live migration and cannot bind the same port ("Could not set up
  host forwarding rule") — the XML is patched exactly as for a restore
  (:func:`harness.virt.domain_xml.patch_for_restore`);
* plain (client-driven) migration, so the harness holds both connections and
  needs no TCP listener on either daemon;
* a refusal (a QEMU migration blocker, an unsafe configuration) is a
  :class:`MigrationRefused` that leaves the guest running on the source:
  profiles like ``kvm-kl-rfc`` expect exactly that outcome.

After a move the :class:`~harness.virt.guest.Guest` points at the
destination's connection and the new port; its name, files and console log
(written by the destination's virtlogd, appended) stay the same.
"""

from __future__ import annotations

import logging
import re
import time
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from typing import Any

import libvirt

from harness.errors import MigrationRefused, VirtError
from harness.virt import fwcfg as fwcfg_files
from harness.virt import lifecycle, ports
from harness.virt.bounded import bounded
from harness.virt.connection import libvirt_error
from harness.virt.domain_xml import patch_for_restore
from harness.virt.guest import Guest
from harness.virt.ports import PortTaken, free_loopback_port, is_hostfwd_conflict, lost_port_race
from harness.virt.spec import FwCfgEntry
from harness.wait import retry_lost_race

log = logging.getLogger(__name__)

_REFUSAL = re.compile(
    r"non-migratable|cannot migrate|migration is disabled|migration blocker|is not migratable|blocked by"
    r"|unsafe migration", re.IGNORECASE)
_PORT_TAKEN = re.compile(r"Address already in use|Failed to bind socket", re.IGNORECASE)


def refusal(err: libvirt.libvirtError, name: str) -> MigrationRefused | None:
    """A MigrationRefused when ``err`` means "this guest may not be migrated", else None."""
    msg = err.get_error_message() or str(err)
    if err.get_error_code() == libvirt.VIR_ERR_MIGRATE_UNSAFE or _REFUSAL.search(msg):
        return MigrationRefused(f"migration of {name} refused: {msg}")
    return None


def migrate_live(guest: Guest, dest_conn: Any, *, timeout: float | None = None,
                 fwcfg: Sequence[FwCfgEntry] | None = None) -> float:
    """Live-migrate ``guest`` to ``dest_conn``; seconds the migration call took.

    Records ``migrate`` and, when libvirt reports it, ``migrate_downtime``
    (the guest's stop-and-copy pause, seconds) in ``guest.timings``.  A
    persistent domain's definition moves too.  Raises MigrationRefused (the
    guest keeps running on the source), VirtError (destination unreachable,
    same daemon, timeout — the job is aborted, or any other failure).
    ``fwcfg`` replaces the fw_cfg blobs the destination QEMU starts with
    (same sizes: the guest keeps the old size until it reloads the driver).
    """
    limit = timeout or guest.timeouts.migrate
    entries = None
    if fwcfg is not None:
        gen = 1 + max((int(p.name.split("-")[1]) for _, p in guest.runtime.fwcfg), default=0)
        entries = fwcfg_files.materialize(fwcfg, guest.workdir, generation=gen)
    _check_destination(guest, dest_conn)
    dom = guest.domain()
    src_xml = str(_call(guest, "reading the migratable XML of",
                        lambda: dom.XMLDesc(libvirt.VIR_DOMAIN_XML_MIGRATABLE), guest.timeouts.libvirt_call))
    flags = libvirt.VIR_MIGRATE_LIVE
    if _call(guest, "checking", dom.isPersistent, guest.timeouts.libvirt_call):
        flags |= libvirt.VIR_MIGRATE_PERSIST_DEST | libvirt.VIR_MIGRATE_UNDEFINE_SOURCE
    def attempt(_: int) -> tuple[Any, int, float]:
        ssh_port = free_loopback_port()
        mig_port = free_loopback_port()
        dest_xml = patch_for_restore(src_xml, ssh_port=ssh_port, fwcfg=entries)
        params: dict[str, Any] = {libvirt.VIR_MIGRATE_PARAM_URI: f"tcp://127.0.0.1:{mig_port}",
                                  libvirt.VIR_MIGRATE_PARAM_DEST_XML: dest_xml}
        if flags & libvirt.VIR_MIGRATE_PERSIST_DEST:
            params[libvirt.VIR_MIGRATE_PARAM_PERSIST_XML] = dest_xml
        start = time.monotonic()
        try:
            new_dom = bounded(lambda: dom.migrate3(dest_conn, params, flags), timeout=limit,
                              what=f"live-migrating {guest.name}")
        except VirtError:
            _abort(guest, dom)
            raise
        except libvirt.libvirtError as err:
            msg = err.get_error_message() or str(err)
            if refused := refusal(err, guest.name):
                raise refused from err
            if is_hostfwd_conflict(msg) or _PORT_TAKEN.search(msg):
                raise PortTaken(ssh_port if is_hostfwd_conflict(msg) else mig_port, msg) from err
            raise libvirt_error(err, f"live-migrating {guest.name} to {_uri(dest_conn)}") from err
        return new_dom, ssh_port, time.monotonic() - start

    try:
        new_dom, ssh_port, took = retry_lost_race(f"live-migrating {guest.name}", attempt, attempts=ports.ATTEMPTS,
                                                  lost=lost_port_race)
    except PortTaken as err:
        raise VirtError(f"live-migrating {guest.name} to {_uri(dest_conn)}: {err}, {ports.ATTEMPTS} times") from err
    guest.conn = dest_conn
    if entries is not None:
        guest.update_runtime(ssh_port=ssh_port, fwcfg=entries)
    else:
        guest.update_runtime(ssh_port=ssh_port)
    guest.timings["migrate"] = took
    downtime = completed_downtime(new_dom)
    if downtime is not None:
        guest.timings["migrate_downtime"] = downtime
    log.info("migrated %s live in %.2fs (downtime %s) to %s, SSH now on port %d", guest.name, took,
             f"{downtime * 1000:.0f} ms" if downtime is not None else "?", _uri(dest_conn), ssh_port)
    return took


def migrate_offline(guest: Guest, dest_conn: Any) -> float:
    """Save ``guest`` on its daemon and restore it on ``dest_conn`` (new SSH port); seconds taken.

    The save image lives in the guest's work directory, which both daemons
    see (one host).  Only transient domains: a persistent one would leave
    its definition behind (use :func:`migrate_live`, which moves it).  On a
    failed restore the guest stays saved and ``guest.conn`` points at the
    source again (``lifecycle.restore(guest)`` brings it back there).
    """
    _check_destination(guest, dest_conn)
    if guest.spec.persistent:
        raise VirtError(f"offline migration of {guest.name}: persistent domains are not supported "
                        "(their definition would stay on the source); use live migration")
    start = time.monotonic()
    lifecycle.save(guest)
    source = guest.conn
    guest.conn = dest_conn
    try:
        lifecycle.restore(guest, new_port=True)
    except BaseException:
        guest.conn = source
        raise
    guest.timings["migrate_offline"] = took = time.monotonic() - start
    log.info("migrated %s offline in %.2fs to %s, SSH now on port %d", guest.name, took, _uri(dest_conn),
             guest.ssh_port)
    return took


def completed_downtime(dom: Any) -> float | None:
    """The stop-and-copy downtime (seconds) of the migration that just completed, from the destination."""
    try:
        stats = dom.jobStats(libvirt.VIR_DOMAIN_JOB_STATS_COMPLETED)
    except libvirt.libvirtError as err:
        log.debug("no completed-job statistics for %s: %s", dom.name(), err)
        return None
    value = stats.get(libvirt.VIR_DOMAIN_JOB_DOWNTIME)
    return None if value is None else float(value) / 1000.0


def _check_destination(guest: Guest, dest_conn: Any) -> None:
    """The destination answers and is not the guest's own daemon (libvirt's host UUID tells)."""
    try:
        alive = bool(dest_conn.isAlive())
        dest_uuid = _host_uuid(dest_conn)
    except libvirt.libvirtError as err:
        raise VirtError(f"migrating {guest.name}: the destination daemon does not answer "
                        f"({err.get_error_message() or err}); is the peer daemon running?") from err
    if not alive:
        raise VirtError(f"migrating {guest.name}: the connection to the destination is closed "
                        "(is the peer daemon running?)")
    try:
        src_uuid = _host_uuid(guest.conn)
    except libvirt.libvirtError as err:
        raise libvirt_error(err, f"reading the host UUID of the source of {guest.name}") from err
    if src_uuid == dest_uuid:
        raise VirtError(f"migrating {guest.name}: source and destination are the same daemon (host UUID "
                        f"{src_uuid}); migrate to a PeerDaemon (harness.virt.peer) or another host")


def _host_uuid(conn: Any) -> str:
    root = ET.fromstring(conn.getCapabilities())  # noqa: S314 - XML from our own libvirt daemon
    return root.findtext("host/uuid") or ""


def _abort(guest: Guest, dom: Any) -> None:
    """After a timed-out migration: cancel the job so the guest stays (running) on the source."""
    try:
        bounded(dom.abortJob, timeout=guest.timeouts.libvirt_call, what=f"aborting the migration of {guest.name}")
    except (libvirt.libvirtError, VirtError) as err:
        log.warning("could not abort the migration job of %s: %s", guest.name, err)


def _call(guest: Guest, what: str, fn: Any, timeout: float) -> object:
    try:
        return bounded(fn, timeout=timeout, what=f"{what} {guest.name}")
    except libvirt.libvirtError as err:
        raise libvirt_error(err, f"{what} {guest.name}") from err


def _uri(conn: Any) -> str:
    try:
        return str(conn.getURI())
    except libvirt.libvirtError:
        return "(unreachable)"
