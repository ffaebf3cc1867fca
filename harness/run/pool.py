"""The run's guests: pooled ones (booted once in the background, shared by every cell of a guest)
and fresh ones (booted for one destructive cell and released after it).

Why a pool: most cells only read one probe document, so a guest boots once and its probe runs
once; the boots of later guests overlap the tests of earlier ones (``run.parallel`` at a time).
What is kept of each guest afterwards is the artifacts' keep policy (harness.run.artifacts).
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from harness.errors import KlharnessError
from harness.guest.probeguest import ProbeGuest, ProbeRun, boot
from harness.images.artifact import ImageArtifact
from harness.plan.matrix import GuestPlan
from harness.plan.profiles import Profile
from harness.progress.events import GuestPhase, Progress
from harness.results.record import RunRecorder
from harness.run.artifacts import Artifacts
from harness.run.hosts import RunHosts
from harness.run.images import RunImages


@dataclass(frozen=True)
class FreshGuest:
    """One destructive cell's own guest, as the cell will ask for it (:meth:`GuestPool.fresh`)."""

    guest: str
    suffix: str
    persistent: bool = False
    suspend: bool = False


@dataclass
class PoolEntry:
    """One pooled guest: its boot, its one probe run (or why it failed), whether a cell of it failed."""

    future: cf.Future[ProbeGuest] | None = None
    probe: ProbeRun | None = None
    probe_error: BaseException | None = None
    failed: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)


