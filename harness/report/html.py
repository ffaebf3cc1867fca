"""One self-contained HTML page per run: what a lab lead reads in a minute.

Top to bottom, in the order of the questions people ask: how many failed and on which path
(summary by verdict and by provenance); what changed since the baseline (when one is given);
each failure with its reason, observation, expectation and source, visible without a click;
the guest × check matrix; boot-phase and probe-timing plots; then per guest the tests and
excerpts of the console tail, domain XML and probe JSON, folded in ``<details>`` because
they are bulky.

Self-contained on purpose: CSS inline, charts as inline SVG (harness.report.svg), no
script, nothing fetched, so the page works from a CI artifact store or a mail.  Every
string from the record or an artifact is escaped: console logs contain anything.
"""

from __future__ import annotations

import json
import time
from collections import Counter, defaultdict
from collections.abc import Mapping
from html import escape
from pathlib import Path
from typing import Any

from harness import __version__
from harness.report import model, stacks, svg
from harness.report.compare import BOOT_FLOOR_REL, BOOT_FLOOR_S, Comparison, Delta
from harness.report.known_issues import KnownIssues
from harness.report.reproduce import reproduce_command

CONSOLE_LINES = 80
DOMAIN_XML_BYTES = 32 * 1024
PROBE_JSON_BYTES = 64 * 1024
INLINE_JSON_CHARS = 180
LIST_LIMIT = 60  # changes listed per kind; the rest are counted
SYMBOL = {"passed": "✓", "failed": "✗", "error": "!", "skipped": "–"}
PROVENANCE_LETTER = {"native": "N", "vmm": "V", "emulated": "E", "trapped": "T", "absent": "A",
                     "advertised-unusable": "U"}

CSS = """
body{font:14px/1.45 system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;margin:0 auto;max-width:1400px;
 padding:0 20px 40px;color:#1d1d1f;background:#fff}
h1{font-size:22px;margin:18px 0 4px}h2{font-size:18px;margin:28px 0 8px;border-bottom:1px solid #ddd}
h3{font-size:15px;margin:16px 0 4px}.meta{color:#555;margin:2px 0}
.summary{font-size:16px;margin:10px 0}.badge{display:inline-block;padding:2px 9px;border-radius:10px;
 margin-right:6px;font-weight:600;color:#fff}
.b-passed{background:#2e7d32}.b-failed{background:#c62828}.b-error{background:#6a1b9a}.b-skipped{background:#757575}
.b-prov{background:#eceff1;color:#263238;font-weight:500}.loud{background:#ffebee;border-left:5px solid #c62828;
 padding:6px 10px;margin:8px 0}.ok{background:#e8f5e9;border-left:5px solid #2e7d32;padding:6px 10px}
.failure{border-left:5px solid #c62828;background:#fff8f8;padding:6px 12px;margin:10px 0}
.failure.known{border-left-color:#f9a825;background:#fffde7}
.reason{font-family:ui-monospace,Menlo,Consolas,monospace;white-space:pre-wrap;color:#b71c1c;margin:4px 0}
.known-note{color:#8d6e00}dl{display:grid;grid-template-columns:max-content 1fr;gap:2px 12px;margin:4px 0}
dt{color:#555}dd{margin:0}code,pre{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:12px}
pre{background:#f6f8fa;padding:8px;overflow:auto;max-height:480px;white-space:pre-wrap;word-break:break-all}
table{border-collapse:collapse;margin:6px 0}th,td{border:1px solid #e0e0e0;padding:3px 7px;text-align:left;
 vertical-align:top}th{background:#fafafa}
table.matrix td{text-align:center;min-width:70px;font-weight:600}table.matrix td.row{text-align:left;font-weight:400}
.v-passed{background:#e8f5e9;color:#1b5e20}.v-failed{background:#ffcdd2;color:#b71c1c}
.v-error{background:#e1bee7;color:#4a148c}.v-skipped{background:#eeeeee;color:#616161}.v-none{color:#bbb}
.prov{font-size:10px;vertical-align:super;color:#546e7a}td.wide{max-width:420px;word-break:break-word}
details{margin:4px 0}summary{cursor:pointer;color:#0d47a1}.small{font-size:12px;color:#666}
.repro code{background:#f6f8fa;padding:1px 4px;user-select:all}
"""


