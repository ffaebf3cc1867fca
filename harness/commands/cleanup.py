"""``klharness cleanup``: remove domains and files that dead (or named) runs left behind, on every host."""

from __future__ import annotations

import argparse
from typing import Any

from harness.config import load_config
from harness.config.model import LOCAL_PEER, SIM_REMOTE
from harness.errors import KlharnessError
from harness.redact import redact_uri
from harness.virt.connection import DEFAULT_URI, connect, is_local
from harness.virt.metadata import Reaped
from harness.virt.reaper import reap


def register(subparsers: Any) -> None:
    p: argparse.ArgumentParser = subparsers.add_parser(
        "cleanup", help="remove leaked klh-* domains and their files",
        description="Destroy and undefine klh-* domains whose harness process is gone (default), of one run "
                    "(--run-id), or all of them (--all), and delete their work directories; on a remote host, "
                    "the staged fw_cfg blobs and save images of those runs.  --config does it on every host "
                    "the config lists.")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--uri", default=None, help=f"libvirt URI (default {DEFAULT_URI})")
    where.add_argument("--config", help="clean every host under hosts: of this config (and this machine)")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--run-id", help="remove every domain of this run, alive or not")
    which.add_argument("--all", action="store_true", help="remove every klh-* domain, even of live runs")
    p.set_defaults(func=run)


def uris(args: argparse.Namespace) -> list[str]:
    """The daemons to clean: the config's hosts (a local-peer or simulated host is this machine's: the local
    reaper stops those of dead runs), or the one --uri."""
    if args.config is None:
        return [args.uri or DEFAULT_URI]
    config = load_config(args.config)
    found = [h.uri for h in config.all_hosts() if h.uri not in (LOCAL_PEER, SIM_REMOTE)]
    if not any(is_local(u) for u in found):
        found.insert(0, config.run.uri if is_local(config.run.uri) else DEFAULT_URI)
    return list(dict.fromkeys(found))


def run(args: argparse.Namespace) -> int:
    failed = False
    reaped: list[tuple[str, Reaped]] = []
    for uri in uris(args):
        try:
            conn = connect(uri)
        except KlharnessError as err:
            print(f"{redact_uri(uri)}: cannot clean up: {err}")
            failed = True
            continue
        try:
            reaped += [(uri, r) for r in reap(conn, run_id=args.run_id, everything=args.all, local=is_local(uri))]
        except KlharnessError as err:
            print(f"{redact_uri(uri)}: cleanup failed: {err}")
            failed = True
        finally:
            conn.close()
    if not reaped:
        print("nothing to clean up")
    for uri, item in reaped:
        print(f"removed {item.describe()}" if args.config is None else
              f"removed on {redact_uri(uri)}: {item.describe()}")
    return 1 if failed or any(item.errors for _, item in reaped) else 0
