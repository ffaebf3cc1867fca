"""``klharness cleanup``: remove domains and files that dead (or named) runs left behind."""

from __future__ import annotations

import argparse
from typing import Any

from harness.virt.connection import DEFAULT_URI, connect, is_local
from harness.virt.reaper import reap


def register(subparsers: Any) -> None:
    p: argparse.ArgumentParser = subparsers.add_parser(
        "cleanup", help="remove leaked klh-* domains and their files",
        description="Destroy and undefine klh-* domains whose harness process is gone (default), of one run "
                    "(--run-id), or all of them (--all), and delete their work directories.")
    p.add_argument("--uri", default=DEFAULT_URI, help=f"libvirt URI (default {DEFAULT_URI})")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--run-id", help="remove every domain of this run, alive or not")
    which.add_argument("--all", action="store_true", help="remove every klh-* domain, even of live runs")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    conn = connect(args.uri)
    try:
        reaped = reap(conn, run_id=args.run_id, everything=args.all, local=is_local(args.uri))
    finally:
        conn.close()
    if not reaped:
        print("nothing to clean up")
        return 0
    for item in reaped:
        print(f"removed {item.describe()}")
    return 1 if any(item.errors for item in reaped) else 0