def e(value: object) -> str:
    return escape(str(value), quote=True)


def _or(value: object, default: object) -> object:
    """A field of the record, or ``default`` when the record does not have it."""
    return default if value is None else value


def _json(value: Any, *, indent: int | None = None) -> str:
    return json.dumps(value, indent=indent, sort_keys=True, default=str, ensure_ascii=False)


def _inline_json(value: Any) -> str:
    """Compact JSON; long values are cut and the whole shown pretty-printed in a fold."""
    if value is None:
        return ""
    text = _json(value)
    if len(text) <= INLINE_JSON_CHARS:
        return f"<code>{e(text)}</code>"
    return (f"<details><summary><code>{e(text[:INLINE_JSON_CHARS])}…</code></summary>"
            f"<pre>{e(_json(value, indent=1))}</pre></details>")


def _anchor(index: int) -> str:
    return f"t{index}"


def render_html(record: model.Record, *, run_dir: Path | None = None, comparison: Comparison | None = None,
                known_issues: KnownIssues | None = None) -> str:
    """The whole page for ``record`` (``run_dir``: where its artifacts are, if it was moved)."""
    known = known_issues or KnownIssues()
    tests = list(record.tests)
    counts = model.verdict_counts(record)
    title = f"klharness {record.run_id}: {model.counts_line(counts)}"
    parts = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{e(title)}</title><style>{CSS}</style></head><body>",
        _header(record, counts),
    ]
    if comparison is not None:
        parts.append(_changes(comparison))
    parts += [_failures(record, tests, known), _skips(tests), _matrix(tests), _stacks(record), _plots(record),
              _guests(record, tests, run_dir),
              f'<p class="small">klharness {e(__version__)} · report written {e(time.strftime("%Y-%m-%d %H:%M:%S %Z"))}'
              f" · record schema {e(record.SCHEMA)} v{e(record.SCHEMA_VERSION)}</p>",
              "</body></html>"]
    return "\n".join(parts)


def _stacks(record: model.Record) -> str:
    rows = stacks.for_record(record)
    if rows is None:
        return ""
    head, *body = rows
    cells = "".join(f"<th>{e(h)}</th>" for h in head)
    trs = "".join("<tr>" + "".join(f"<td>{e(c)}</td>" for c in r) + "</tr>" for r in body)
    return (f"<h2>Lifecycle across stacks</h2><p class='small'>What each profile expects of a handle made before "
            f"the event (in-guest model, the VMM, the 2021 KVM design); observed: this run.</p>"
            f"<table><tr>{cells}</tr>{trs}</table>")


def _header(record: model.Record, counts: Counter[str]) -> str:
    host = record.host or {}
    acc, virt, cpu = host.get("accel", {}), host.get("libvirt", {}), host.get("cpu", {})
    badges = " ".join(f'<span class="badge b-{e(k)}">{counts[k]} {e(k)}</span>' for k in model.VERDICTS if counts[k])
    prov = model.provenance_counts(record)
    prov_badges = " ".join(f'<span class="badge b-prov">{n} {e(k)}</span>' for k, n in prov.most_common())
    total = sum(counts.values())
    lines = [
        f"<h1>klharness run {e(record.run_id)}</h1>",
        f'<p class="summary" id="summary">{total} tests: {badges or "none"} &nbsp; '
        f'provenance: {prov_badges or "—"}</p>',
        f'<p class="meta">status <b>{e(record.status)}</b> · profile <b>{e(_or(record.profile, "?"))}</b>'
        f" ({e(_or(record.profile_source, ''))}) · config {e(_or(record.config, '?'))} · "
        f"uri {e(_or(record.uri, '?'))}</p>",
        f'<p class="meta">accelerator <b>{e(acc.get("accel", "?"))}</b>: {e(acc.get("reason", ""))}</p>',
        f'<p class="meta">host {e(virt.get("hostname", "?"))}, kernel {e(host.get("kernel", "?"))},'
        f" CPU {e(cpu.get('model name', '?'))}, libvirt {e(virt.get('libvirt', '?'))},"
        f" QEMU {e(virt.get('qemu', '?'))} · started {e(_or(record.started, '?'))},"
        f" finished {e(record.finished or '—')}</p>",
    ]
    rerun = record.rerun_of
    if rerun is not None:
        lines.append(f'<p class="meta">rerun of <b>{e(rerun.run_id)}</b>'
                     + (" (its failed cells only)" if rerun.failed_only else "") + "</p>")
    if record.status != "complete":
        lines.append(f'<p class="loud">This run did not finish normally (status {e(record.status)}): '
                     "the record holds only what completed.</p>")
    return "\n".join(lines)


