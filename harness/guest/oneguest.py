"""One guest outside a catalogue run: connect, check the host, boot, hand it over, tear it down.

Why: commands such as ``klharness vectors`` need a single booted guest (the
patched VMM's, or a lab host's) with exactly the run's guarantees — the
libvirt capability check, a reaper pass, a per-run SSH key, the probe in
place, klhelper where the plan asks for it, and nothing left behind — but
none of a run's pool, record or pytest.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from harness import cbuild
from harness.config.model import Config, GuestConfig, RunSettings
from harness.guest.probeguest import ProbeGuest, RunContext, boot
from harness.guest.ssh import generate_keypair
from harness.images import build_image
from harness.kl.emuconfig import private_runtime_dir
from harness.plan.matrix import plan_guest
from harness.redact import redact_uri
from harness.results.record import new_run_id
from harness.timeouts import Timeouts, from_environment
from harness.virt.accel import choose_accel
from harness.virt.capcache import require_stable
from harness.virt.connection import connect, is_local
from harness.virt.reaper import reap
from harness.virt.registry import RunGuests


@contextlib.contextmanager
def single_guest(guest: GuestConfig, run: RunSettings, *, timeouts: Timeouts | None = None) -> Iterator[ProbeGuest]:
    """Boot ``guest`` on ``run.uri`` with ``run``'s settings; yield it reachable; tear everything down."""
    uri = run.uri
    local = is_local(uri)
    conn = connect(uri)
    run_id = new_run_id()
    keys = private_runtime_dir(run_id)
    artifacts = Path(tempfile.mkdtemp(prefix=f"klh-{run_id}-"))
    try:
        require_stable(conn, local=local, uri=redact_uri(uri))
        reap(conn, local=local)
        config = Config("klharness (one guest)", run, (guest,))
        with RunGuests(run_id) as registry:
            ctx = RunContext(run_id, conn, generate_keypair(keys / "ssh", f"klharness-{run_id}"),
                             timeouts or from_environment(), registry, cbuild.build("klprobe"),
                             choose_accel(run.accel, local=local), artifacts)
            pg = boot(ctx, plan_guest(guest, config), build_image(guest.image))
            try:
                yield pg
            finally:
                pg.teardown(keep=False)
    finally:
        shutil.rmtree(keys, ignore_errors=True)
        shutil.rmtree(artifacts, ignore_errors=True)
        conn.close()
