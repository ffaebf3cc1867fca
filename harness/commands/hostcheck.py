"""``klharness host-check [URI]``: can this host run native Key Locker cells, and why not."""

from __future__ import annotations

import argparse
import contextlib
from pathlib import Path
from typing import Any

from harness.errors import HostError
from harness.virt.spec import DEFAULT_KL_FEATURE_NAME

BACKENDS = ("native", "baremetal", "helper", "emulated")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "host-check", help="check whether this host can run native or emulated Key Locker cells",
        description="Read the host's Key Locker CPUID, kernel, KVM, QEMU and libvirt facts and give a verdict per "
                    "backend with every reason. A remote URI (qemu+ssh://lab1/system) reports only what libvirt "
                    "can tell; run host-check on the lab host itself for its CPUID and kernel.")
    p.add_argument("uri", nargs="?", default="qemu:///system",
                   help="libvirt URI (default qemu:///system); 'none' skips libvirt")
    p.add_argument("--json", action="store_true", help="print the machine-readable report")
    p.add_argument("--out", type=Path, help="also write the JSON report to this file")
    p.add_argument("--feature-name", default=DEFAULT_KL_FEATURE_NAME,
                   help=f"the KL CPU feature name your patched stack uses (run.kl_feature_name; "
                        f"default {DEFAULT_KL_FEATURE_NAME})")
    p.add_argument("--require", choices=BACKENDS, action="append", default=[],
                   help="exit 1 unless this backend is possible (repeatable)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from harness.host.check import host_check, to_json
    from harness.host.verdict import render_text

    conn: Any = None
    error = None
    uri = None if args.uri == "none" else args.uri
    if uri is not None:
        from harness.virt.connection import connect

        try:
            conn = connect(uri)
        except HostError as err:
            error = str(err)
    try:
        report = host_check(conn, uri=uri, feature_name=args.feature_name, libvirt_error=error)
    finally:
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()
    text = to_json(report)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
    print(text if args.json else render_text(report), end="")
    failed = [b for b in args.require if report["verdicts"][b]["possible"] is not True]
    return 1 if failed else 0