def _changes(c: Comparison) -> str:
    title = f"Changes since {e(c.base_run)}"
    if c.rerun:
        title = f"Rerun of {e(c.base_run)}" + (f": its {c.scope} rerun cells compared" if c.failed_only else "")
    out = [f'<section id="changes"><h2>{title}</h2>']
    if not c.failed:
        out.append('<p class="ok">No regressions and no loss of native Key Locker.</p>')
    for title, items in (("Regressions (passed → failing)", c.regressions),):
        if items:
            out.append(f'<div class="loud"><b>{len(items)} {e(title)}</b><ul>'
                       + "".join(f"<li>{e(t.label)}: <span class='reason'>{e(t.reason)}</span></li>" for t in items)
                       + "</ul></div>")
    lost = c.provenance_lost
    if lost:
        by_guest = Counter(f"{p.label.split(' · ')[0]}: {p.before} → {p.after}" for p in lost)
        out.append(f'<div class="loud"><b>EXECUTED KEY LOCKER LOST on {len(lost)} tests</b> (silicon or qemu-kl '
                   "before; results now come from the emulator or nowhere)<ul>"
                   + "".join(f"<li>{e(k)} ({n} tests)</li>" for k, n in by_guest.items())
                   + "</ul></div>")
    fixes = "Passed on rerun (failing → passed: flaky, or fixed since)" if c.rerun else "Fixes (failing → passed)"
    lists = (("Still failing (failing both times)", c.still_failing), (fixes, c.fixes),
             ("New failures (new or previously skipped)", c.new_failures),
             ("New skips", c.new_skips), ("Known issues (not counted)", c.known))
    for title, items in lists:
        if items:
            more = f"<li>… and {len(items) - LIST_LIMIT} more</li>" if len(items) > LIST_LIMIT else ""
            out.append(f"<h3>{e(title)}: {len(items)}</h3><ul>" + "".join(
                f"<li>{e(t.label)} ({e(t.before or 'absent')} → {e(t.after or 'absent')})"
                + (f": <span class='small'>{e(t.reason)}</span>" if t.reason else "")
                + (f" <span class='known-note'>{e(t.known.describe())}</span>" if t.known else "") + "</li>"
                for t in items[:LIST_LIMIT]) + more + "</ul>")
    other = [p for p in c.provenance if not p.loud]
    if other:
        groups = Counter(f"{p.label.split(' · ')[0]}: {p.before} → {p.after}" for p in other)
        out.append(f"<h3>Other provenance changes: {len(other)}</h3><ul>"
                   + "".join(f"<li>{e(k)} ({n} tests)</li>" for k, n in groups.items()) + "</ul><details><summary>"
                   f"the {len(other)} tests</summary><ul>"
                   + "".join(f"<li>{e(p.label)}: {e(p.before)} → {e(p.after)}</li>" for p in other) + "</ul></details>")
    if c.added or c.removed:
        out.append(f"<p>{len(c.added)} tests new, {len(c.removed)} tests gone"
                   + (f": <span class='small'>{e(', '.join(c.removed[:20]))}</span>" if c.removed else "") + "</p>")
    out.append(_deltas_table(c))
    out.append("</section>")
    return "\n".join(out)


