"""Which host runs which guest: by capability first, then spread for wall time.

Why plain code and no cluster layer: more lab hosts are more libvirt URIs
(ARCHITECTURE.md §3.7).  A guest whose Key Locker is native can only go to a
host whose host-check says native cells are possible; everything else is
spread greedily (largest first onto the least-loaded host), each guest
weighted by the boots it costs (its pooled boot plus one per lifecycle cell).
"""

from __future__ import annotations

from dataclasses import dataclass

from harness.config.model import Config
from harness.plan.matrix import GuestPlan, lifecycle_events


@dataclass(frozen=True)
class HostCapability:
    name: str
    native_kl: bool  # host-check verdict "native cells: possible"


@dataclass(frozen=True)
class Placement:
    host_of: dict[str, str]        # guest -> host name
    unplaced: dict[str, str]       # guest -> why no host can run it

def weight(p: GuestPlan, config: Config) -> int:
    return 1 + len(lifecycle_events(p, config))


def place(plans: list[GuestPlan], hosts: list[HostCapability], config: Config) -> Placement:
    load = {h.name: 0 for h in hosts}
    host_of: dict[str, str] = {}
    unplaced: dict[str, str] = {}
    for p in sorted(plans, key=lambda p: (-weight(p, config), p.name)):
        # qemu-kl guests execute Key Locker in the VMM: any host that has qemu-kl built will do
        needs_native = p.backend == "native" and p.spec.kl.enabled and p.vmm == "system"
        candidates = [h for h in hosts if h.native_kl or not needs_native]
        if not candidates:
            unplaced[p.name] = ("no host in hosts: can run native Key Locker cells (klharness host-check on each "
                                "host says why)")
            continue
        best = min(candidates, key=lambda h: (load[h.name], h.name))
        host_of[p.name] = best.name
        load[best.name] += weight(p, config)
    return Placement(host_of, unplaced)
