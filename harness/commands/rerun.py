"""``klharness rerun RESULTS/RUN [--failed]``: the same run again, or only the cells that failed.

Why a command of its own: after a red night the first thing wanted is to run the same matrix,
profile, URI and options again — from the record, not from memory.  The new run goes next to
the old one and its record names it (``rerun_of``), which ``klharness report compare`` reads.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from harness.commands.run import add_quiet, execute
from harness.redact import redact_uri


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("rerun", help="run a recorded run again: same config, profile, URI and options "
                                     "(--failed: only its failed and errored cells)")
    p.add_argument("run", type=Path, help="the run directory (RESULTS/RUN-ID) or its record.json")
    p.add_argument("--failed", action="store_true", help="only the cells that failed or errored")
    p.add_argument("--uri", help="libvirt URI, when the recorded one carried a password (records keep none)")
    p.add_argument("--results", type=Path, help="results root of the new run (default: the directory holding RUN)")
    add_quiet(p)
    p.set_defaults(func=cmd_rerun)


def cmd_rerun(args: argparse.Namespace) -> int:
    from harness.report.write import run_dir_of
    from harness.results.record import load_record
    from harness.results.rerun import failed_cells, rerun_invocation

    record = load_record(args.run)
    run_dir = run_dir_of(args.run).resolve()
    inv = rerun_invocation(record, run_dir, failed_only=args.failed, uri=args.uri, results=args.results,
                           argv=getattr(args, "command_line", ()))
    if inv is None:
        print(f"klharness rerun: nothing failed in run {record.run_id} ({run_dir}): nothing to rerun")
        return 0
    what = f"its {len(failed_cells(record))} failed cells" if args.failed else "all of it"
    print(f"klharness rerun: run {record.run_id} again, {what}: config {inv.config}, "
          f"profile {inv.profile or '(the config default)'}" + (f", uri {redact_uri(inv.uri)}" if inv.uri else ""))
    return execute(inv, quiet=args.quiet)
