"""Find and remove what dead runs left behind: ``klh-*`` domains and their work directories.

Why: SIGKILL, an OOM kill or a power cut skips every ``finally``.  Each
domain carries its maker's run id, pid and pid start time in its metadata
(:mod:`harness.virt.metadata`); a domain whose maker no longer runs is
garbage.  Each run calls :func:`reap` at start-up, and ``klharness cleanup``
calls it on demand.  Port forwards live inside QEMU, so they go with the
domain; files go only when the daemon is on this host and the directory
carries the harness's marker (the reaper runs as root: it deletes nothing
it cannot prove it made).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any

import libvirt

from harness.errors import VirtError
from harness.timeouts import DEFAULT_TIMEOUTS, Timeouts
from harness.virt.bounded import bounded
from harness.virt.connection import is_no_domain, libvirt_error
from harness.virt.guest import UNDEFINE_FLAGS, WORKDIR_MARKER, runtime_root
from harness.virt.metadata import DOMAIN_PREFIX, Reaped, RunMetadata, harness_alive, owner_of
from harness.virt.peer import reap_peers
from harness.virt.simhost import reap_sim_hosts
from harness.virt.storage import RUN_VOLUME_KINDS, delete_volumes, run_tags, run_volume_prefixes

log = logging.getLogger(__name__)


def _select(meta: RunMetadata | None, name: str, run_id: str | None, everything: bool) -> str | None:
    """Why this domain should go, or None to leave it."""
    if everything:
        return "--all"
    if run_id is not None:
        if (meta and meta.run_id == run_id) or (meta is None and name.startswith(f"{DOMAIN_PREFIX}{run_id}-")):
            return f"run id {run_id}"
        return None
    if meta is None:
        return None  # untagged: not provably ours
    if not harness_alive(meta):
        return f"harness pid {meta.harness_pid} on {meta.host} is gone"
    return None


def reap(conn: Any, *, run_id: str | None = None, everything: bool = False, local: bool = True,
         workdir_root: Path | None = None, timeouts: Timeouts = DEFAULT_TIMEOUTS) -> list[Reaped]:
    """Remove leaked klharness domains (and, when ``local``, their files); report each.

    Default: domains whose harness process is dead.  ``run_id``: every
    domain of that run.  ``everything``: every ``klh-*`` domain.
    """
    out: list[Reaped] = []
    if local:  # peer daemons and simulated hosts of dead runs first: their domains are not on ``conn``
        out += reap_peers((workdir_root or runtime_root()) / "peers", run_id=run_id, everything=everything,
                          timeouts=timeouts)
        out += [Reaped(f"simulated remote host {name}", "", "its harness process is gone", ["stopped"])
                for name in reap_sim_hosts()]
    try:
        doms = bounded(lambda: conn.listAllDomains(0), timeout=timeouts.libvirt_call, what="listing domains")
    except libvirt.libvirtError as err:
        raise libvirt_error(err, "listing domains") from err
    for dom in doms:
        name = dom.name()
        if not name.startswith(DOMAIN_PREFIX):
            continue
        try:
            meta = RunMetadata.from_domain_xml(dom.XMLDesc(0))
        except libvirt.libvirtError as err:
            if is_no_domain(err):
                continue  # went away while we looked
            raise libvirt_error(err, f"reading the XML of {name}") from err
        reason = _select(meta, name, run_id, everything)
        if reason is None:
            continue
        item = Reaped(name, meta.run_id if meta else "", reason)
        _remove_domain(dom, item, timeouts)
        if local and meta is not None:
            _remove_files(meta, item)
        out.append(item)
    if local:
        out += _reap_workdirs(workdir_root or runtime_root(), run_id, everything,
                              skip={r.what for r in out})
    else:
        out += reap_volumes(conn, run_id=run_id, everything=everything)
    return out


def reap_volumes(conn: Any, *, run_id: str | None = None, everything: bool = False) -> list[Reaped]:
    """A remote host's staged files of dead runs: fw_cfg blobs, save images and the run's tag.

    Each run tags the pool with its owner (:func:`harness.virt.storage.tag_run`); a run whose owner
    no longer runs is dead.  A run's volumes with no tag (it died before tagging) go only by
    ``run_id`` or ``everything``: nothing is deleted that is not provably a dead run's.
    """
    out: list[Reaped] = []
    for tagged_run, owner in sorted(run_tags(conn).items()):
        meta = owner_of({**owner, "run_id": tagged_run})
        reason = _select(meta, f"{DOMAIN_PREFIX}{tagged_run}-", run_id, everything)
        if reason is None:
            continue
        item = Reaped(f"staged volumes of run {tagged_run}", tagged_run, reason)
        try:
            gone = delete_volumes(conn, run_volume_prefixes(tagged_run))
            item.actions.append(f"deleted {len(gone)} volumes")
        except VirtError as err:
            item.errors.append(str(err))
        out.append(item)
    if run_id is not None and run_id not in {r.run_id for r in out}:
        gone = delete_volumes(conn, run_volume_prefixes(run_id))
        if gone:
            out.append(Reaped(f"staged volumes of run {run_id}", run_id, f"run id {run_id}",
                              [f"deleted {len(gone)} volumes"]))
    elif everything:
        gone = delete_volumes(conn, tuple(f"{kind}-{DOMAIN_PREFIX}" for kind in RUN_VOLUME_KINDS))
        if gone:
            out.append(Reaped("untagged staged volumes", "", "--all", [f"deleted {len(gone)} volumes"]))
    return out


def _remove_domain(dom: Any, item: Reaped, timeouts: Timeouts) -> None:
    """Destroy then undefine; the second runs even when the first fails."""
    try:
        if dom.isActive():
            bounded(dom.destroy, timeout=timeouts.destroy, what=f"destroying {item.what}")
            item.actions.append("destroyed")
    except (libvirt.libvirtError, VirtError) as err:
        if not (isinstance(err, libvirt.libvirtError) and is_no_domain(err)):
            item.errors.append(f"destroy: {err}")
    try:
        if dom.isPersistent():
            bounded(lambda: dom.undefineFlags(UNDEFINE_FLAGS), timeout=timeouts.libvirt_call,
                    what=f"undefining {item.what}")
            item.actions.append("undefined")
    except (libvirt.libvirtError, VirtError) as err:
        if not (isinstance(err, libvirt.libvirtError) and is_no_domain(err)):
            item.errors.append(f"undefine: {err}")


def _remove_files(meta: RunMetadata, item: Reaped) -> None:
    if meta.workdir:
        wd = Path(meta.workdir)
        if (wd / WORKDIR_MARKER).is_file():
            try:
                shutil.rmtree(wd)
                item.actions.append(f"removed {wd}")
            except OSError as err:
                item.errors.append(f"remove {wd}: {err}")
    for f in meta.files:
        p = Path(f)
        if p.is_file() and not p.is_symlink():
            try:
                p.unlink()
                item.actions.append(f"removed {p}")
            except OSError as err:
                item.errors.append(f"remove {p}: {err}")


def _reap_workdirs(root: Path, run_id: str | None, everything: bool, skip: set[str]) -> list[Reaped]:
    """Work directories whose domain is already gone (a kept console, a crash mid-launch)."""
    out: list[Reaped] = []
    if not root.is_dir():
        return out
    for wd in sorted(root.iterdir()):
        marker = wd / WORKDIR_MARKER
        if wd.name in skip or not marker.is_file():
            continue
        try:
            tag = json.loads(marker.read_text())
        except (OSError, ValueError):
            continue
        meta = owner_of(tag)
        reason = _select(meta, wd.name, run_id, everything)
        if reason is None or (everything and meta.harness_pid == os.getpid()):
            continue
        item = Reaped(str(wd), meta.run_id, reason)
        try:
            shutil.rmtree(wd)
            item.actions.append("removed work directory")
        except OSError as err:
            item.errors.append(f"remove: {err}")
        out.append(item)
    return out
