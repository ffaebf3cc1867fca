"""``klharness host-check [URI]``: can this host run native Key Locker cells, and why not.

For an SSH URI of another host (``qemu+ssh://root@lab1/system``) the command logs in there with the URI's own
user, key and pinned host key (:class:`harness.host.link.HostLink`) and reads that host's CPUID, kernel, KVM and
QEMU facts on it; a URI of another transport (``qemu+tls://``) gets only what libvirt reports.
"""

from __future__ import annotations

import argparse
import contextlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.errors import HostError
from harness.virt.spec import DEFAULT_KL_FEATURE_NAME

if TYPE_CHECKING:
    from harness.host.link import HostLink

BACKENDS = ("native", "baremetal", "helper", "emulated")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "host-check", help="check whether this host can run native or emulated Key Locker cells",
        description="Read the host's Key Locker CPUID, kernel, KVM, QEMU and libvirt facts and give a verdict per "
                    "backend with every reason. For an SSH URI (qemu+ssh://root@lab1/system) the host's own facts "
                    "are read on it over SSH (the URI's user, keyfile= and known_hosts=); other remote URIs "
                    "(qemu+tls://) report only what libvirt can tell: run host-check on the lab host itself.")
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
    link = host_link(uri)
    if uri is not None:
        from harness.virt.connection import connect

        try:
            conn = connect(uri)
        except HostError as err:
            error = str(err)
    try:
        report = host_check(conn, uri=uri, feature_name=args.feature_name, libvirt_error=error, link=link)
    finally:
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()
        if link is not None:
            link.close()
    text = to_json(report)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
    print(text if args.json else render_text(report), end="")
    failed = [b for b in args.require if report["verdicts"][b]["possible"] is not True]
    return 1 if failed else 0


def host_link(uri: str | None) -> HostLink | None:
    """The SSH link to the host an ``ssh``/``libssh`` URI of another host names, or None (no URI, a local one,
    another transport).  Opened on first use: a failed login becomes the facts' reason, not an abort."""
    from harness.host.link import HostLink
    from harness.ssh_target import SshTarget
    from harness.timeouts import active as active_timeouts
    from harness.virt.connection import is_local

    if uri is None or is_local(uri):
        return None
    target = SshTarget.from_uri(uri)
    return None if target is None else HostLink(target, active_timeouts())
