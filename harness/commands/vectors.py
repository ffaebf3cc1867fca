"""``klharness vectors``: JSON lines of Key Locker operations in, the CPU's answers out, streamed.

    klharness vectors --vmm qemu-kl [--kl wide=false ...] < ops.jsonl > answers.jsonl
    klharness vectors --vmm kvm --uri qemu+ssh://root@tgl1/system < ops.jsonl > answers.jsonl

Why a command: the same vector lines must reach every Key Locker there is —
the emulator (``klprobe vectors --backend emulated``), the VMM that executes
it (qemu-kl) and silicon behind a lab host's KVM — and come back in one
format, so any two can be compared line by line.  A guest is booted for the
run (mini image, 2 vCPUs), klhelper loaded in it (CR4.KL set, an IWKey on
every CPU), and every line goes through ``klprobe vectors --backend native``
inside it as it arrives.  The line format is klvectors.h's; there,
``setiwkey`` goes through klhelper (LOADIWKEY, KeySource as given, on every
vCPU) and ``cpu`` is answered with an error line (a native CPU is what it is:
choose its shape here, with ``--kl``).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import fields, replace
from typing import Any

from harness.config.model import RESTRICTIONS, GuestConfig, KlConfig, RunSettings
from harness.errors import ConfigError, GuestError
from harness.guest.oneguest import single_guest
from harness.timeouts import active as active_timeouts

VMM_CHOICES = ("qemu-kl", "kvm")
# The CPU qemu-kl gives the guest by default: a Tiger Lake, NoBackup and random KeySource included.
FULL = KlConfig(enabled=True, nobackup=True, random_keysource=True)


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("vectors", help="stream Key Locker vector lines through a VMM's or silicon's CPU",
                                   description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--vmm", choices=VMM_CHOICES, required=True,
                        help="qemu-kl: Key Locker executed by the patched QEMU (TCG, this host); kvm: a KVM guest on "
                             "--uri whose stack passes Key Locker through (a lab host)")
    parser.add_argument("--uri", default="qemu:///system", help="libvirt URI (default %(default)s)")
    parser.add_argument("--image", default="mini", choices=("mini", "debian"), help="guest image")
    parser.add_argument("--kl", action="append", default=[], metavar="FIELD=VALUE",
                        help="guest CPU shape, e.g. --kl wide=false --kl restrictions=cpl0 (fields of kl: in a "
                             "config; default: everything, NoBackup and random KeySource included)")
    parser.set_defaults(func=cmd_vectors)


def kl_shape(pairs: list[str]) -> KlConfig:
    """``FIELD=VALUE`` pairs over the full shape; a wrong field or value names the accepted ones."""
    kl = FULL
    known = {f.name for f in fields(KlConfig)} - {"enabled", "leaf19_present_zero"}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or name not in known:
            raise ConfigError(f"--kl {pair!r}: expected FIELD=VALUE with FIELD one of {', '.join(sorted(known))}")
        if name == "restrictions":
            chosen = tuple(r for r in value.split(",") if r)
            if set(chosen) - set(RESTRICTIONS):
                raise ConfigError(f"--kl {pair!r}: restrictions are a comma list of {', '.join(RESTRICTIONS)}")
            kl = replace(kl, restrictions=chosen)
        elif value in ("true", "false"):
            flags: dict[str, Any] = {name: value == "true"}
            kl = replace(kl, **flags)
        else:
            raise ConfigError(f"--kl {pair!r}: {name} takes true or false")
    return kl


def cmd_vectors(args: argparse.Namespace) -> int:
    kl = kl_shape(args.kl)
    if args.vmm == "qemu-kl":
        run = RunSettings(uri=args.uri, vmm="qemu-kl", accel="tcg")
        guest = GuestConfig(name="vectors", image=args.image, vcpus=2, kl=kl)
    else:
        # A lab host: the distribution's (patched) QEMU with KL through KVM; klhelper sets CR4.KL in the guest.
        run = RunSettings(uri=args.uri, accel="kvm", kl_backend="native")
        guest = GuestConfig(name="vectors", image=args.image, vcpus=2, kl=kl, helper=True)
    with single_guest(guest, run) as pg:
        if not pg.helper_loaded:
            raise GuestError(f"klhelper did not load in the guest, so CR4.KL is clear and no IWKey is loaded: "
                             f"{pg.helper}")
        session = pg.connect()
        rc = session.stream(["/tmp/klprobe", "vectors", "--backend", "native"], sys.stdin.buffer,
                            sys.stdout.buffer, timeout=active_timeouts().vectors_stream)
    return 0 if rc == 0 else 1