def _deltas_table(c: Comparison) -> str:
    rows = [d for d in (*c.perf, *c.boot) if d.significant or d.note]
    head = (f"<h3>Performance: {len(c.significant_perf)} significant of {len(c.perf) + len(c.boot)} figures</h3>"
            "<p class='small'>A change counts only when the medians differ by more than the combined p10–p90 "
            f"half-widths of both runs (per-guest boot: a floor of max({BOOT_FLOOR_S:g} s, {BOOT_FLOOR_REL:.0%})); "
            "see harness/report/compare.py.</p>")
    if not rows:
        return head
    body = "".join(f"<tr><td>{e(d.guest)}</td><td>{e(d.name)}</td><td>{e(_stat(d, 'base'))}</td>"
                   f"<td>{e(_stat(d, 'new'))}</td><td>{e(f'{d.relative:+.0%}')}</td><td>±{e(svg.fmt(d.threshold))}</td>"
                   f"<td><b>{e(d.note or d.direction)}</b></td></tr>" for d in rows)
    return (head + "<table><tr><th>guest</th><th>figure</th><th>base median [p10, p90]</th><th>new</th>"
            f"<th>change</th><th>noise threshold</th><th>verdict</th></tr>{body}</table>")


def _stat(d: Delta, which: str) -> str:
    s = d.base if which == "base" else d.new
    return f"{svg.fmt(s.median)} [{svg.fmt(s.p10)}, {svg.fmt(s.p90)}] {d.unit}"


def _failures(record: model.Record, tests: list[model.Test], known: KnownIssues) -> str:
    bad = [(i, t) for i, t in enumerate(tests) if model.failing(t)]
    if not bad:
        return '<section id="failures"><h2>Failures: none</h2></section>'
    out = [f'<section id="failures"><h2>Failures: {len(bad)}</h2>']
    for i, t in bad:
        issue = known.match(t, model.environment(record, t))
        out.append(f'<article class="failure{" known" if issue else ""}" id="{_anchor(i)}">'
                   f"<h3>{e(t.outcome.upper())} {e(model.label(t))}</h3>"
                   f'<p class="reason">{e(_or(t.reason, "(no reason recorded)"))}</p>')
        if issue:
            out.append(f'<p class="known-note">{e(issue.describe())} — {e(issue.where)}</p>')
        out.append(f'<p class="repro">reproduce: <code>{e(reproduce_command(record, t))}</code></p>')
        out.append(_detail_list(t) + "</article>")
    out.append("</section>")
    return "\n".join(out)


def _detail_list(t: model.Test) -> str:
    items = [("test", f"<code>{e(t.nodeid)}</code>"), ("provenance", e(model.provenance(t))),
             ("observation", _inline_json(t.observation)), ("expectation", _inline_json(t.expectation)),
             ("source", e(_or(t.source, ""))), ("duration", e(f"{_or(t.duration, 0)} s")),
             ("timings", _inline_json(t.timings))]
    return "<dl>" + "".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in items if v and v != "n/a") + "</dl>"


def _skips(tests: list[model.Test]) -> str:
    reasons = Counter(_or(t.reason, "") for t in tests if t.outcome == "skipped")
    if not reasons:
        return ""
    return (f'<section id="skips"><h2>Skipped: {sum(reasons.values())}</h2><ul>'
            + "".join(f"<li>{n} × {e(r or '(no reason)')}</li>" for r, n in reasons.most_common()) + "</ul></section>")


