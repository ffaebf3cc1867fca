"""Lifecycle events on a probe guest, each ending with SSH back and the probe in place.

Why here: the catalogue asks one question per event — does a handle made
before it still work after it? — so each event must leave the guest in the
same reachable state, and report how long it took.  Events this version
cannot perform here raise CapabilityError with the reason (a skip).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from harness.errors import CapabilityError, HostError
from harness.guest.probeguest import ProbeGuest, fwcfg_entries
from harness.virt import lifecycle
from harness.virt.connection import is_local
from harness.virt.migrate import migrate_live
from harness.virt.peer import run_peer
from harness.wait import NotYet, wait_for

# Events that need a persistent (defined) domain rather than a transient one.
NEEDS_PERSISTENT = frozenset({"managed-save"})
# Events that need the guest booted ready for S3 (the bzImage path: PVH never resumes).
NEEDS_SUSPEND = frozenset({"suspend"})


def save_restore(pg: ProbeGuest) -> dict[str, float]:
    pg.drop_session()
    lifecycle.save(pg.guest)
    lifecycle.restore(pg.guest)
    pg.connect()
    return {"save": pg.guest.timings["save"], "restore": pg.guest.timings["restore"]}


def managed_save(pg: ProbeGuest) -> dict[str, float]:
    pg.drop_session()
    saved = lifecycle.managed_save(pg.guest)
    started = lifecycle.start(pg.guest)
    pg.connect()
    return {"managed_save": saved, "start": started}


def reboot(pg: ProbeGuest) -> dict[str, float]:
    pg.drop_session()
    took = lifecycle.reboot(pg.guest)
    pg.connect()  # the new boot has an empty /tmp: connect re-uploads the probe
    return {"reboot": took}


def vcpu_hotplug(pg: ProbeGuest) -> dict[str, float]:
    """Add one vCPU, bring it online in the guest, and leave its number in ``pg.timings['new_cpu']``."""
    before = lifecycle.vcpu_count(pg.guest)
    took = lifecycle.add_vcpus(pg.guest, before + 1)
    new_cpu = before  # CPUs are numbered from 0: the new one is N
    online = f"/sys/devices/system/cpu/cpu{new_cpu}/online"

    def appeared() -> None:
        if pg.run(["test", "-e", online]).returncode != 0:
            raise NotYet(f"no {online} yet")

    wait_for(f"guest {pg.name}: {online} after hot-plug", appeared, timeout=pg.ctx.timeouts.exec, initial=0.1)
    pg.run(f"echo 1 > {online}", check=True)
    return {"add_vcpus": took, "new_cpu": float(new_cpu)}


def migrate(pg: ProbeGuest) -> dict[str, float]:
    """Live-migrate the guest to the run's peer daemon (a second libvirtd on this host), or back, and reconnect.

    MigrationRefused (a VirtError) propagates: a profile may expect it.
    The peer outlives the guest; the session stops it at the end of the run.
    """
    if not is_local(str(pg.ctx.conn.getURI())):
        raise CapabilityError("lifecycle event 'migrate' needs the run's libvirt daemon on this host (the peer "
                              "daemon is local); migration between lab hosts is not supported yet")
    try:
        peer = run_peer(pg.ctx.run_id, timeouts=pg.ctx.timeouts)
    except HostError as err:
        raise CapabilityError(f"lifecycle event 'migrate' cannot run here: {err}") from err
    dest = pg.ctx.conn if pg.guest.conn is peer.conn else peer.conn
    pg.drop_session()
    fwcfg = None
    if pg.plan.emulated_cpu is not None and pg.plan.emulated_cpu.random_keysource:
        # The destination host has another identity: a random-KeySource key cannot follow the guest.
        fwcfg, _ = fwcfg_entries(pg.plan, pg.ctx.keypair, host_uri=str(dest.getURI()), secret=pg.secret)
    took = migrate_live(pg.guest, dest, timeout=pg.ctx.timeouts.migrate, fwcfg=fwcfg)
    start = time.monotonic()
    pg.connect()
    out = {"migrate": took, "ssh_back": time.monotonic() - start, "peer_start": peer.timings.get("start", 0.0)}
    if "migrate_downtime" in pg.guest.timings:
        out["downtime"] = pg.guest.timings["migrate_downtime"]
    return out


def suspend(pg: ProbeGuest) -> dict[str, float]:
    """Suspend to RAM from inside the guest (S3: the CPU loses its IWKey on silicon), wake with pMWakeup."""
    if not pg.guest.spec.suspend_to_mem:
        raise CapabilityError("lifecycle event 'suspend' needs a guest booted with suspend_to_mem")
    pg.run("setsid sh -c 'sleep 0.5; echo mem > /sys/power/state' </dev/null >/dev/null 2>&1 &",
           timeout=pg.ctx.timeouts.exec, check=True)
    pg.drop_session()
    start = time.monotonic()

    def suspended_to_ram() -> None:
        if (state := pg.guest.state()) != "pmsuspended":
            raise NotYet(f"state {state}")

    wait_for(f"guest {pg.name} to suspend to RAM", suspended_to_ram, timeout=pg.ctx.timeouts.wakeup, initial=0.1,
             detail=lambda: "console tail:\n" + pg.guest.console.tail(15))
    suspended = time.monotonic() - start
    woke = lifecycle.pm_wakeup(pg.guest)
    pg.connect()
    return {"suspend": suspended, "wakeup": woke}


EVENTS: dict[str, Callable[[ProbeGuest], dict[str, float]]] = {
    "save-restore": save_restore,
    "managed-save": managed_save,
    "reboot": reboot,
    "vcpu-hotplug": vcpu_hotplug,
    "suspend": suspend,
    "migrate": migrate,
}


def perform(event: str, pg: ProbeGuest) -> dict[str, float]:
    try:
        action = EVENTS[event]
    except KeyError:
        raise CapabilityError(f"unknown lifecycle event {event!r} (known: {', '.join(EVENTS)})") from None
    return action(pg)
