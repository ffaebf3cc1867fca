"""A booted guest the harness can probe: libvirt domain + SSH session + the probe inside.

Why this layer: the run command and the pytest catalogue both need "boot this
plan, get a shell, run klprobe, survive lifecycle events" with the same
timeouts, the same secret handling and the same artefacts; harness.virt knows
domains, harness.guest.ssh knows sessions, this module joins them for Key Locker.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from harness.errors import GuestError, ProbeOutputError, SSHError
from harness.guest.ssh import Dial, KeyPair, Session, tcp_dial
from harness.images.artifact import FWCFG_AUTHORIZED_KEY, FWCFG_KLEMU_CONF, ImageArtifact
from harness.kl import emuconfig
from harness.kl.observations import Observation, ProbeDocument, parse_probe_output, with_vmm_provenance
from harness.plan.matrix import GuestPlan
from harness.progress.events import NULL_PROGRESS, GuestPhase, Progress
from harness.timeouts import Timeouts
from harness.virt.accel import AccelChoice
from harness.virt.guest import Guest
from harness.virt.launch import launch
from harness.virt.registry import RunGuests
from harness.virt.spec import FwCfgEntry
from harness.wait import Deadline

log = logging.getLogger(__name__)

REMOTE_PROBE = "/tmp/klprobe"
REMOTE_HANDLE = "/tmp/klh-handle"


@dataclass
class RunContext:
    """What every guest of one run shares."""

    run_id: str
    conn: Any
    keypair: KeyPair
    timeouts: Timeouts
    registry: RunGuests
    probe_binary: Path
    accel: AccelChoice
    artifacts: Path  # results/<run>/guests
    stage: Callable[[Path, str], Path] | None = None  # upload a file to the host (hosts that can't read ours)
    progress: Progress = NULL_PROGRESS  # told when a guest starts booting and connecting (harness.progress)
    dial: Dial = tcp_dial  # how to reach a guest's SSH forward: here, or through a remote host's SSH link


@dataclass
class ProbeRun:
    document: ProbeDocument
    raw: str
    seconds: float


@dataclass
class ProbeGuest:
    """One boot of a plan, reachable over SSH, with klprobe uploaded."""

    plan: GuestPlan
    guest: Guest
    ctx: RunContext
    image: ImageArtifact
    secret: emuconfig.VmSecret | None
    session: Session | None = None
    timings: dict[str, float] = field(default_factory=dict)
    helper: str | None = None  # what loading klhelper did, when the plan asks for it
    helper_loaded: bool = False
    helper_timings: dict[str, Any] = field(default_factory=dict)  # IWKey backup/restore cycles (klhelper)

    @property
    def name(self) -> str:
        return self.guest.name

    def connect(self, deadline: Deadline | None = None) -> Session:
        """(Re)connect SSH and make sure the probe is in place (a reboot empties /tmp).

        ``deadline``: what is left of a boot budget already being spent (the first boot); a reconnect
        after an event gets a full ``Timeouts.boot`` for the SSH greeting.
        """
        if self.session is not None:
            self.session.close()
        start = time.monotonic()
        self.session = Session.connect(
            "127.0.0.1", self.guest.ssh_port, user=self.image.ssh_user, key=self.ctx.keypair,
            host_key=self.image.host_key, timeouts=self.ctx.timeouts,
            deadline=deadline or Deadline(self.ctx.timeouts.boot, "SSH reconnect"),
            detail=lambda: "console tail:\n" + self.guest.console.tail(20), dial=self.ctx.dial)
        self.timings["ssh_connect"] = time.monotonic() - start
        start = time.monotonic()
        present = self.session.run(["test", "-x", REMOTE_PROBE], timeout=self.ctx.timeouts.exec)
        if present.returncode != 0:
            self.session.upload(self.ctx.probe_binary.read_bytes(), REMOTE_PROBE)
            if self.plan.helper:
                self._load_helper(self.session)  # a new boot: the ring-0 helper is gone too
        self.timings["probe_upload"] = time.monotonic() - start
        return self.session

    def _load_helper(self, session: Session) -> None:
        """Build and insmod klhelper (lab): it sets CR4.KL, which a stock guest kernel never does."""
        from harness.guest import klhelper

        result = klhelper.build_and_load(session, params=self.plan.config.helper_params, image=self.image)
        self.timings["helper_build"] = result.build_seconds
        self.helper = result.describe()
        self.helper_loaded = result.loaded
        if not result.loaded:
            log.warning("guest %s: %s", self.name, result.describe())
            return
        self.helper_timings = {**klhelper.timings(session), "clock": self.cycle_clock()}

    def cycle_clock(self) -> str:
        """What klhelper's cycle counts are cycles of: silicon's TSC, or a VMM's emulation of it."""
        if self.plan.vmm == "qemu-kl":
            return "the vCPU's TSC under qemu-kl's TCG (host time scaled: not silicon cycles)"
        return f"the TSC of the CPU that ran it ({self.guest.accel.accel})"

    def _session(self) -> Session:
        if self.session is None or not self.session.alive:
            return self.connect()
        return self.session

    def shell(self) -> Session:
        """The guest's SSH session, connected if it is not (never a needless reconnect)."""
        return self._session()

    def probe(self, *args: str, timing: bool = True) -> ProbeRun:
        """Run ``klprobe run`` (or another probe command) and parse its document."""
        argv = [REMOTE_PROBE, *(args or ("run",))]
        if not timing and "run" in argv:
            argv.append("--no-timing")
        start = time.monotonic()
        res = self._session().run(argv, timeout=self.ctx.timeouts.probe)
        took = time.monotonic() - start
        if res.timed_out:
            raise GuestError(f"guest {self.name}: klprobe did not finish within {self.ctx.timeouts.probe:.0f}s "
                             "(raise timeouts.probe for slow TCG hosts)")
        if res.returncode not in (0, 1):
            raise ProbeOutputError(f"guest {self.name}: {res.describe()}")
        doc = parse_probe_output(res.stdout, f"guest {self.name}")
        if self.plan.vmm == "qemu-kl":
            doc = with_vmm_provenance(doc)
        return ProbeRun(doc, res.text(), took)

    def handle_save(self) -> bytes:
        """Make a handle in the guest now; return the handle file (kept on the host: reboots wipe /tmp)."""
        session = self._session()
        session.run([REMOTE_PROBE, "handle", "save", REMOTE_HANDLE], timeout=self.ctx.timeouts.exec, check=True)
        return session.run(["cat", REMOTE_HANDLE], timeout=self.ctx.timeouts.exec, check=True).stdout

    def handle_check(self, saved: bytes) -> Observation:
        """Upload the saved handle file and ask the guest's CPU whether it still accepts the handle."""
        session = self._session()
        session.upload(saved, REMOTE_HANDLE, mode=0o644)
        run = self.probe("handle", "check", REMOTE_HANDLE)
        return run.document.by_id()["handle.check"]

    def run(self, argv: list[str] | str, *, timeout: float | None = None, check: bool = False,
            stdin: bytes | None = None) -> Any:
        return self._session().run(argv, timeout=timeout, check=check, stdin=stdin)

    def drop_session(self) -> None:
        """Forget the SSH session (it dies with save/restore, reboot, migration)."""
        if self.session is not None:
            self.session.close()
            self.session = None

    def teardown(self, *, keep: bool) -> None:
        self.drop_session()
        start = time.monotonic()
        try:
            self.guest.teardown(keep_console=keep)
        finally:
            self.ctx.registry.discard(self.guest)
            self.timings["teardown"] = time.monotonic() - start


