"""Is libvirt's cache of QEMU's capabilities stable, and if not, why not?

Why: libvirt 9.0 validates its cached QEMU capabilities on every API call
that needs them (creating a domain, domain capabilities, CPU comparison).
When a check fails it throws the cache away and probes QEMU again (~4 s
under TCG here).  A check that fails *every* time turns each call into a
re-probe: domain creation then passes its limit and every cell of a run
errors with the same timeout, which says nothing about the cause.

The one persistent cause seen on the project's machines (HOST_NOTES.md,
2026-12-04): ``/dev/kvm`` is ``root:root 0600`` because no udev applied
Debian's ``0660 root:kvm`` rule.  libvirt probed QEMU with KVM available,
then finds ``/dev/kvm`` unreadable by the QEMU user ("KVM was enabled when
probing ..., but it is not available now") and re-probes, forever.

This module measures the symptom (two consecutive ``domcapabilities`` calls
that are both slow), names every known cause that applies on this host, and
is used by the run (fail fast, one clear error), ``klharness host-check``
(a line of its own) and :func:`harness.virt.bounded.bounded` (a hint in every
libvirt timeout).  ``scripts/start-libvirt`` repairs the known cause and
checks the same symptom in shell.
"""

from __future__ import annotations

import os
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.errors import HostError
from harness.virt.qemu_access import allows, qemu_identity

DEV_KVM = Path("/dev/kvm")
# A cached answer takes ~0.01 s; a re-probe ~4 s (TCG, 2 cores).  1.5 s separates them with room for load.
FAST_CALL = 1.5
# The first call after a daemon start (or a QEMU upgrade) may re-probe once; two slow in a row is a loop.
MAX_CALLS = 3
REPAIR = "run scripts/start-libvirt (it does what udev would do), or by hand: chgrp kvm /dev/kvm && chmod 0660 " \
         "/dev/kvm, then restart libvirtd"
FIND_CAUSE = ("see why with: virt-admin daemon-log-filters '1:qemu.qemu_capabilities'; virt-admin "
              "daemon-log-outputs '1:file:/var/log/libvirt/caps.log'; virsh domcapabilities; grep -iE "
              "'not available now|changed|outdated' /var/log/libvirt/caps.log")


@dataclass(frozen=True)
class Cause:
    """A known reason for libvirt to re-probe QEMU on every call, and how to remove it."""

    what: str
    fix: str

    def describe(self) -> str:
        return f"{self.what} (fix: {self.fix})"


def dev_kvm_cause(dev_kvm: Path = DEV_KVM,
                  identity: Callable[[], tuple[str, int, set[int]] | None] = qemu_identity) -> Cause | None:
    """``/dev/kvm`` exists but the user QEMU runs as cannot open it read-write.

    libvirt checks readability as that user each time it validates the
    cache; write access is what QEMU itself needs for KVM.
    """
    try:
        st = dev_kvm.stat()
    except OSError:
        return None  # no KVM at all: libvirt probed without it and stays consistent
    ident = identity()
    if ident is None:
        return None
    name, uid, gids = ident
    if allows(st, uid, gids, 4) and allows(st, uid, gids, 2):
        return None
    owner = _name_of(st)
    return Cause(f"{dev_kvm} is {owner} {stat.filemode(st.st_mode)} and QEMU's user {name} cannot open it, so "
                 f"libvirt finds KVM 'not available now' and re-probes QEMU on every call", REPAIR)


def _name_of(st: os.stat_result) -> str:
    import grp
    import pwd

    try:
        user = pwd.getpwuid(st.st_uid).pw_name
    except KeyError:
        user = str(st.st_uid)
    try:
        group = grp.getgrgid(st.st_gid).gr_name
    except KeyError:
        group = str(st.st_gid)
    return f"{user}:{group}"


def known_causes(dev_kvm: Path = DEV_KVM) -> list[Cause]:
    """Every known cause of a capability re-probe loop that applies on this machine (cheap: stat calls)."""
    return [c for c in (dev_kvm_cause(dev_kvm),) if c is not None]


def slow_call_hint() -> str:
    """Text for a libvirt timeout: the known causes that apply here, or nothing."""
    causes = known_causes()
    if not causes:
        return ""
    return "; known cause on this machine: " + "; ".join(c.describe() for c in causes)


@dataclass(frozen=True)
class CacheCheck:
    """Consecutive ``domcapabilities`` timings and the verdict drawn from them."""

    durations: tuple[float, ...]
    stable: bool
    causes: tuple[Cause, ...]

    def describe(self) -> str:
        times = ", ".join(f"{d:.2f} s" for d in self.durations)
        if self.stable:
            return f"stable: domcapabilities {times}"
        why = "; ".join(c.describe() for c in self.causes) or f"no known cause applies here; {FIND_CAUSE}"
        return f"re-probed on every call: domcapabilities {times} (cached: ~0.01 s): {why}"

    def to_dict(self) -> dict[str, Any]:
        return {"stable": self.stable, "durations": [round(d, 3) for d in self.durations],
                "causes": [{"what": c.what, "fix": c.fix} for c in self.causes], "summary": self.describe()}


def measure(call: Callable[[], object], *, local: bool, fast: float = FAST_CALL,
            clock: Callable[[], float] = time.monotonic, dev_kvm: Path = DEV_KVM) -> CacheCheck:
    """Time up to :data:`MAX_CALLS` calls of ``call``; stable once two consecutive calls are fast.

    ``local``: the daemon runs on this machine, so this machine's known
    causes are the daemon's (for a remote daemon none can be read from here).
    """
    durations: list[float] = []
    for _ in range(MAX_CALLS):
        start = clock()
        call()
        durations.append(clock() - start)
        if len(durations) >= 2 and durations[-1] < fast and durations[-2] < fast:
            return CacheCheck(tuple(durations), True, ())
        if len(durations) >= 2 and durations[-1] >= fast and durations[-2] >= fast:
            break
    if len(durations) == MAX_CALLS and durations[-1] < fast:
        return CacheCheck(tuple(durations), True, ())  # slow, fast, ... settled after a one-time probe
    causes = tuple(known_causes(dev_kvm)) if local else ()
    return CacheCheck(tuple(durations), False, causes)


def domcaps_call(conn: Any, virttype: str = "qemu") -> Callable[[], object]:
    """The libvirt call whose answer comes from the capability cache."""
    return lambda: conn.getDomainCapabilities(None, "x86_64", None, virttype, 0)


def require_stable(conn: Any, *, local: bool, uri: str) -> CacheCheck:
    """Raise HostError, naming the cause and the fix, when every libvirt call would re-probe QEMU."""
    check = measure(domcaps_call(conn), local=local)
    if not check.stable:
        raise HostError(f"libvirt at {uri} {check.describe()}. Every domain creation would take a re-probe and time "
                        "out, so the run stops here")
    return check
