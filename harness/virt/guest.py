"""A guest of this run: its domain, its files, and how it goes away.

Why apart from the spec: a :class:`~harness.virt.spec.GuestSpec` is a value
shared by equal cells; a :class:`Guest` is one boot of it with a domain name,
a port, a console log, files on disk and a state that lifecycle steps change.
Lifecycle operations live in :mod:`harness.virt.lifecycle`, creation in
:mod:`harness.virt.launch`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import libvirt

from harness.errors import VirtError
from harness.images.artifact import READY_MARKER, ImageArtifact
from harness.timeouts import DEFAULT_TIMEOUTS, Timeouts
from harness.virt.accel import AccelChoice
from harness.virt.bounded import bounded
from harness.virt.connection import is_no_domain, libvirt_error
from harness.virt.console import ConsoleLog
from harness.virt.console_stream import ConsolePump
from harness.virt.domain_xml import DomainRuntime
from harness.virt.metadata import RunMetadata, owner_tag
from harness.virt.spec import GuestSpec
from harness.virt.storage import POOL_PATH, delete_named_volumes, run_volume
from harness.wait import Deadline

log = logging.getLogger(__name__)

WORKDIR_MARKER = ".klharness-workdir"
# Our domains have no UEFI NVRAM and no checkpoints; asking to drop those too makes drivers that
# lack the flags (the test driver) refuse the whole undefine.
UNDEFINE_FLAGS = libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE | libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA

_STATES = {
    libvirt.VIR_DOMAIN_NOSTATE: "nostate", libvirt.VIR_DOMAIN_RUNNING: "running",
    libvirt.VIR_DOMAIN_BLOCKED: "blocked", libvirt.VIR_DOMAIN_PAUSED: "paused",
    libvirt.VIR_DOMAIN_SHUTDOWN: "shutting-down", libvirt.VIR_DOMAIN_SHUTOFF: "shutoff",
    libvirt.VIR_DOMAIN_CRASHED: "crashed", libvirt.VIR_DOMAIN_PMSUSPENDED: "pmsuspended",
}
ACTIVE_STATES = frozenset({"running", "blocked", "paused", "shutting-down", "pmsuspended", "nostate"})


def runtime_root() -> Path:
    """Where guests' work directories live: ``$KLHARNESS_RUNTIME_DIR`` or ``/var/tmp/klharness``.

    Not under ``~``: QEMU runs as ``libvirt-qemu`` and must traverse the path
    to the overlay and fw_cfg files, and root's home is 0700.
    """
    root = Path(os.environ.get("KLHARNESS_RUNTIME_DIR", "/var/tmp/klharness"))
    root.mkdir(parents=True, exist_ok=True)
    return root


def make_workdir(domain_name: str, run_id: str, root: Path | None = None) -> Path:
    """A fresh 0711 directory for one guest, tagged so the reaper may delete it whole."""
    path = (root or runtime_root()) / domain_name
    if path.exists():
        raise VirtError(f"work directory {path} already exists: another guest of run {run_id} uses the name "
                        "(or a dead run left it; run `klharness cleanup`)")
    path.mkdir(mode=0o711)
    path.chmod(0o711)  # traversable by libvirt-qemu, not listable
    tag = owner_tag(run_id, domain=domain_name)
    (path / WORKDIR_MARKER).write_text(json.dumps(tag) + "\n")
    return path


class Guest:
    """One domain of this run, from launch to teardown.

    Attributes the caller reads: ``name`` (libvirt domain name), ``ssh_port``,
    ``console`` (:class:`ConsoleLog`), ``accel`` (what ran and why),
    ``timings`` (seconds per step, for results), ``saved_image`` (after a save).
    On a remote host (``runtime.remote_host``) the console file is filled by ``console_pump``, files
    the domain reads go through ``stage`` (upload to the host's pool) and a save image is written in
    that pool.
    """

    def __init__(self, conn: Any, spec: GuestSpec, image: ImageArtifact, accel: AccelChoice,
                 runtime: DomainRuntime, workdir: Path, timeouts: Timeouts = DEFAULT_TIMEOUTS,
                 stage: Callable[[Path, str], Path] | None = None) -> None:
        self.conn = conn
        self.spec = spec
        self.image = image
        self.accel = accel
        self.runtime = runtime
        self.workdir = workdir
        self.timeouts = timeouts
        self.console = ConsoleLog(runtime.console_log)
        self.timings: dict[str, float] = {}
        self.saved_image: Path | None = None
        self.torn_down = False
        self.stage = stage
        self.volumes: list[str] = []  # on a remote host: this guest's own volumes, deleted at teardown
        self.console_pump = (ConsolePump(conn, runtime.name, runtime.console_log, timeout=timeouts.libvirt_call)
                             if runtime.remote_host else None)

    @property
    def name(self) -> str:
        return self.runtime.name

    @property
    def ssh_port(self) -> int:
        return self.runtime.ssh_port

    @property
    def ssh_address(self) -> tuple[str, int]:
        return ("127.0.0.1", self.runtime.ssh_port)

    @property
    def ready_marker(self) -> str:
        """The console line that means "sshd listens" for this guest's image."""
        return self.image.ready_marker or READY_MARKER

    @property
    def meta(self) -> RunMetadata:
        return self.runtime.meta

    def update_runtime(self, **changes: Any) -> None:
        """Record a changed port / fw_cfg set after a restore."""
        self.runtime = replace(self.runtime, **changes)

    def __repr__(self) -> str:
        return f"<Guest {self.name} port={self.ssh_port} accel={self.accel.accel}>"

    # -- looking at the domain -------------------------------------------------------------------

    def domain(self) -> Any:
        """The libvirt domain object; VirtError if it no longer exists."""
        try:
            return bounded(lambda: self.conn.lookupByName(self.name), timeout=self.timeouts.libvirt_call,
                           what=f"looking up domain {self.name}")
        except libvirt.libvirtError as err:
            raise libvirt_error(err, f"looking up domain {self.name}") from err

    def _lookup(self) -> Any | None:
        """The domain object, or None when libvirt no longer knows it (bounded)."""
        try:
            return bounded(lambda: self.conn.lookupByName(self.name), timeout=self.timeouts.libvirt_call,
                           what=f"looking up domain {self.name}")
        except libvirt.libvirtError as err:
            if is_no_domain(err):
                return None
            raise libvirt_error(err, f"looking up domain {self.name}") from err

    def state(self) -> str:
        """``running``, ``paused``, ``shutoff``, ``pmsuspended``, ... or ``gone`` (no such domain)."""
        dom = self._lookup()
        if dom is None:
            return "gone"
        try:
            code = bounded(lambda: dom.state()[0], timeout=self.timeouts.libvirt_call,
                           what=f"reading the state of {self.name}")
        except libvirt.libvirtError as err:
            if is_no_domain(err):
                return "gone"
            raise libvirt_error(err, f"reading the state of {self.name}") from err
        return _STATES.get(code, f"state-{code}")

    def stopped_reason(self) -> str | None:
        """Why the guest cannot print anything any more, or None while it runs."""
        st = self.state()
        return None if st in ACTIVE_STATES else st

    def live_xml(self) -> str:
        """The running domain's XML as libvirt sees it (no secrets: fw_cfg is by file)."""
        dom = self.domain()
        return str(bounded(lambda: dom.XMLDesc(0), timeout=self.timeouts.libvirt_call,
                           what=f"dumping the XML of {self.name}"))

    def wait_for_console(self, marker: str | None = None, *, after: int = 0, timeout: float | Deadline | None = None,
                         what: str = "boot") -> float:
        """Wait for ``marker`` (default: the ready marker) on the console after ``after``; seconds taken.

        GuestError on timeout (with the console tail and the accelerator's
        likely-cause hint), on a kernel panic, or when the domain stops.
        """
        return self.console.wait_for(marker or self.ready_marker, after=after, timeout=timeout or self.timeouts.boot,
                                     what=f"guest {self.name}: {what}", stopped=self.stopped_reason,
                                     hint=self.accel.slow_hint)

    def start_attached(self, start: Callable[[int], object], paused_flag: int) -> None:
        """Run a call that starts a QEMU process (create, restore, start) so that its console misses nothing.

        ``start(flags)`` is the libvirt call; with a streamed console it is called with
        ``paused_flag`` (VIR_DOMAIN_START_PAUSED, VIR_DOMAIN_SAVE_PAUSED), the console stream is
        attached, and only then does the guest run.  A file console needs none of that.
        """
        if self.console_pump is None:
            start(0)
            return
        start(paused_flag)
        self.console_pump.attach()
        dom = self.domain()
        try:
            bounded(dom.resume, timeout=self.timeouts.libvirt_call, what=f"resuming {self.name} after attaching "
                    "its console")
        except libvirt.libvirtError as err:
            raise libvirt_error(err, f"resuming {self.name}") from err

    def save_path(self) -> Path:
        """Where a save image goes: the work directory here, the host's ``klharness`` pool on a remote host
        (named after the run, so the run's end deletes it with the other staged files)."""
        if self.runtime.remote_host:
            volume = run_volume("save", self.name, "saved.img")
            if volume not in self.volumes:
                self.volumes.append(volume)
            return Path(POOL_PATH) / volume
        return self.workdir / "saved.img"

    def stage_fwcfg(self, entries: tuple[tuple[str, Path], ...]) -> tuple[tuple[str, Path], ...]:
        """fw_cfg files as the host sees them: ours, or uploaded 0600 into a host that cannot read ours."""
        if self.stage is None:
            return entries
        staged = []
        for n, p in entries:
            volume = run_volume("fw", self.name, p.name)
            staged.append((n, self.stage(p, volume)))
            self.volumes.append(volume)
        return tuple(staged)

    def remove_volumes(self) -> None:
        """Delete this guest's own volumes on a remote host (fw_cfg blobs, save image, overlay)."""
        if self.volumes:
            delete_named_volumes(self.conn, self.volumes)
            self.volumes = []

    # -- ending it ---------------------------------------------------------------------------------

    def destroy(self) -> None:
        """Power the domain off hard; a domain already gone or shut off is fine."""
        dom = self._lookup()
        if dom is None:
            return
        try:
            if dom.isActive():
                bounded(dom.destroy, timeout=self.timeouts.destroy, what=f"destroying {self.name}")
        except libvirt.libvirtError as err:
            if is_no_domain(err) or err.get_error_code() == libvirt.VIR_ERR_OPERATION_INVALID:
                return
            raise libvirt_error(err, f"destroying {self.name}") from err

    def undefine(self) -> None:
        """Remove a persistent definition, its managed-save image and metadata; no-op when transient."""
        dom = self._lookup()
        if dom is None:
            return
        try:
            if dom.isPersistent():
                bounded(lambda: dom.undefineFlags(UNDEFINE_FLAGS), timeout=self.timeouts.libvirt_call,
                        what=f"undefining {self.name}")
        except libvirt.libvirtError as err:
            if is_no_domain(err):
                return
            raise libvirt_error(err, f"undefining {self.name}") from err

    def remove_files(self, keep_console: bool = False) -> None:
        """Delete the work directory (overlay, fw_cfg copies, save images); maybe keep the console log."""
        console = self.console.path
        if keep_console and console.parent == self.workdir:
            for child in self.workdir.iterdir():
                if child not in (console, self.workdir / WORKDIR_MARKER):
                    _remove(child)  # the marker stays: the reaper removes the rest later
        else:
            if self.workdir.exists():
                shutil.rmtree(self.workdir)

    def teardown(self, *, keep_console: bool = False) -> None:
        """Destroy, undefine, remove files — in that order, each step tried even if one before failed.

        The console is a file written by virtlogd (or by the pump, stopped first).
        Raises one VirtError listing every failed step.
        """
        if self.torn_down:
            return
        errors: list[str] = []
        if self.console_pump is not None:
            self.console_pump.detach()
        for step, fn in (("destroy", self.destroy), ("undefine", self.undefine),
                         ("remove files", lambda: self.remove_files(keep_console)),
                         ("remove staged volumes", self.remove_volumes)):
            try:
                fn()
            except Exception as err:  # collected, reported below
                log.warning("teardown of %s: %s failed: %s", self.name, step, err)
                errors.append(f"{step}: {err}")
        self.torn_down = True
        if errors:
            raise VirtError(f"teardown of {self.name} incomplete: " + "; ".join(errors))


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
