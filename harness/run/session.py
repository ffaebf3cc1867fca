"""One catalogue run: config + profile + a pool of booted guests + the run record.

Why a session object behind thin fixtures (the pytest tmp_path pattern): the
pool outlives single tests, boots guests in the background while earlier
tests run, and must tear everything down in a fixed order even when pytest
is interrupted.  The plugin only wires it to pytest; the hosts (connections,
contexts, placement) are :class:`harness.run.hosts.RunHosts`.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import functools
import json
import logging
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.config.model import Config, HostConfig
from harness.errors import KlharnessError, VirtError
from harness.guest.probeguest import ProbeGuest, ProbeRun, RunContext, boot
from harness.host.check import host_check
from harness.images import build_image
from harness.images.artifact import ImageArtifact
from harness.kl.emuconfig import private_runtime_dir
from harness.plan.matrix import GuestPlan, plan
from harness.plan.profiles import Profile
from harness.progress.events import NULL_PROGRESS, GuestPhase, Progress
from harness.redact import redact_uri
from harness.results.record import RunRecorder, new_run_id
from harness.run.hosts import RunHosts
from harness.timeouts import from_environment, use
from harness.virt.connection import is_local
from harness.virt.peer import close_run_peers
from harness.virt.registry import RunGuests
from harness.virt.storage import delete_volumes, stage_image

log = logging.getLogger(__name__)


@dataclass
class PoolEntry:
    future: cf.Future[ProbeGuest] | None = None
    probe: ProbeRun | None = None
    probe_error: BaseException | None = None
    failed: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)


class KlSession:
    """Everything one run of the catalogue shares."""

    def __init__(self, config: Config, profile: Profile, *, uri: str | None = None, keep: str | None = None,
                 results_root: Path | None = None, run_id: str | None = None, persist: bool = True,
                 host_kl_usable: Callable[[], bool] | None = None, progress: Progress = NULL_PROGRESS) -> None:
        self.config = config
        self.progress = progress  # told each guest's phases (harness.progress)
        self.profile = profile
        self.hosts = ((HostConfig("local", uri),) if uri else config.all_hosts())
        self.uri = self.hosts[0].uri
        self.keep = keep or config.run.keep
        self.run_id = run_id or new_run_id()
        self.results = (results_root or Path(config.run.results)).resolve() / self.run_id
        self.timeouts = from_environment(config.timeouts)
        use(self.timeouts)  # the builds this run starts (images, klhelper.ko) honour its timeouts: too
        # kl_backend auto means native where the host can run Key Locker: ask it only when some guest says auto.
        usable = False
        if any((g.kl_backend or config.run.kl_backend) == "auto" for g in config.guests):
            usable = (host_kl_usable or functools.partial(_local_host_kl_usable, self.uri))()
        self.plans: dict[str, GuestPlan] = {p.name: p for p in plan(config, host_kl_usable=usable)}
        self.pool: dict[str, PoolEntry] = {name: PoolEntry() for name in self.plans}
        self._images: dict[str, ImageArtifact] = {}
        self._staged: dict[str, ImageArtifact] = {}
        self._executor = cf.ThreadPoolExecutor(max_workers=config.run.parallel, thread_name_prefix="klh-boot")
        self.recorder = RunRecorder(self.results, self.run_id, {
            "config": config.source, "profile": profile.name, "profile_source": profile.source,
            "uri": redact_uri(self.uri),
        }, persist=persist)
        self.fresh_guests: list[ProbeGuest] = []
        # Signal handlers go in now, on the main thread, before any guest boots in the background:
        # a SIGTERM to the run then tears every guest down, pooled ones included.
        self.registry = RunGuests(self.run_id, keep_console=True)
        self.registry.__enter__()
        self.run_hosts = RunHosts(self.hosts, config, self.plans, run_id=self.run_id, timeouts=self.timeouts,
                                  registry=self.registry, recorder=self.recorder, results=self.results,
                                  progress=progress)

    # -- hosts ------------------------------------------------------------------------------------

    def context(self) -> RunContext:
        """The first host's context (see :meth:`RunHosts.context`)."""
        return self.run_hosts.context(self.hosts[0].name)

    def image(self, name: str) -> ImageArtifact:
        if name not in self._images:
            start = time.monotonic()
            self._images[name] = build_image(name, options=self.config.image_options.get(name))
            took = time.monotonic() - start
            self.recorder.update(lambda d: d.setdefault("images", {}).update(
                {name: {"key": self._images[name].key, "seconds": round(took, 2)}}))
        return self._images[name]

    # -- the pool ---------------------------------------------------------------------------------

    def skip_reason(self, guest: str) -> str | None:
        """Why a guest's KL cells cannot run under this profile (None when they can)."""
        p = self.plans[guest]
        if p.config.kl.enabled and self.profile.kl_exposure == "impossible":
            return self.profile.impossible_reason
        return None

    def prefetch(self, guests: list[str]) -> None:
        """Start booting guests in the background, ``run.parallel`` at a time."""
        for name in guests:
            entry = self.pool[name]
            if entry.future is None and self.skip_reason(name) is None:
                entry.future = self._executor.submit(self._boot_pooled, name)

    def image_for(self, name: str, host: str, ctx: RunContext) -> ImageArtifact:
        """The image as ``host`` sees it: staged through its storage pool when it cannot read ours."""
        image = self.image(name)
        if ctx.stage is None:
            return image
        with self.run_hosts.lock:
            key = f"{host}/{name}"
            if key not in self._staged:
                start = time.monotonic()
                self._staged[key] = stage_image(ctx.conn, image)
                took = round(time.monotonic() - start, 2)
                self.recorder.update(lambda d: d.setdefault("staged_images", {}).update({key: took}))
            return self._staged[key]

    def _boot_pooled(self, name: str) -> ProbeGuest:
        host, ctx = self.run_hosts.for_guest(name)
        p = self.plans[name]
        self.progress.emit(GuestPhase(name, "image", p.spec.image))
        pg = boot(ctx, p, self.image_for(p.spec.image, host, ctx))
        self._record_guest(pg, host)
        return pg

    def pooled(self, name: str) -> ProbeGuest:
        """The shared guest for ``name`` (booted once; CapabilityError means skip)."""
        entry = self.pool[name]
        with entry.lock:
            if entry.future is None:
                entry.future = self._executor.submit(self._boot_pooled, name)
        return entry.future.result()

    def probe(self, name: str) -> ProbeRun:
        """The probe document of the pooled guest, run once and shared by every check test."""
        entry = self.pool[name]
        guest = self.pooled(name)
        with entry.lock:
            if entry.probe is None and entry.probe_error is None:
                self.progress.emit(GuestPhase(name, "probe"))
                try:
                    entry.probe = guest.probe()
                    self._write_artifact(guest.guest.spec.name, "probe.json", entry.probe.raw)
                    self.recorder.set_guest(name, probe=_json_or_raw(entry.probe.raw),
                                            probe_seconds=round(entry.probe.seconds, 3))
                except KlharnessError as err:
                    entry.probe_error = err
            if entry.probe_error is not None:
                raise entry.probe_error
            assert entry.probe is not None
            return entry.probe

    def fresh(self, name: str, suffix: str, *, persistent: bool = False, suspend: bool = False) -> ProbeGuest:
        """A dedicated guest for a destructive test (torn down by :meth:`release`)."""
        host, ctx = self.run_hosts.for_guest(name)
        p = self.plans[name]
        self.progress.emit(GuestPhase(f"{name}{suffix}", "image", p.spec.image))
        pg = boot(ctx, p, self.image_for(p.spec.image, host, ctx), suffix=suffix, persistent=persistent,
                  suspend=suspend)
        self._record_guest(pg, host)
        self.fresh_guests.append(pg)
        return pg

    def release(self, pg: ProbeGuest, *, failed: bool) -> None:
        keep = self.keep == "all" or (self.keep == "failed" and failed)
        try:
            pg.teardown(keep=keep)
        finally:
            self.recorder.set_guest(pg.guest.spec.name, timings=_rounded(pg.timings), kept=keep)
            if not keep:
                shutil.rmtree(self.results / "guests" / pg.guest.spec.name, ignore_errors=True)
            with contextlib.suppress(ValueError):
                self.fresh_guests.remove(pg)

    def mark_failed(self, guest: str) -> None:
        if guest in self.pool:
            self.pool[guest].failed = True

    def _record_guest(self, pg: ProbeGuest, host: str) -> None:
        name = pg.guest.spec.name
        with contextlib.suppress(KlharnessError):
            self._write_artifact(name, "domain.xml", pg.guest.live_xml())
        self.recorder.set_guest(name, plan=pg.plan.name, domain=pg.name, backend=pg.plan.backend, host=host,
                                spec_key=pg.guest.meta.spec_key, accel=pg.guest.accel.accel,
                                image=pg.image.key, timings=_rounded(pg.timings), helper=pg.helper,
                                helper_timings=pg.helper_timings, vmm=pg.plan.vmm,
                                artifacts=str(self.results / "guests" / name))

    def _write_artifact(self, guest: str, filename: str, text: str) -> None:
        d = self.results / "guests" / guest
        d.mkdir(parents=True, exist_ok=True)
        (d / filename).write_text(text)

    # -- the end ----------------------------------------------------------------------------------

    def close(self, status: str) -> None:
        """Tear everything down as an ordered list of independent steps; record every failure; never raise.

        Each step runs whatever the previous one did (a failed volume delete must not leave a
        peer daemon running), and its error goes into the record as ``teardown_errors``.
        """
        errors: list[str] = []
        steps: list[tuple[str, Callable[[], object]]] = [
            ("stop background boots", lambda: self._executor.shutdown(wait=True, cancel_futures=True)),
            *((f"release {pg.name}", functools.partial(self.release, pg, failed=True))
              for pg in list(self.fresh_guests)),
            *((f"release {name}", functools.partial(self.release, pg, failed=self.pool[name].failed))
              for name, pg in _booted(self.pool).items()),
            ("tear down the run's guests", self._teardown_registry),
            *((f"delete staged fw_cfg blobs on {h}", functools.partial(delete_volumes, ctx.conn,
                                                                       f"fw-klh-{self.run_id}-"))
              for h, ctx in self.run_hosts.connected() if ctx.stage is not None),  # they may hold secrets
            ("stop the run's peer daemons", self._stop_peers),  # after the guests: migrated ones live there
            ("remove the run's private files", functools.partial(shutil.rmtree, private_runtime_dir(self.run_id),
                                                                 ignore_errors=True)),
        ]
        for what, step in steps:
            try:
                step()
            except Exception as err:
                errors.append(f"{what}: {type(err).__name__}: {err}")
                log.error("teardown step %r failed: %s", what, err)
        if errors:
            self.recorder.update(lambda d: d.update(teardown_errors=errors))
        self.recorder.finish(status)

    def _stop_peers(self) -> None:
        errors = close_run_peers(self.run_id)
        if errors:
            raise VirtError("; ".join(errors))

    def _teardown_registry(self) -> None:
        errors = self.registry.teardown_all()
        self.registry.__exit__(None, None, None)
        if errors:
            raise VirtError("; ".join(errors))


def _booted(pool: dict[str, PoolEntry]) -> dict[str, ProbeGuest]:
    """The pooled guests that finished booting (the others left nothing to release)."""
    out = {}
    for name, entry in pool.items():
        f = entry.future
        if f is not None and f.done() and not f.cancelled() and f.exception() is None:
            out[name] = f.result()
    return out


def _local_host_kl_usable(uri: str) -> bool:
    """Whether this host's own facts allow native Key Locker cells (for kl_backend: auto).

    Read before anything boots, without libvirt: the CPU, the kernel and KVM must raise no reason.
    A remote URI is judged by its own host-check, not this machine's: auto stays emulated there.
    """
    if not is_local(uri):
        return False
    native = host_check(None, uri=uri)["verdicts"]["native"]
    return native["possible"] is not False and not native["reasons"]


def _rounded(t: dict[str, float]) -> dict[str, float]:
    return {k: round(v, 3) for k, v in t.items()}


def _json_or_raw(raw: str) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return raw
