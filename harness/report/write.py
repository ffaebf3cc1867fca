"""Write a run's reports next to its record: ``report.html`` and ``summary.md``.

``klharness run`` calls :func:`after_run` at the end of every run; the nightly rewrites
both with a baseline (``klharness report html|markdown RUN --baseline PREV``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from harness.errors import KlharnessError
from harness.report import model
from harness.report.compare import Comparison, compare
from harness.report.html import render_html
from harness.report.known_issues import KnownIssues, load_known_issues
from harness.report.markdown import render_markdown
from harness.results.record import load_record, write_atomic

REPORT_HTML = "report.html"
SUMMARY_MD = "summary.md"


def run_dir_of(path: Path) -> Path:
    """The run directory of a record file or run directory."""
    return path if path.is_dir() else path.parent


def comparison_for(record: model.Record, baseline: Path | None, known: KnownIssues,
                   history: Sequence[model.Record] = ()) -> Comparison | None:
    return compare(load_record(baseline), record, known, history=history) if baseline is not None else None


def write_reports(run: Path, *, baseline: Path | None = None, known_issues: KnownIssues | None = None,
                  history: Sequence[model.Record] = ()) -> tuple[Path, Path]:
    """Write ``report.html`` and ``summary.md`` into the run directory; returns their paths."""
    known = known_issues or KnownIssues()
    record = load_record(run)
    directory = run_dir_of(run)
    cmp = comparison_for(record, baseline, known, history)
    html_path, md_path = directory / REPORT_HTML, directory / SUMMARY_MD
    write_atomic(html_path, render_html(record, run_dir=directory, comparison=cmp, known_issues=known).encode())
    write_atomic(md_path, render_markdown(record, comparison=cmp, known_issues=known).encode())
    return html_path, md_path


def after_run(run: Path) -> str:
    """Reports at the end of ``klharness run``: a line to print; a report problem never fails the run."""
    notes = []
    try:
        known = load_known_issues(missing_ok=True)
    except KlharnessError as err:
        notes.append(f" (known issues ignored: {err})")
        known = KnownIssues()
    try:
        html_path, md_path = write_reports(run, known_issues=known)
    except (KlharnessError, OSError) as err:
        return f"reports: not written: {err}"
    return f"HTML report: {html_path}\nMarkdown summary: {md_path}" + "".join(notes)
