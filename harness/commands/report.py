"""``klharness report html|markdown|compare|stacks|history|kcidb``: reports from run records.

RUN, BASE and NEW are a run directory or its ``record.json``.  ``compare``
exits 1 only when there are regressions (passed → failing, not covered by a
known issue) or native Key Locker was lost; everything else it reports exits 0.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from harness.report.known_issues import KnownIssues, load_known_issues

EXIT_REGRESSIONS = 1


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("report", help="HTML/Markdown reports, run comparison and history from run records")
    rsub = p.add_subparsers(dest="report_command", metavar="KIND")
    rsub.required = True

    html = rsub.add_parser("html", help="one self-contained HTML page for a run")
    html.add_argument("run", type=Path, help="run directory or record.json")
    html.add_argument("-o", "--output", type=Path, help="output file (default: RUN/report.html)")
    _common(html)
    html.set_defaults(func=cmd_html)

    md = rsub.add_parser("markdown", help="a short Markdown summary (CI comments, mail)")
    md.add_argument("run", type=Path, help="run directory or record.json")
    md.add_argument("-o", "--output", type=Path, help="output file (default: standard output)")
    _common(md)
    md.set_defaults(func=cmd_markdown)

    cmp = rsub.add_parser("compare", help="what changed from BASE to NEW (exit 1 only on regressions)")
    cmp.add_argument("base", type=Path, help="the earlier run (directory or record.json)")
    cmp.add_argument("new", type=Path, help="the later run")
    cmp.add_argument("--known-issues", type=Path, help="known issues file (default: configs/known-issues.yaml)")
    cmp.add_argument("--history", type=Path, metavar="DIR",
                     help="results directory whose earlier runs widen the boot-time noise estimate")
    cmp.add_argument("-o", "--output", type=Path, help="also write the comparison as Markdown to this file")
    cmp.set_defaults(func=cmd_compare)

    st = rsub.add_parser("stacks", help="lifecycle events across stacks: emulated, qemu-kl, kvm-kl-rfc")
    st.add_argument("runs", type=Path, nargs="*", help="run directories whose lifecycle results to show beside them")
    st.add_argument("--sources", action="store_true", help="also list each stack's reason per event")
    st.set_defaults(func=cmd_stacks)

    kc = rsub.add_parser("kcidb", help="the run as KCIDB JSON (KernelCI's results database), schema v5.3")
    kc.add_argument("run", type=Path, help="run directory or record.json")
    kc.add_argument("-o", "--output", type=Path, required=True, help="the JSON file to write")
    kc.add_argument("--origin", required=True,
                    help="your CI system's KCIDB origin (lowercase letters, digits, _), e.g. klharness_lab1")
    kc.add_argument("--base-url", help="where RUN is published: the record and kept console logs become output_files")
    kc.set_defaults(func=cmd_kcidb)

    hist = rsub.add_parser("history", help="the last N runs of a results directory, per test and per figure")
    hist.add_argument("directory", type=Path, help="results directory (one subdirectory per run)")
    hist.add_argument("-n", type=_count, default=10, help="how many runs (default 10)")
    hist.add_argument("-o", "--output", type=Path, help="also write an HTML page with SVG charts")
    hist.add_argument("--all", action="store_true", help="list every test, not only those not always passing")
    hist.set_defaults(func=cmd_history)


def _count(v: str) -> int:
    try:
        n = int(v)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"{v!r} is not a number of runs (1 or more)")
    return n


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--baseline", type=Path, help="compare with this earlier run (directory or record.json)")
    p.add_argument("--known-issues", type=Path, help="known issues file (default: configs/known-issues.yaml)")


def _known(args: argparse.Namespace) -> KnownIssues:
    path: Path | None = args.known_issues
    return load_known_issues(path) if path is not None else load_known_issues(missing_ok=True)


def cmd_html(args: argparse.Namespace) -> int:
    from harness.report.html import render_html
    from harness.report.write import REPORT_HTML, comparison_for, run_dir_of
    from harness.results.record import load_record, write_atomic

    known = _known(args)
    record = load_record(args.run)
    directory = run_dir_of(args.run)
    page = render_html(record, run_dir=directory, comparison=comparison_for(record, args.baseline, known),
                       known_issues=known)
    out: Path = args.output or directory / REPORT_HTML
    write_atomic(out, page.encode())
    print(out)
    return 0


def cmd_markdown(args: argparse.Namespace) -> int:
    from harness.report.markdown import render_markdown
    from harness.report.write import comparison_for
    from harness.results.record import load_record, write_atomic

    known = _known(args)
    record = load_record(args.run)
    text = render_markdown(record, comparison=comparison_for(record, args.baseline, known), known_issues=known)
    if args.output:
        write_atomic(args.output, text.encode())
    else:
        sys.stdout.write(text)
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from harness.report.compare import compare
    from harness.report.history import run_dirs
    from harness.report.markdown import render_comparison
    from harness.results.record import load_record, write_atomic

    known = _known(args)
    history = [load_record(d) for d in run_dirs(args.history)] if args.history else []
    result = compare(load_record(args.base), load_record(args.new), known, history=history)
    text = render_comparison(result) + "\n"
    sys.stdout.write(text)
    if args.output:
        write_atomic(args.output, text.encode())
    return EXIT_REGRESSIONS if result.failed else 0


def cmd_kcidb(args: argparse.Namespace) -> int:
    import json

    from harness.report.kcidb import to_kcidb
    from harness.report.write import run_dir_of
    from harness.results.record import load_record, write_atomic

    doc = to_kcidb(load_record(args.run), origin=args.origin, base_url=args.base_url, run_dir=run_dir_of(args.run))
    write_atomic(args.output, (json.dumps(doc, indent=1, default=str) + "\n").encode())
    print(f"{args.output}: KCIDB v{doc['version']['major']}.{doc['version']['minor']}, {len(doc['tests'])} tests")
    return 0


def cmd_stacks(args: argparse.Namespace) -> int:
    from harness.paths import available_profiles
    from harness.plan.profiles import load_profile
    from harness.report import stacks
    from harness.results.record import load_record

    profiles = {s: load_profile(s) for s in stacks.STACKS if s in available_profiles()}
    sys.stdout.write(stacks.markdown(stacks.table(profiles, [load_record(r) for r in args.runs])))
    if args.sources:
        sys.stdout.write("\n" + stacks.sources(profiles))
    return 0


def cmd_history(args: argparse.Namespace) -> int:
    from harness.report.history import load_history, render_history_html, render_table
    from harness.results.record import write_atomic

    h = load_history(args.directory, args.n)
    print(render_table(h, all_tests=args.all))
    if args.output:
        page = render_history_html(h, source=str(args.directory.resolve()), all_tests=args.all)
        write_atomic(args.output, page.encode())
        print(f"\nHTML: {args.output}")
    return 0
