"""The run's libvirt hosts: one connection and one RunContext per host, made on first use.

Why apart from the session: connecting is its own job (a local peer daemon started on demand, the
capability cache checked, leftovers reaped, the host checked and recorded, files staged where the
host cannot read ours), and every host goes through it the same way — the first one included, so a
``local-peer`` or ``stage_files`` first host behaves as it would second.  Placement asks every host
once, then says which host boots which guest.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from harness import cbuild
from harness.config.model import LOCAL_PEER, SIM_REMOTE, Config, HostConfig
from harness.errors import CapabilityError, KlharnessError
from harness.guest.probeguest import RunContext
from harness.guest.ssh import KeyPair, generate_keypair, tcp_dial
from harness.host import check as hostcheck
from harness.host.link import HostLink
from harness.kl.emuconfig import private_runtime_dir
from harness.plan.matrix import GuestPlan
from harness.plan.placement import HostCapability, Placement, place
from harness.progress.events import Progress
from harness.redact import redact_uri
from harness.results.record import RunRecorder
from harness.ssh_target import SshTarget
from harness.timeouts import Timeouts
from harness.virt.accel import choose_accel
from harness.virt.capcache import require_stable
from harness.virt.connection import connect_resilient, is_local
from harness.virt.metadata import owner_tag
from harness.virt.peer import run_peer
from harness.virt.reaper import reap
from harness.virt.registry import RunGuests
from harness.virt.simhost import start_sim_host
from harness.virt.storage import stage_file, tag_run


class RunHosts:
    """Every host of one run, connected once each (a host that failed fails the same way again)."""

    def __init__(self, hosts: tuple[HostConfig, ...], config: Config, plans: dict[str, GuestPlan], *, run_id: str,
                 timeouts: Timeouts, registry: RunGuests, recorder: RunRecorder, results: Path,
                 progress: Progress) -> None:
        self.hosts = hosts
        self.config = config
        self.plans = plans
        self.run_id = run_id
        self.timeouts = timeouts
        self.registry = registry
        self.recorder = recorder
        self.results = results
        self.progress = progress
        self.lock = threading.Lock()
        self.placement_lock = threading.Lock()  # placement connects every host: once, whoever asks first
        self._contexts: dict[str, RunContext] = {}
        self._errors: dict[str, BaseException] = {}
        self._checks: dict[str, dict[str, Any]] = {}
        self._shared_parts: tuple[KeyPair, Path] | None = None
        self._placement: Placement | None = None
        self._links: dict[str, HostLink] = {}

    def context(self, host: str) -> RunContext:
        """Connect to one host, check it, reap its leftovers; once per host. The run's SSH key, probe
        and registry are shared by all hosts."""
        with self.lock:
            if host in self._contexts:
                return self._contexts[host]
            if host in self._errors:
                raise self._errors[host]
            try:
                self._contexts[host] = self._connect(next(h for h in self.hosts if h.name == host))
            except BaseException as err:
                self._errors[host] = err
                raise
            return self._contexts[host]

    def connected(self) -> Iterator[tuple[str, RunContext]]:
        """The hosts connected so far (what teardown has to clean up)."""
        yield from list(self._contexts.items())

    def for_guest(self, guest: str) -> tuple[str, RunContext]:
        """The host (name, context) that runs ``guest``; CapabilityError (a skip) when none can."""
        if len(self.hosts) == 1:
            return self.hosts[0].name, self.context(self.hosts[0].name)
        where = self.placement()
        if guest in where.unplaced:
            raise CapabilityError(where.unplaced[guest])
        host = where.host_of[guest]
        return host, self.context(host)

    def placement(self) -> Placement:
        """Which host boots which guest (computed once, after every host answered).

        A host that cannot be reached (down, wrong key, no libvirt) is left out with its reason in the
        record (``hosts_down``): the other hosts take its guests.  Only when none answers does every
        guest fail, with the first host's error.
        """
        with self.placement_lock:
            if self._placement is None:
                caps = []
                down: dict[str, str] = {}
                for h in self.hosts:
                    try:
                        self.context(h.name)  # connects and checks the host once
                    except KlharnessError as err:
                        down[h.name] = f"{type(err).__name__}: {err}"
                        continue
                    native = self._checks.get(h.name, {}).get("verdicts", {}).get("native", {})
                    caps.append(HostCapability(h.name, native.get("possible") is True))
                if not caps:
                    raise self._errors[self.hosts[0].name]
                placement = self._placement = place(list(self.plans.values()), caps, self.config)
                self.recorder.update(lambda d: d.update(placement=dict(placement.host_of),
                                                        unplaced=dict(placement.unplaced), hosts_down=down))
            return self._placement

    def _shared(self) -> tuple[KeyPair, Path]:
        if self._shared_parts is None:
            self._shared_parts = (generate_keypair(private_runtime_dir(self.run_id) / "ssh",
                                                   f"klharness-{self.run_id}"), cbuild.build("klprobe"))
        return self._shared_parts

    def links(self) -> Iterator[tuple[str, HostLink]]:
        """The SSH links to remote hosts opened so far (closed at the run's end)."""
        yield from list(self._links.items())

    def _uri(self, cfg: HostConfig) -> str:
        if cfg.uri == LOCAL_PEER:
            return run_peer(self.run_id, timeouts=self.timeouts).uri
        if cfg.uri == SIM_REMOTE:
            return start_sim_host(self.run_id, cfg.name, timeouts=self.timeouts).uri
        return cfg.uri

    def _connect(self, cfg: HostConfig) -> RunContext:
        start = time.monotonic()
        uri = self._uri(cfg)
        local = is_local(uri)
        link = None
        if not local and (target := SshTarget.from_uri(uri)) is not None:
            link = self._links[cfg.name] = HostLink(target, self.timeouts)
            link.session()  # fail here, with the SSH reason, before libvirt's own login says less
        conn = connect_resilient(uri, timeout=self.timeouts.libvirt_connect)
        require_stable(conn, local=local, uri=redact_uri(uri))  # fail fast, not 106 creation timeouts
        reaped = [r.describe() for r in reap(conn, local=local)]  # a remote host: its dead runs' domains, volumes
        keypair, probe = self._shared()
        facts = hostcheck.run_facts(conn, link=link)
        # a remote host's own KVM facts, when they were read there, decide auto as ours do here
        remote_kvm = None if local else facts.get("host_check", {}).get("kvm")
        accel = choose_accel(self.config.run.accel, local=local, remote_kvm=remote_kvm)
        facts["accel"] = {"accel": accel.accel, "reason": accel.reason}
        facts["name"] = cfg.name
        self._checks[cfg.name] = facts.get("host_check", {})
        first = cfg is self.hosts[0]
        if first:
            self.recorder.update(lambda d: d.update(host=facts, reaped=reaped))
        else:
            self.recorder.update(lambda d: d.setdefault("other_hosts", {}).update(
                {cfg.name: {"uri": redact_uri(uri), "accel": accel.accel, "host_check": facts.get("host_check"),
                            "reaped": reaped}}))
        # a remote host shares no files with us: everything a guest reads is staged there
        stage = functools.partial(_stage_private, conn) if cfg.stage_files or not local else None
        if stage is not None:
            tag_run(conn, self.run_id, owner_tag(self.run_id), private_runtime_dir(self.run_id))
        ctx = RunContext(self.run_id, conn, keypair, self.timeouts, self.registry, probe, accel,
                         self.results / "guests", stage, self.progress, link.dial if link else tcp_dial)
        took = time.monotonic() - start
        self.recorder.update(lambda d: d.setdefault("timings", {}).setdefault("setup_per_host", {}).update(
            {cfg.name: round(took, 3)}))
        if first:
            self.recorder.update(lambda d: d.setdefault("timings", {}).update(setup=took))
        return ctx


def _stage_private(conn: Any, path: Path, volume: str) -> Path:
    return stage_file(conn, path, volume, mode=0o600)