def _matrix(tests: list[model.Test]) -> str:
    guests = sorted({t.guest for t in tests})
    cells: dict[str, dict[str, list[tuple[int, model.Test]]]] = defaultdict(lambda: defaultdict(list))
    for i, t in enumerate(tests):
        cells[model.what(t)][t.guest].append((i, t))
    if not cells:
        return '<section id="matrix"><h2>Matrix</h2><p>No tests ran.</p></section>'
    order = {v: k for k, v in enumerate(model.VERDICTS)}
    rows = []
    for what in sorted(cells, key=lambda w: (w.startswith(("event:", "test_")), w)):
        tds = []
        for g in guests:
            entries = cells[what].get(g, [])
            if not entries:
                tds.append('<td class="v-none">·</td>')
                continue
            i, worst = min(entries, key=lambda it: order.get(it[1].outcome, 9))
            v = worst.outcome
            letter = PROVENANCE_LETTER.get(model.provenance(worst), "")
            tip = f"{v}, provenance {model.provenance(worst)}" + (f": {worst.reason}" if worst.reason else "")
            mark = f'<a href="#{_anchor(i)}">{SYMBOL.get(v, "?")}</a>' if model.failing(worst) else SYMBOL.get(v, "?")
            tds.append(f'<td class="v-{e(v)}" title="{e(model.one_line(tip, 300))}">{mark}'
                       f'<span class="prov">{e(letter)}</span></td>')
        rows.append(f'<tr><td class="row"><code>{e(what)}</code></td>{"".join(tds)}</tr>')
    head = "".join(f"<th>{e(g)}</th>" for g in guests)
    return ('<section id="matrix"><h2>Matrix: check × guest</h2>'
            '<p class="small">✓ passed ✗ failed ! error – skipped · not run; letter = provenance (N native, '
            "E emulated, A absent, U advertised-unusable). Hover a cell for the reason.</p>"
            f'<table class="matrix"><tr><th>check / event / test</th>{head}</tr>{"".join(rows)}</table></section>')


def _plots(record: model.Record) -> str:
    out = ['<section id="plots"><h2>Timings</h2>']
    guests = record.guests
    rows = [(name, model.boot_phases(g)) for name, g in guests.items() if model.boot_phases(g)]
    if rows:
        colours = dict(zip(model.BOOT_PHASES, svg.PALETTE, strict=False))
        out.append("<h3>Boot phases per guest</h3>")
        out.append(svg.stacked_bars("Boot phases per guest (seconds)", rows, colours))
        out.append('<p class="small">' + "; ".join(f"<b>{e(k)}</b>: {e(v)}" for k, v in model.BOOT_PHASE_HELP.items())
                   + "</p>")
    figs = model.figures(record)
    if figs:
        legend = [("AES-NI", svg.FAMILY_COLOURS["aesni"], False), ("Key Locker", svg.FAMILY_COLOURS["kl"], False),
                  ("not silicon (emulated or vmm: measures the emulator or qemu-kl's TCG)", svg.FAMILY_COLOURS["kl"],
                   True)]
        out.append("<h3>Probe timing: Key Locker vs AES-NI</h3><p class='small'>Median of the repetitions, whisker "
                   "p10–p90 (an arrow: cut at the axis end; hover for the numbers). One chart per unit.</p>")
        for unit in dict.fromkeys(f.unit for f in figs):
            bars = [svg.RangeBar(f.guest, f.name, f.median, f.p10, f.p90, svg.FAMILY_COLOURS[f.family],
                                 f.provenance != "native", "" if f.provenance == "native" else f.provenance)
                    for f in figs if f.unit == unit]
            out.append(svg.range_bars(f"Probe timing per guest, TSC ticks ({unit})", bars,
                                      unit=f"TSC ticks ({unit})", legend=legend))
        out.append(_ratios(guests))
    out.append("</section>")
    return "\n".join(out)


def _ratios(guests: Mapping[str, model.Guest]) -> str:
    rows = []
    for name, g in sorted(guests.items()):
        timing = g.probe.get("timing", {}) if isinstance(g.probe, Mapping) else {}
        ratios = timing.get("ratios") or {}
        spread = _ratio(timing.get("worst_spread", "?"))
        note = "" if timing.get("trustworthy", True) else f" (worst spread {spread}: the probe calls it untrustworthy)"
        if ratios:
            rows.append(f"<li>{e(name)}: " + ", ".join(f"{e(k)} = {e(_ratio(v))}" for k, v in sorted(ratios.items()))
                        + e(note) + "</li>")
    return f"<p class='small'>KL / AES-NI ratios:</p><ul class='small'>{''.join(rows)}</ul>" if rows else ""


def _ratio(v: object) -> str:
    return f"{v:.3g}" if isinstance(v, int | float) else str(v)


def _guests(record: model.Record, tests: list[model.Test], run_dir: Path | None) -> str:
    by_guest: dict[str, list[tuple[int, model.Test]]] = defaultdict(list)
    for i, t in enumerate(tests):
        by_guest[t.guest].append((i, t))
    guests = record.guests
    out = ['<section id="guests"><h2>Guests</h2>']
    for name in sorted(set(guests) | set(by_guest)):
        out.append(_guest(record, name, record.guest(name), by_guest.get(name, []), run_dir))
    out.append("</section>")
    return "\n".join(out)


