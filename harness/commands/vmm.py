"""``klharness vmm``: the Key Locker VMM (``qemu-kl``), built from the distribution's QEMU source.

    klharness vmm build qemu-kl [--force]   fetch, patch, configure, build, install (cached by hash)
    klharness vmm status [--json]           what is built, verified, for the current patch series
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

from harness.errors import BuildError
from harness.vmm import qemu_kl


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("vmm", help="build and check the Key Locker VMM (qemu-kl)",
                                   description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="vmm_command", metavar="ACTION")
    sub.required = True
    build = sub.add_parser("build", help="build a VMM (reused when its inputs are unchanged)")
    build.add_argument("name", choices=[qemu_kl.NAME])
    build.add_argument("--force", action="store_true", help="rebuild even when a verified build is cached")
    build.set_defaults(func=cmd_build)
    status = sub.add_parser("status", help="the built VMMs and what they are")
    status.add_argument("--json", action="store_true", help="machine-readable")
    status.set_defaults(func=cmd_status)


def cmd_build(args: argparse.Namespace) -> int:
    start = time.monotonic()
    build, built_now = qemu_kl.obtain(force=args.force, progress=lambda msg: print(msg, flush=True))
    how = f"built in {time.monotonic() - start:.0f} s" if built_now else \
        f"cached (built in {build.build_seconds:.0f} s; verified in {time.monotonic() - start:.2f} s)"
    print(f"{build.describe()}: {how}")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    try:
        build = qemu_kl.installed()
    except BuildError as err:
        print(json.dumps({"name": qemu_kl.NAME, "built": False, "reason": str(err)}) if args.json
              else f"{qemu_kl.NAME}: not built: {err}")
        return 1
    print(json.dumps({"built": True, **build.to_dict()}, indent=2) if args.json else build.describe())
    return 0
