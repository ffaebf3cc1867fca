"""One catalogue run: config + profile + hosts + images + a pool of guests + the run record.

Why a session object behind thin fixtures (the pytest tmp_path pattern): the pool outlives
single tests, boots guests in the background while earlier tests run, and everything must be
torn down in a fixed order even when pytest is interrupted.  The session only composes; each job
has its module: the hosts (:mod:`harness.run.hosts`), the images (:mod:`harness.run.images`), the
guests (:mod:`harness.run.pool`), what is kept of them (:mod:`harness.run.artifacts`).  The plugin
wires it to pytest.
"""

from __future__ import annotations

import functools
import logging
import shutil
from collections.abc import Callable
from pathlib import Path

from harness.config.model import Config, HostConfig
from harness.errors import VirtError
from harness.host.check import host_check
from harness.kl.emuconfig import private_runtime_dir
from harness.plan.matrix import GuestPlan, plan
from harness.plan.profiles import Profile
from harness.progress.events import NULL_PROGRESS, Progress
from harness.redact import redact_uri
from harness.results.record import RunRecorder, new_run_id
from harness.run.artifacts import Artifacts
from harness.run.hosts import RunHosts
from harness.run.images import RunImages
from harness.run.pool import GuestPool
from harness.timeouts import from_environment, use
from harness.virt.connection import is_local
from harness.virt.peer import close_run_peers
from harness.virt.registry import RunGuests
from harness.virt.simhost import stop_run_sim_hosts
from harness.virt.storage import delete_volumes, run_volume_prefixes

log = logging.getLogger(__name__)


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
        self.recorder = RunRecorder(self.results, self.run_id, {
            "config": config.source, "profile": profile.name, "profile_source": profile.source,
            "uri": redact_uri(self.uri),
        }, persist=persist)
        # Signal handlers go in now, on the main thread, before any guest boots in the background:
        # a SIGTERM to the run then tears every guest down, pooled ones included.
        self.registry = RunGuests(self.run_id, keep_console=True)
        self.registry.__enter__()
        self.run_hosts = RunHosts(self.hosts, config, self.plans, run_id=self.run_id, timeouts=self.timeouts,
                                  registry=self.registry, recorder=self.recorder, results=self.results,
                                  progress=progress)
        self.images = RunImages(config, self.recorder)
        self.pool = GuestPool(self.plans, profile, hosts=self.run_hosts, images=self.images,
                              artifacts=Artifacts(self.results, self.keep), recorder=self.recorder,
                              progress=progress, parallel=config.run.parallel)

    # -- the end ----------------------------------------------------------------------------------

    def close(self, status: str) -> None:
        """Tear everything down as an ordered list of independent steps; record every failure; never raise.

        Each step runs whatever the previous one did (a failed volume delete must not leave a
        peer daemon running), and its error goes into the record as ``teardown_errors``.
        """
        errors: list[str] = []
        steps: list[tuple[str, Callable[[], object]]] = [
            *self.pool.teardown_steps(),
            ("tear down the run's guests", self._teardown_registry),
            *((f"delete staged files (fw_cfg blobs, save images) on {h}",
               functools.partial(delete_volumes, ctx.conn, run_volume_prefixes(self.run_id)))
              for h, ctx in self.run_hosts.connected() if ctx.stage is not None),  # they may hold secrets
            ("stop the run's peer daemons", self._stop_peers),  # after the guests: migrated ones live there
            *((f"close the SSH link to {h}", link.close) for h, link in self.run_hosts.links()),
            ("stop the run's simulated remote hosts", self._stop_sim_hosts),  # after their volumes went
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

    def _stop_sim_hosts(self) -> None:
        errors = stop_run_sim_hosts(self.run_id)
        if errors:
            raise VirtError("; ".join(errors))

    def _teardown_registry(self) -> None:
        errors = self.registry.teardown_all()
        self.registry.__exit__(None, None, None)
        if errors:
            raise VirtError("; ".join(errors))


def _local_host_kl_usable(uri: str) -> bool:
    """Whether this host's own facts allow native Key Locker cells (for kl_backend: auto).

    Read before anything boots, without libvirt: the CPU, the kernel and KVM must raise no reason.
    A remote URI is judged by its own host-check, not this machine's: auto stays emulated there.
    """
    if not is_local(uri):
        return False
    native = host_check(None, uri=uri)["verdicts"]["native"]
    return native["possible"] is not False and not native["reasons"]