class GuestPool:
    """Boots, shares and releases the run's guests."""

    def __init__(self, plans: dict[str, GuestPlan], profile: Profile, *, hosts: RunHosts, images: RunImages,
                 artifacts: Artifacts, recorder: RunRecorder, progress: Progress, parallel: int) -> None:
        self.plans = plans
        self.profile = profile
        self.hosts = hosts
        self.images = images
        self.artifacts = artifacts
        self.recorder = recorder
        self.progress = progress
        self.entries: dict[str, PoolEntry] = {name: PoolEntry() for name in plans}
        self.fresh_guests: list[ProbeGuest] = []
        self._executor = cf.ThreadPoolExecutor(max_workers=parallel, thread_name_prefix="klh-boot")
        # Releases run beside the tests: a guest's teardown (~1-2 s under TCG: QEMU's exit, undefine,
        # files) is waiting, not work, and the next cell need not wait for it.
        self._releaser = cf.ThreadPoolExecutor(max_workers=parallel, thread_name_prefix="klh-release")
        self._releases: list[tuple[str, cf.Future[None]]] = []
        self._releases_lock = threading.Lock()
        # Fresh guests booted one cell ahead: the next destructive cell's guest boots while this one runs.
        self._fresh_queue: list[FreshGuest] = []
        self._fresh_ahead: dict[FreshGuest, cf.Future[ProbeGuest]] = {}

    def skip_reason(self, guest: str) -> str | None:
        """Why a guest's KL cells cannot run under this profile (None when they can)."""
        p = self.plans[guest]
        if p.config.kl.enabled and self.profile.kl_exposure == "impossible":
            return self.profile.impossible_reason
        return None

    def prefetch(self, guests: list[str]) -> None:
        """Start booting guests in the background, ``run.parallel`` at a time."""
        for name in guests:
            entry = self.entries[name]
            if entry.future is None and self.skip_reason(name) is None:
                entry.future = self._executor.submit(self._boot, name)

    def pooled(self, name: str) -> ProbeGuest:
        """The shared guest for ``name`` (booted once; CapabilityError means skip)."""
        entry = self.entries[name]
        with entry.lock:
            if entry.future is None:
                entry.future = self._executor.submit(self._boot, name)
        return entry.future.result()

    def probe(self, name: str) -> ProbeRun:
        """The probe document of the pooled guest, run once and shared by every check test."""
        entry = self.entries[name]
        guest = self.pooled(name)
        with entry.lock:
            if entry.probe is None and entry.probe_error is None:
                self.progress.emit(GuestPhase(name, "probe"))
                try:
                    entry.probe = guest.probe()
                    self.artifacts.write(guest.guest.spec.name, "probe.json", entry.probe.raw)
                    self.recorder.set_guest(name, probe=_json_or_raw(entry.probe.raw),
                                            probe_seconds=round(entry.probe.seconds, 3))
                except KlharnessError as err:
                    entry.probe_error = err
            if entry.probe_error is not None:
                raise entry.probe_error
            assert entry.probe is not None
            return entry.probe

    def plan_fresh(self, queue: list[FreshGuest]) -> None:
        """The fresh guests the run's cells will ask for, in their order: each is booted while the cell
        before it runs (one ahead, behind the pooled boots), so a lifecycle cell rarely waits for a boot."""
        self._fresh_queue = list(queue)
        self._boot_ahead()

    def fresh(self, name: str, suffix: str, *, persistent: bool = False, suspend: bool = False) -> ProbeGuest:
        """A dedicated guest for a destructive test (torn down by :meth:`release`): the one booted ahead
        for it, or one booted now."""
        future = self._fresh_ahead.pop(FreshGuest(name, suffix, persistent, suspend), None)
        self._boot_ahead()  # the next cell's guest boots while this one runs
        if future is not None:
            pg = future.result()
        else:
            self._settle(f"{name}{suffix}")  # a guest of the same name (the naive mode's) must be gone first
            pg = self._boot(name, suffix=suffix, persistent=persistent, suspend=suspend)
        self.fresh_guests.append(pg)
        return pg

    def _boot_ahead(self) -> None:
        while self._fresh_queue and not self._fresh_ahead:
            key = self._fresh_queue.pop(0)
            if self.skip_reason(key.guest) is None:
                self._fresh_ahead[key] = self._executor.submit(self._boot, key.guest, suffix=key.suffix,
                                                               persistent=key.persistent, suspend=key.suspend)

    def release(self, pg: ProbeGuest, *, failed: bool) -> None:
        """Tear one guest down, or keep it (domain, disk, artifacts) as the keep policy says — in the
        background: the run's teardown waits for every release and records the ones that failed."""
        with contextlib.suppress(ValueError):
            self.fresh_guests.remove(pg)  # released: the run's teardown no longer owes it a release
        future = self._releaser.submit(self._release, pg, failed=failed)
        with self._releases_lock:
            self._releases.append((pg.guest.spec.name, future))

    def wait_for_releases(self) -> None:
        """Wait for every release started so far; one error naming each guest whose teardown failed."""
        with self._releases_lock:
            pending, self._releases = self._releases, []
        errors = []
        for name, future in pending:
            try:
                future.result()
            except Exception as err:  # each guest's failure is reported, none hides another
                errors.append(f"{name}: {err}")
        if errors:
            raise KlharnessError("releasing guests failed: " + "; ".join(errors))

    def _settle(self, guest: str) -> None:
        """Wait until the releases of ``guest`` started so far have ended (their errors stay for the teardown)."""
        with self._releases_lock:
            pending = [f for name, f in self._releases if name == guest]
        cf.wait(pending)

    def _release(self, pg: ProbeGuest, *, failed: bool) -> None:
        keep = self.artifacts.keeps(failed=failed)
        try:
            pg.teardown(keep=keep)
        finally:
            self.recorder.set_guest(pg.guest.spec.name, timings=_rounded(pg.timings), kept=keep)
            self.artifacts.settle(pg.guest.spec.name, kept=keep)

    def mark_failed(self, guest: str) -> None:
        """A cell of this pooled guest failed: keep it under ``keep: failed``."""
        if guest in self.entries:
            self.entries[guest].failed = True

    def teardown_steps(self) -> list[tuple[str, Callable[[], object]]]:
        """The pool's part of the run's teardown, in order: no new boots, every guest released (side by
        side, ``run.parallel`` at a time), and the wait for all of them."""
        def release_all() -> None:
            for pg in list(self.fresh_guests):  # a fresh guest still here lost its test mid-way
                self.release(pg, failed=True)
            for future in self._fresh_ahead.values():  # booted ahead for a cell that never ran
                if future.done() and not future.cancelled() and future.exception() is None:
                    self.release(future.result(), failed=False)
            self._fresh_ahead.clear()
            for name, pg in self._booted().items():
                self.release(pg, failed=self.entries[name].failed)

        return [
            ("stop background boots", lambda: self._executor.shutdown(wait=True, cancel_futures=True)),
            ("release the guests", release_all),
            ("wait for the guests' releases", self.wait_for_releases),
            ("stop the release threads", lambda: self._releaser.shutdown(wait=True)),
        ]

    def _boot(self, name: str, suffix: str = "", **kw: bool) -> ProbeGuest:
        host, ctx = self.hosts.for_guest(name)
        p = self.plans[name]
        self.progress.emit(GuestPhase(f"{name}{suffix}", "image", p.spec.image))
        pg = boot(ctx, p, self.images.for_host(p.spec.image, host, ctx), suffix=suffix, **kw)
        self._record(pg, host)
        return pg

    def _booted(self) -> dict[str, ProbeGuest]:
        """The pooled guests that finished booting (the others left nothing to release)."""
        out = {}
        for name, entry in self.entries.items():
            f = entry.future
            if f is not None and f.done() and not f.cancelled() and f.exception() is None:
                out[name] = f.result()
        return out

    def _record(self, pg: ProbeGuest, host: str) -> None:
        name = pg.guest.spec.name
        with contextlib.suppress(KlharnessError):
            self.artifacts.write(name, "domain.xml", pg.guest.live_xml())
        self.recorder.set_guest(name, plan=pg.plan.name, domain=pg.name, backend=pg.plan.backend, host=host,
                                spec_key=pg.guest.meta.spec_key, accel=pg.guest.accel.accel,
                                image=pg.image.key, kernel=_kernel(pg.image), timings=_rounded(pg.timings),
                                helper=pg.helper, helper_timings=pg.helper_timings, vmm=pg.plan.vmm,
                                artifacts=str(self.artifacts.guest_dir(name)))


def _kernel(image: ImageArtifact) -> str | None:
    """Which kernel the guest booted, for the record: its release and whose it is."""
    if not image.kernel_version:
        return None  # a disk image's own kernel (cloud): whatever its boot loader picks
    return f"{image.kernel_version} ({image.kernel_origin})" if image.kernel_origin else image.kernel_version


def _rounded(t: dict[str, float]) -> dict[str, float]:
    return {k: round(v, 3) for k, v in t.items()}


def _json_or_raw(raw: str) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return raw
