"""A short Markdown summary for CI comments and mail: counts, what changed, the top failures.

Short on purpose: the reader decides in ten seconds whether to open the HTML page.
Reasons are cut to one line and escaped, so a reason cannot break the Markdown around it.
"""

from __future__ import annotations

import re

from harness.report import model, stacks
from harness.report.compare import Comparison, Delta, TestChange
from harness.report.known_issues import KnownIssues
from harness.report.reproduce import reproduce_command
from harness.report.svg import fmt

TOP_FAILURES = 10
LIST_LIMIT = 15
_SPECIAL = re.compile(r"([\\`*_\[\]<>|#])")


def md(text: object, limit: int = 160) -> str:
    """One line of plain text, Markdown-escaped."""
    return _SPECIAL.sub(r"\\\1", model.one_line(text, limit))


def code(text: str) -> str:
    """``text`` as inline code, fenced with more backticks than it holds (CommonMark)."""
    fence = "`" * (max((len(m) for m in re.findall(r"`+", text)), default=0) + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def render_markdown(record: model.Record, *, comparison: Comparison | None = None,
                    known_issues: KnownIssues | None = None, top: int = TOP_FAILURES) -> str:
    known = known_issues or KnownIssues()
    counts = model.verdict_counts(record)
    prov = model.provenance_counts(record)
    verdict = "FAILED" if counts["failed"] or counts["error"] else "passed"
    lines = [f"### klharness run `{record.run_id}`: {verdict} — {model.counts_line(counts)}",
             f"profile `{_or(record.profile, '?')}` · accel `{model.accel(record)}` · status "
             f"`{record.status}` · provenance: {model.counts_line(prov, None)}", ""]
    rerun = record.rerun_of
    if rerun is not None:
        lines[-1:-1] = [f"rerun of `{md(rerun.run_id, 60)}`"
                        + (" (its failed cells only)" if rerun.failed_only else "")]
    if comparison is not None:
        lines += [render_comparison(comparison), ""]
    failures = [t for t in record.tests if model.failing(t)]
    if failures:
        shown = failures[:top]
        lines.append(f"**Failures ({len(failures)}{f', first {top}' if len(failures) > top else ''}):**")
        for t in shown:
            issue = known.match(t, model.environment(record, t))
            note = f" _({md(issue.describe(), 120)})_" if issue else ""
            lines.append(f"- `{model.label(t)}` — {md(_or(t.reason, 'failed'))}{note}")
            lines.append(f"  reproduce: {code(reproduce_command(record, t))}")
        lines.append("")
    skipped = [t for t in record.tests if t.outcome == "skipped"]
    if skipped:
        reasons = sorted({md(t.reason, 120) for t in skipped})
        lines.append(f"Skipped {len(skipped)}: " + "; ".join(reasons[:5]) + (" …" if len(reasons) > 5 else ""))
    rows = stacks.for_record(record)
    if rows is not None:
        lines += ["", "**Lifecycle across stacks** (what each profile expects of a handle; observed: this run):", "",
                  stacks.markdown(rows)]
    return "\n".join(lines).rstrip() + "\n"


def _or(value: str | None, default: str) -> str:
    """A field of the record, or ``default`` when the record does not have it."""
    return default if value is None else value


def render_comparison(c: Comparison) -> str:
    """The comparison alone (also what ``klharness report compare`` prints)."""
    what = f"Compared with `{c.base_run}`"
    if c.rerun:
        what = (f"Rerun `{c.new_run}` of `{c.base_run}`"
                + (f", compared over its {c.scope} rerun cells only" if c.failed_only else ""))
    lines = [f"**{what}: "
             + (f"{len(c.regressions)} regressions" if c.regressions else "no regressions")
             + (f", EXECUTED KEY LOCKER LOST on {len(c.provenance_lost)} tests" if c.provenance_lost else "") + "**"]
    lines += _changes("Regressions (passed → failing)", c.regressions)
    if c.provenance_lost:
        groups: dict[str, int] = {}
        for p in c.provenance_lost:
            key = f"{p.label.split(' · ')[0]}: {p.before} → {p.after}"
            groups[key] = groups.get(key, 0) + 1
        lines.append("- **Provenance lost** (silicon or VMM Key Locker → emulator or nothing): "
                     + "; ".join(f"{md(k)} ({n} tests)" for k, n in groups.items()))
    lines += _changes("Still failing (failing both times)", c.still_failing)
    lines += _changes("Passed on rerun (failing → passed: flaky, or fixed since)" if c.rerun
                      else "Fixes (failing → passed)", c.fixes)
    lines += _changes("New failures (new or previously skipped tests)", c.new_failures)
    lines += _changes("New skips", c.new_skips)
    lines += _changes("Known issues (not counted)", c.known)
    other = [p for p in c.provenance if not p.loud]
    if other:
        lines.append(f"- Other provenance changes: {len(other)}")
    if c.added or c.removed:
        lines.append(f"- Tests new: {len(c.added)}, gone: {len(c.removed)}")
    lines.append(_perf(c))
    return "\n".join(lines)


def _changes(title: str, items: tuple[TestChange, ...]) -> list[str]:
    if not items:
        return []
    out = [f"- {title}: {len(items)}"]
    for t in items[:LIST_LIMIT]:
        note = f" _({md(t.known.describe(), 120)})_" if t.known else ""
        reason = f" — {md(t.reason)}" if t.reason and t.after in model.FAILING | {"skipped"} else ""
        out.append(f"  - `{t.label}` ({t.before or 'absent'} → {t.after or 'absent'}){reason}{note}")
    if len(items) > LIST_LIMIT:
        out.append(f"  - … and {len(items) - LIST_LIMIT} more (see the HTML report)")
    return out


def _perf(c: Comparison) -> str:
    total = len(c.perf) + len(c.boot)
    sig = c.significant_perf
    head = f"- Performance: {len(sig)} of {total} figures changed beyond their noise"
    if not sig:
        return head
    rows = [head, "", "| guest | figure | base median [p10, p90] | new | change | noise threshold |",
            "|---|---|---|---|---|---|"]
    rows += [f"| {md(d.guest)} | {md(d.name)} | {_stat(d, True)} | {_stat(d, False)} | "
             f"{d.relative:+.0%} {d.direction} | ±{fmt(d.threshold)} |" for d in sig]
    return "\n".join(rows)


def _stat(d: Delta, base: bool) -> str:
    s = d.base if base else d.new
    return f"{fmt(s.median)} [{fmt(s.p10)}, {fmt(s.p90)}] {md(d.unit)}"