def fwcfg_entries(plan: GuestPlan, keypair: KeyPair, *, host_uri: str = "",
                  secret: emuconfig.VmSecret | None = None) -> tuple[list[FwCfgEntry], emuconfig.VmSecret | None]:
    """The run's SSH key and, for an emulated-KL guest, the VMM's hand-over (virtual CPUID + secret,
    and the host's identity when the guest uses a random KeySource)."""
    entries = [FwCfgEntry(FWCFG_AUTHORIZED_KEY, text=keypair.public_line + "\n")]
    if plan.emulated_cpu is not None:
        secret = secret or emuconfig.VmSecret.generate()
        host_id = emuconfig.host_identity(host_uri) if plan.emulated_cpu.random_keysource else None
        entries.append(FwCfgEntry(FWCFG_KLEMU_CONF, text=emuconfig.render(plan.emulated_cpu, secret,
                                                                            host_id=host_id)))
    return entries, secret


def boot(ctx: RunContext, plan: GuestPlan, image: ImageArtifact, *, suffix: str = "",
         persistent: bool = False, suspend: bool = False) -> ProbeGuest:
    """Boot ``plan`` (a fresh domain named ``klh-<run>-<guest><suffix>``) and connect to it.

    CapabilityError propagates (the cell is skipped with its reason); any
    other failure tears the domain down before raising.
    """
    entries, secret = fwcfg_entries(plan, ctx.keypair, host_uri=str(ctx.conn.getURI()))
    spec = replace(plan.spec, name=f"{plan.spec.name}{suffix}", persistent=persistent,
                   suspend_to_mem=suspend or plan.spec.suspend_to_mem)
    console = ctx.artifacts / spec.name / "console.log"
    console.parent.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    deadline = Deadline(ctx.timeouts.boot, "boot")  # console marker and SSH greeting, together
    ctx.progress.emit(GuestPhase(spec.name, "boot"))
    guest = launch(ctx.conn, spec, image, run_id=ctx.run_id, accel=ctx.accel, fwcfg=entries,
                   console_log=console, registry=ctx.registry, timeouts=ctx.timeouts, stage=ctx.stage,
                   deadline=deadline)
    pg = ProbeGuest(plan, guest, ctx, image, secret)
    pg.timings.update({f"virt_{k}": v for k, v in guest.timings.items()})
    pg.timings["boot_total"] = time.monotonic() - start
    ctx.progress.emit(GuestPhase(spec.name, "ssh"))
    try:
        pg.connect(deadline)
    except (SSHError, GuestError):
        pg.teardown(keep=True)
        raise
    pg.timings["ssh_ready"] = time.monotonic() - start
    return pg