def _guest(record: model.Record, name: str, g: model.Guest, tests: list[tuple[int, model.Test]],
           run_dir: Path | None) -> str:
    counts = Counter(t.outcome for _, t in tests)
    boot = model.boot_seconds(g)
    facts = [f"backend <b>{e(_or(g.backend, '—'))}</b>", f"accel {e(_or(g.accel, '—'))}",
             f"boot→ssh {boot:.1f} s" if boot is not None else "not booted",
             f"probe {e(g.probe_seconds)} s" if g.probe_seconds is not None else "no probe run of its own",
             f"artifacts {'kept' if g.kept else 'not kept'}"]
    if g.plan and g.plan != name:
        facts.insert(0, f"dedicated guest of {e(g.plan)}")
    out = [f'<h3 id="g-{e(name)}">{e(name)}</h3><p class="meta">{" · ".join(facts)}'
           f"{' · ' + e(model.counts_line(counts)) if tests else ''}</p>"]
    if g.timings:
        out.append(f"<p class='small'>timings (s): {e(', '.join(f'{k} {v}' for k, v in g.timings.items()))}</p>")
    if tests:
        out.append(_tests_table(tests))
    out.append(_excerpts(record, name, g, run_dir, failed=any(model.failing(t) for _, t in tests)))
    return "\n".join(out)


def _tests_table(tests: list[tuple[int, model.Test]]) -> str:
    rows = []
    for i, t in tests:
        v = t.outcome
        timings = (" " + _inline_json(t.timings)) if t.timings else ""
        test_name = f"<br><span class='small'>{e(t.test)}</span>" if t.test != model.what(t) else ""
        rows.append(f'<tr id="{_anchor(i)}-row"><td class="v-{e(v)}">{SYMBOL.get(v, "?")} {e(v)}</td>'
                    f"<td><code>{e(model.what(t))}</code>{test_name}</td>"
                    f"<td>{e(model.provenance(t))}</td><td class='wide'>{_inline_json(t.observation)}</td>"
                    f"<td class='wide'>{_inline_json(t.expectation)}</td>"
                    f"<td class='small'>{e(_or(t.source, ''))}</td><td>{e(_or(t.duration, ''))}{timings}</td>"
                    f"<td class='wide reason'>{e(_or(t.reason, ''))}</td></tr>")
    return ("<table><tr><th>verdict</th><th>check</th><th>provenance</th><th>observation</th><th>expectation</th>"
            "<th>source</th><th>seconds</th><th>reason</th></tr>" + "".join(rows) + "</table>")


def _excerpts(record: model.Record, name: str, g: model.Guest, run_dir: Path | None, *, failed: bool) -> str:
    """Folds with the kept artifacts; for a failing guest without them, the probe JSON from the record."""
    folds = []
    where = model.artifact_dir(record, name, run_dir)
    if where is not None:
        console = model.read_tail(where / "console.log", lines=CONSOLE_LINES)
        if console is not None:
            folds.append((f"console log, last {CONSOLE_LINES} lines ({where / 'console.log'})", console))
        xml = model.read_head(where / "domain.xml", max_bytes=DOMAIN_XML_BYTES)
        if xml is not None:
            folds.append((f"domain XML ({where / 'domain.xml'})", xml))
        probe = model.read_head(where / "probe.json", max_bytes=PROBE_JSON_BYTES)
        if probe is not None:
            folds.append((f"probe JSON ({where / 'probe.json'})", probe))
    if failed and g.probe is not None and not any(title.startswith("probe JSON") for title, _ in folds):
        text = _json(g.probe, indent=1)
        cut = text[:PROBE_JSON_BYTES] + (f"\n… (cut at {PROBE_JSON_BYTES} characters)" if len(text) > PROBE_JSON_BYTES
                                         else "")
        folds.append(("probe JSON (from the run record)", cut))
    return "".join(f"<details><summary>{e(title)}</summary><pre>{e(text)}</pre></details>" for title, text in folds)
