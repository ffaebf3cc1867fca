"""Reports: the HTML page, the Markdown summary, run comparison, known issues, history, the CLI,
and the page in a real headless Chromium.

Fixtures: ``tests/data/runs/real`` is a real run record (configs/nightly.yaml here, with the
vCPU hot-plug failure TCG gives) and ``tests/data/runs/real-broken`` the same matrix run again
with one expectation deliberately broken (profile ``emulated`` with ``reboot: handle: valid``),
so comparing them must show exactly that regression.  The synthetic record is built from the
real one: failures, an error, skips and mixed provenance, with hostile text in reasons.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import struct
import subprocess
from collections import Counter
from dataclasses import replace
from html.parser import HTMLParser
from pathlib import Path

import pytest

from harness.cli import main
from harness.errors import ConfigError
from harness.report import model
from harness.report.compare import Stats, compare, threshold
from harness.report.history import build_history, load_history, render_history_html, render_table
from harness.report.html import render_html
from harness.report.known_issues import KnownIssue, KnownIssues, glob_match, load_known_issues
from harness.report.markdown import render_markdown
from harness.report.svg import fmt
from harness.report.write import after_run, write_reports
from harness.results.record import load_record
from harness.results.schema import GuestEntry, RunRecord, TestEntry

DATA = Path(__file__).resolve().parent / "data" / "runs"
REAL = DATA / "real"
BROKEN = DATA / "real-broken"
HOSTILE = "<script>alert('x')</script> & \"quoted\" | `tick` *bold*"
REPO = Path(__file__).resolve().parent.parent
HOTPLUG = "testcases/test_lifecycle.py::test_handle_across_event[kl-full:vcpu-hotplug]"


# -- helpers -----------------------------------------------------------------------------------------------

class Page(HTMLParser):
    """Text per element id (with its descendants), every tag, and every attribute value."""

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: Counter[str] = Counter()
        self.attrs: list[tuple[str, str, str]] = []
        self.by_id: dict[str, list[str]] = {}
        self._open: list[tuple[str, str | None]] = []
        self.text: list[str] = []
        self.feed(text)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags[tag] += 1
        ident = None
        for k, v in attrs:
            self.attrs.append((tag, k, v or ""))
            if k == "id":
                ident = v
        if tag not in ("br", "meta", "rect", "line", "path", "circle", "polygon", "polyline"):
            self._open.append((tag, ident))
            if ident:
                self.by_id[ident] = []

    def handle_endtag(self, tag: str) -> None:
        for i in range(len(self._open) - 1, -1, -1):
            if self._open[i][0] == tag:
                del self._open[i:]
                break

    def handle_data(self, data: str) -> None:
        self.text.append(data)
        for _, ident in self._open:
            if ident:
                self.by_id[ident].append(data)

    def section(self, ident: str) -> str:
        return " ".join(" ".join(self.by_id.get(ident, [])).split())

    def all_text(self) -> str:
        return " ".join(" ".join(self.text).split())


@pytest.fixture(scope="module")
def real() -> RunRecord:
    return load_record(REAL)


@pytest.fixture(scope="module")
def broken() -> RunRecord:
    return load_record(BROKEN)


def synthetic(real: RunRecord) -> RunRecord:
    """The real record with a failure carrying hostile text, an error, skips and native provenance."""
    tests = list(real.tests)
    checks = [i for i, t in enumerate(tests) if t.check]
    tests[checks[0]] = replace(tests[checks[0]], outcome="failed", reason=HOSTILE + "\nsecond line of the traceback")
    tests[checks[1]] = replace(tests[checks[1]], outcome="error", reason="harness.errors.SSHError: guest unreachable")
    for i in checks[2:5]:
        tests[i] = replace(tests[i], outcome="skipped", reason="needs real Key Locker (native_only)")
    for i in checks[5:15]:
        tests[i] = replace(tests[i], provenance="native")
    return replace(real, run_id="20990101-000000-5y57", tests=tuple(tests))


def counts(record: RunRecord) -> Counter[str]:
    return Counter(t.outcome for t in record.tests)


def figure_record(run_id: str, figs: dict[str, tuple[float, float, float]], *, boot: float = 5.0,
                  provenance: str = "emulated", tests: dict[str, str] | None = None) -> RunRecord:
    """A minimal record: one guest with the given figures (median, p10, p90), boot time and test outcomes."""
    probe = {"timing": {"figures": {name: {"provenance": provenance, "unit": "tsc/block", "median": m, "p10": lo,
                                           "p90": hi, "reps": 31} for name, (m, lo, hi) in figs.items()}}}
    return RunRecord(
        run_id=run_id, status="complete", profile="emulated", host={"accel": {"accel": "tcg"}},
        guests={"g": GuestEntry(backend="emulated", accel="tcg", timings={"ssh_ready": boot}, probe=probe)},
        tests=tuple(TestEntry(nodeid=f"t.py::test[g:{n}]", test="test", guest="g", check=n, outcome=o,
                              reason=f"{n} broke" if o in ("failed", "error") else None)
                    for n, o in (tests or {}).items()))


# -- the real record ------------------------------------------------------------------------------------------

def test_fixture_records_are_real_runs_without_secrets(real: RunRecord, broken: RunRecord) -> None:
    for r, path in ((real, REAL), (broken, BROKEN)):
        assert r.status == "complete" and len(r.tests) > 50
        assert r.host is not None and r.host["libvirt"]["hypervisor"] == "QEMU"
        assert "secret" not in (path / "record.json").read_text().lower()


def test_html_of_real_run_shows_counts_by_verdict_and_provenance(real: RunRecord) -> None:
    page = Page(render_html(real, run_dir=REAL))
    summary = page.section("summary")
    c = counts(real)
    assert f"{len(real.tests)} tests" in summary
    for verdict, n in c.items():
        assert f"{n} {verdict}" in summary
    for prov, n in Counter(t.provenance or "n/a" for t in real.tests).items():
        assert f"{n} {prov}" in summary


def test_html_of_real_run_shows_every_failure_reason_outside_details(real: RunRecord) -> None:
    failing = [t for t in real.tests if model.failing(t)]
    assert failing, "the real fixture must contain a failure"
    page = Page(render_html(real, run_dir=REAL))
    failures = page.section("failures")
    assert f"Failures: {len(failing)}" in failures
    for t in failing:
        assert t.reason and " ".join(t.reason.split()) in failures
        assert t.nodeid in failures


def test_html_matrix_has_a_cell_per_guest_and_check(real: RunRecord) -> None:
    text = render_html(real, run_dir=REAL)
    matrix = text[text.index('<section id="matrix">'):text.index("</section>", text.index('<section id="matrix">'))]
    guests = sorted({t.guest for t in real.tests})
    whats = {model.what(t) for t in real.tests}
    assert matrix.count("<tr>") == len(whats) + 1
    assert matrix.count('<td class="v-') == len(whats) * len(guests)
    assert matrix.count('<td class="v-failed"') + matrix.count('<td class="v-error"') >= 1


def test_html_is_self_contained(real: RunRecord) -> None:
    text = render_html(real, run_dir=REAL)
    page = Page(text)
    assert page.tags["script"] == 0 and page.tags["link"] == 0 and page.tags["img"] == 0 and page.tags["iframe"] == 0
    assert page.tags["svg"] >= 2, "boot phases and probe timing plots"
    for tag, key, value in page.attrs:
        assert key not in ("src", "srcset"), (tag, key, value)
        if key == "href":
            assert value.startswith("#"), value
    assert "url(" not in text and "@import" not in text


def test_html_plots_draw_each_guest_and_each_figure(real: RunRecord) -> None:
    text = render_html(real, run_dir=REAL)
    plots = text[text.index('<section id="plots">'):text.index('<section id="guests">')]
    for f in model.figures(real):
        assert f"<title>{f.guest} {f.name}: median {fmt(f.median)}, p10 {fmt(f.p10)}, p90 {fmt(f.p90)}" in plots
    for unit in {f.unit for f in model.figures(real)}:
        assert f"Probe timing per guest, TSC ticks ({unit})" in plots
    for name, g in real.guests.items():
        if model.boot_phases(g):
            assert f">{name}</text>" in plots


def test_html_includes_escaped_artifact_excerpts(real: RunRecord, tmp_path: Path) -> None:
    rec = synthetic(real)
    guest = next(iter(rec.guests))
    d = tmp_path / "guests" / guest
    d.mkdir(parents=True)
    (d / "console.log").write_text("".join(f"boot line {i}\n" for i in range(200)) + "panic: <b>oops</b> & more\n")
    (d / "domain.xml").write_text("<domain type='qemu'><name>x</name></domain>")
    (d / "probe.json").write_text('{"schema": "klharness.probe", "note": "</pre><script>x</script>"}')
    text = render_html(rec, run_dir=tmp_path)
    assert "panic: &lt;b&gt;oops&lt;/b&gt; &amp; more" in text
    assert "boot line 199" in text and "boot line 100\n" not in text, "only the tail of the console"
    assert "&lt;domain type=&#x27;qemu&#x27;&gt;" in text
    assert "&lt;/pre&gt;&lt;script&gt;x&lt;/script&gt;" in text
    page = Page(text)
    assert page.tags["script"] == 0
    assert page.tags["details"] >= 3


def test_html_escapes_hostile_reasons_and_counts_synthetic_run(real: RunRecord) -> None:
    rec = synthetic(real)
    text = render_html(rec)
    page = Page(text)
    assert page.tags["script"] == 0
    assert HOSTILE in page.section("failures")
    summary = page.section("summary")
    c = counts(rec)
    assert f"{c['failed']} failed" in summary and f"{c['error']} error" in summary
    assert f"{c['skipped']} skipped" in summary and "10 native" in summary
    assert "needs real Key Locker (native_only)" in page.section("skips")


def test_html_marks_a_failure_covered_by_a_known_issue(real: RunRecord) -> None:
    rec = synthetic(real)
    failed = next(t for t in rec.tests if t.outcome == "failed")
    known = KnownIssues((KnownIssue("flaky under TCG", check=failed.check, intermittent=True,
                                    link="https://example.invalid/1", where="k.yaml:1"),))
    failures = Page(render_html(rec, known_issues=known)).section("failures")
    assert "known intermittent: flaky under TCG (https://example.invalid/1)" in failures


# -- Markdown ------------------------------------------------------------------------------------------------

def test_markdown_summary_is_short_and_names_failures_with_one_line_reasons(real: RunRecord) -> None:
    rec = synthetic(real)
    text = render_markdown(rec)
    c = counts(rec)
    assert text.startswith(f"### klharness run `{rec.run_id}`: FAILED — {c['failed']} failed, {c['error']} error")
    assert "second line of the traceback" in text  # joined onto the reason's one line
    line = next(ln for ln in text.splitlines() if "alert" in ln)
    assert "\\<script\\>" in line and "\\|" in line and "\\`tick\\`" in line
    assert len(text.splitlines()) < 30


def test_markdown_with_baseline_lists_the_regressions(real: RunRecord) -> None:
    rec = synthetic(real)
    text = render_markdown(rec, comparison=compare(real, rec))
    assert "**Compared with" in text and "2 regressions" in text
    assert "SSHError: guest unreachable" in text


# -- compare ---------------------------------------------------------------------------------------------------

def test_compare_two_real_runs_shows_exactly_the_broken_expectation(real: RunRecord, broken: RunRecord) -> None:
    c = compare(real, broken)
    assert [t.nodeid for t in c.regressions] == [
        t.nodeid for t in broken.tests if t.event == "reboot" and t.outcome == "failed"]
    assert len(c.regressions) == 3  # kl-full, kl-nowide, kl-cpl0-only: handle must be invalid after reboot
    assert all("reboot" in t.nodeid for t in c.regressions)
    assert [t.nodeid for t in c.fixes] == [HOTPLUG], "the flaky hot-plug test happened to pass the second time"
    assert not c.new_skips and not c.new_failures and not c.provenance and not c.added and not c.removed
    assert c.failed


def test_an_intermittent_known_issue_stays_out_of_the_tally(real: RunRecord, broken: RunRecord,
                                                           tmp_path: Path) -> None:
    # The fixture's hotplug failure came from a guest kernel that ignored hot-added CPUs (since fixed);
    # marked intermittent here, it must count neither as a regression nor as a fix.
    issues = tmp_path / "known-issues.yaml"
    issues.write_text('- test: "testcases/test_lifecycle.py::test_handle_across_event[*:vcpu-hotplug]"\n'
                      "  accel: tcg\n  intermittent: true\n  reason: hot-added vCPU not seen\n")
    known = load_known_issues(issues)
    forward, backward = compare(real, broken, known), compare(broken, real, known)
    assert not forward.fixes and [t.nodeid for t in forward.known] == [HOTPLUG]
    assert [t.nodeid for t in backward.known] == [HOTPLUG] and len(backward.fixes) == 3
    assert not backward.regressions and not backward.failed


def test_compare_a_run_with_itself_finds_nothing(real: RunRecord) -> None:
    c = compare(real, real)
    assert not (c.regressions or c.fixes or c.new_skips or c.new_failures or c.provenance or c.significant_perf)
    assert c.perf and not c.failed


def series_pair() -> tuple[RunRecord, RunRecord]:
    base = figure_record("20990101-000000-aaaa", {"steady": (1000, 950, 1100), "wobbly": (1000, 900, 1300)},
                         tests={"a": "passed", "b": "failed", "c": "passed", "d": "passed", "gone": "passed",
                                "e": "skipped", "flaky": "passed", "flaky2": "failed", "perm": "failed"})
    new = figure_record("20990102-000000-bbbb", {"steady": (1600, 1550, 1700), "wobbly": (1150, 950, 1400)},
                        tests={"a": "failed", "b": "passed", "c": "skipped", "d": "error", "new": "passed",
                               "e": "failed", "flaky": "failed", "flaky2": "passed", "perm": "passed"})
    return base, new


def test_compare_classifies_verdict_changes() -> None:
    base, new = series_pair()
    c = compare(base, new)
    ids = lambda items: sorted(t.nodeid.split("[g:")[1].rstrip("]") for t in items)  # noqa: E731
    assert ids(c.regressions) == ["a", "d", "flaky"]
    assert ids(c.fixes) == ["b", "flaky2", "perm"]
    assert ids(c.new_skips) == ["c"]
    assert ids(c.new_failures) == ["e"]
    assert [a.split("[g:")[1] for a in c.added] == ["new]"] and [r.split("[g:")[1] for r in c.removed] == ["gone]"]
    assert c.failed


def test_known_intermittent_is_neither_regression_nor_fix_and_permanent_fix_counts() -> None:
    base, new = series_pair()
    known = KnownIssues((
        KnownIssue("comes and goes", check="flaky*", intermittent=True, accel=("tcg",)),
        KnownIssue("broken until the next QEMU", check="perm"),
        KnownIssue("only on KVM", check="a", accel=("kvm",)),
    ))
    c = compare(base, new, known)
    names = lambda items: sorted(t.nodeid.split("[g:")[1].rstrip("]") for t in items)  # noqa: E731
    assert names(c.regressions) == ["a", "d"], "the KVM-only entry must not hide a TCG regression"
    assert names(c.known) == ["flaky", "flaky2"]
    assert names(c.fixes) == ["b", "perm"], "a permanent known issue that passes is a fix"
    assert all(t.known is not None and t.known.intermittent for t in c.known)


def test_only_known_failures_do_not_fail_the_comparison() -> None:
    base = figure_record("r1", {}, tests={"x": "passed", "y": "failed"})
    new = figure_record("r2", {}, tests={"x": "failed", "y": "passed"})
    assert compare(base, new).failed
    c = compare(base, new, KnownIssues((KnownIssue("flaky", test="t.py::test[g:*]", intermittent=True),)))
    assert not c.failed and len(c.known) == 2 and not c.fixes


def test_perf_within_spread_is_not_flagged_far_outside_is() -> None:
    base, new = series_pair()
    perf = {d.name: d for d in compare(base, new).perf}
    wobbly, steady = perf["wobbly"], perf["steady"]
    assert not wobbly.significant and wobbly.direction == "within noise"  # +15 %, inside a ±200 spread
    assert steady.significant and steady.direction == "slower"  # +60 %, far outside ±~75
    assert steady.threshold == pytest.approx(threshold(Stats(1000, 950, 1100), Stats(1600, 1550, 1700), floor=20))
    faster = compare(new, base).perf
    assert {d.name: d.direction for d in faster} == {"steady": "faster", "wobbly": "within noise"}


def test_noise_rule_is_relative_to_the_spread_not_a_percentage() -> None:
    tight = compare(figure_record("r1", {"f": (1000, 995, 1005)}), figure_record("r2", {"f": (1050, 1045, 1055)}))
    loose = compare(figure_record("r1", {"f": (1000, 700, 1600)}), figure_record("r2", {"f": (1300, 1000, 1900)}))
    assert tight.perf[0].significant, "+5 % is real when repetitions agree to ±0.5 %"
    assert not loose.perf[0].significant, "+30 % is noise when repetitions spread ±45 %"


def test_figures_whose_provenance_changed_are_not_compared_and_native_loss_is_loud() -> None:
    base = figure_record("r1", {"f": (1000, 990, 1010)}, provenance="native", tests={"x": "passed"})
    base = replace(base, tests=(replace(base.tests[0], provenance="native"),))
    new = figure_record("r2", {"f": (5000, 4900, 5100)}, provenance="emulated", tests={"x": "passed"})
    new = replace(new, tests=(replace(new.tests[0], provenance="emulated"),))
    c = compare(base, new)
    assert not c.perf[0].significant and c.perf[0].note == "provenance native → emulated"
    assert [p.loud for p in c.provenance] == [True] and c.failed and not c.regressions
    assert not compare(new, base).failed, "emulated → native is a change, not a loss"


def test_boot_time_uses_a_noise_floor_and_the_spread_of_earlier_runs() -> None:
    base = figure_record("r1", {}, boot=4.0)
    assert not compare(base, figure_record("r2", {}, boot=5.5)).boot[0].significant  # +37 %: under the floor
    assert compare(base, figure_record("r2", {}, boot=9.0)).boot[0].significant
    steady = [figure_record(f"h{i}", {}, boot=b) for i, b in enumerate((4.0, 4.1, 3.9, 4.0))]
    noisy = [figure_record(f"h{i}", {}, boot=b) for i, b in enumerate((2.0, 12.0, 3.0, 14.0))]
    assert compare(base, figure_record("r2", {}, boot=9.0), history=steady).boot[0].significant
    assert not compare(base, figure_record("r2", {}, boot=9.0), history=noisy).boot[0].significant


# -- known issues file ----------------------------------------------------------------------------------------------

def test_shipped_known_issues_file_loads() -> None:
    assert isinstance(load_known_issues(REPO / "configs" / "known-issues.yaml"), KnownIssues)


def test_known_issues_file_matches_by_glob_and_environment(tmp_path: Path) -> None:
    p = tmp_path / "k.yaml"
    p.write_text("- test: 'testcases/test_lifecycle.py::*[*:vcpu-hotplug]'\n  accel: tcg\n  intermittent: true\n"
                 "  reason: hot-plugged vCPU never online under TCG\n  link: https://example.invalid/42\n"
                 "- check: 'integrity.bitflip.*'\n  profile: [stock-kvm, kvm-kl-rfc]\n  backend: native\n"
                 "  reason: slow\n")
    k = load_known_issues(p, display="k.yaml")
    hot = TestEntry(nodeid="testcases/test_lifecycle.py::test_handle_across_event[kl-full:vcpu-hotplug]",
                    test="test_handle_across_event", guest="kl-full", event="vcpu-hotplug", outcome="failed")
    env = {"profile": "emulated", "accel": "tcg", "backend": "emulated", "guest": "kl-full"}
    assert k.match(hot, env) is k.issues[0] and k.issues[0].where == "k.yaml:1"
    assert k.match(hot, {**env, "accel": "kvm"}) is None
    assert glob_match("*[kl-full:reboot]", "t.py::test[kl-full:reboot]"), "brackets are literal"
    assert not glob_match("*[ab]", "t.py::test_a") and not glob_match("t.py::*", "x/t.py::test")
    flip = TestEntry(nodeid="x", test="test_check", guest="kl-full", check="integrity.bitflip.h384", outcome="failed")
    assert k.match(flip, env) is None
    assert k.match(flip, {**env, "profile": "kvm-kl-rfc", "backend": "native"}) is k.issues[1]


@pytest.mark.parametrize(("text", "message"), [
    ("- test: a\n  reason: r\n  acel: tcg\n", "k.yaml:3: [0].acel: unknown setting (did you mean 'accel'?)"),
    ("- test: a\n  reason: r\n  accel: tgc\n", "k.yaml:3: [0].accel: 'tgc' is not one of kvm, tcg (did you mean"),
    ("- test: a\n", "k.yaml:1: [0]: missing required setting 'reason'"),
    ("- check: a\n  reason: r\n  intermittent: yes please\n", "k.yaml:3: [0].intermittent: 'yes please' is not true"),
    ("- test: a\n  reason: r\n- reason: everything\n", "k.yaml:3: [1]: give 'test' (a node id glob) or 'check'"),
    ("test: a\n", "k.yaml:1: (top): expected a list of known issues"),
    ("- test: a\n  reason: r\n  link: example.com/1\n", "k.yaml:3: [0].link: 'example.com/1' is not a link"),
])
def test_known_issue_errors_name_file_line_field_and_fix(tmp_path: Path, text: str, message: str) -> None:
    p = tmp_path / "k.yaml"
    p.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_known_issues(p, display="k.yaml")
    assert str(err.value).startswith(message), str(err.value)


def test_missing_known_issues_file_is_an_error_unless_optional(tmp_path: Path) -> None:
    assert len(load_known_issues(tmp_path / "none.yaml", missing_ok=True)) == 0
    with pytest.raises(ConfigError, match="no such file"):
        load_known_issues(tmp_path / "none.yaml")


# -- history ----------------------------------------------------------------------------------------------------

def history_series() -> list[RunRecord]:
    """Eight nights: a flaky test, a steadily failing one, a creeping figure and a noisy steady one."""
    flaky = ["passed", "failed", "passed", "passed", "failed", "passed", "passed", "passed"]
    regressed = ["passed"] * 5 + ["failed"] * 3
    out = []
    for i in range(8):
        creep = 1000 + 40 * i  # +4 % a night: never beyond noise night to night, +28 % over the window
        noisy = 1000 + (120 if i % 2 else -120)
        out.append(figure_record(f"2099010{i}-000000-000{i}", {"creep": (creep, creep - 50, creep + 50),
                                                              "noisy": (noisy, noisy - 300, noisy + 300)},
                                 tests={"flaky": flaky[i], "broken": "failed", "fine": "passed",
                                        "regressed": regressed[i]}))
    return out


def test_history_finds_flaky_tests_and_slow_drift() -> None:
    series = history_series()
    h = build_history(series)
    tests = {t.nodeid.split("[g:")[1].rstrip("]"): t for t in h.tests}
    assert tests["flaky"].flaky and tests["flaky"].flips == 4
    assert not tests["broken"].flaky and not tests["fine"].flaky and tests["fine"].always_passed
    assert not tests["regressed"].flaky and tests["regressed"].trend == "REGRESSED"
    assert tests["flaky"].trend == "FLAKY (4 flips)" and tests["broken"].trend == ""
    figs = {s.name: s for s in h.figures}
    assert figs["creep"].drift is not None and figs["creep"].drift.significant
    assert figs["creep"].drift.direction == "slower"
    assert figs["noisy"].drift is not None and not figs["noisy"].drift.significant
    assert build_history(series[:3]).figures[0].drift is None, "three nights are no trend"
    nightly = [compare(a, b).perf for a, b in itertools.pairwise(series)]
    assert not any(d.significant for p in nightly for d in p if d.name == "creep"), "drift no night flags"


def test_history_table_and_page(tmp_path: Path) -> None:
    for r in history_series():
        d = tmp_path / r.run_id
        d.mkdir()
        (d / "record.json").write_text(json.dumps(r.to_json()))
    (tmp_path / "not-a-run").mkdir()
    (tmp_path / "latest").symlink_to(history_series()[-1].run_id)
    h = load_history(tmp_path, 5)
    assert h.runs == tuple(r.run_id for r in history_series()[-5:])
    table = render_table(h)
    assert "FLAKY" in table and "REGRESSED" in table and "DRIFT slower" in table
    assert "fine" not in table.split("figures")[0], "always-passing tests are left out by default"
    page = Page(render_history_html(h, source=str(tmp_path)))
    assert page.tags["svg"] >= 3 and page.tags["script"] == 0
    assert "FLAKY" in page.all_text()


# -- files and CLI ------------------------------------------------------------------------------------------------

def copy_run(src: Path, dst: Path, record: RunRecord | None = None) -> Path:
    shutil.copytree(src, dst)
    if record is not None:
        (dst / "record.json").write_text(json.dumps(record.to_json()))
    return dst


def test_write_reports_and_after_run(real: RunRecord, tmp_path: Path) -> None:
    run = copy_run(REAL, tmp_path / "run")
    html_path, md_path = write_reports(run, baseline=REAL)
    assert "Changes since" in html_path.read_text() and md_path.read_text().startswith("### klharness run")
    assert "HTML report:" in after_run(run)
    assert after_run(tmp_path / "nothing").startswith("reports: not written: ")


def test_cli_compare_exits_1_only_on_regressions(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    none = tmp_path / "none.yaml"
    none.write_text("[]\n")
    assert main(["report", "compare", str(REAL), str(BROKEN), "--known-issues", str(none),
                 "-o", str(tmp_path / "c.md")]) == 1
    out = capsys.readouterr().out
    assert "3 regressions" in out and (tmp_path / "c.md").read_text() == out
    assert main(["report", "compare", str(BROKEN), str(REAL), "--known-issues", str(none)]) == 1
    out = capsys.readouterr().out
    assert "Fixes (failing → passed): 3" in out and "1 regressions" in out  # the flaky hot-plug
    k = tmp_path / "k.yaml"
    k.write_text("- test: '*[*:vcpu-hotplug]'\n  intermittent: true\n  reason: flaky under TCG\n")
    assert main(["report", "compare", str(BROKEN), str(REAL), "--known-issues", str(k)]) == 0
    assert "Known issues (not counted): 1" in capsys.readouterr().out
    k.write_text("- test: '*[*:reboot]'\n  intermittent: true\n  reason: under investigation\n")
    assert main(["report", "compare", str(REAL), str(BROKEN), "--known-issues", str(k)]) == 0
    k.write_text("- test: '*'\n  reason: r\n  accel: tgc\n")
    assert main(["report", "compare", str(REAL), str(BROKEN), "--known-issues", str(k)]) == 2
    assert "k.yaml:3: [0].accel" in capsys.readouterr().err


def test_cli_html_markdown_history(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = copy_run(BROKEN, tmp_path / "runs" / "20990101-000000-aaaa")
    none = tmp_path / "none.yaml"
    none.write_text("[]\n")
    assert main(["report", "html", str(run / "record.json"), "--baseline", str(REAL), "--known-issues", str(none)]) == 0
    assert "3 Regressions" in Page((run / "report.html").read_text()).section("changes")
    assert main(["report", "markdown", str(run), "--baseline", str(REAL), "--known-issues", str(none)]) == 0
    assert "3 regressions" in capsys.readouterr().out
    assert main(["report", "history", str(tmp_path / "runs"), "-n", "3", "-o", str(tmp_path / "h.html")]) == 0
    assert "1 runs, oldest first" in capsys.readouterr().out and (tmp_path / "h.html").exists()
    with pytest.raises(SystemExit):
        main(["report", "history", str(tmp_path / "runs"), "-n", "0"])


# -- a real browser ---------------------------------------------------------------------------------------------------

CHROMIUM = shutil.which("chromium")
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run", "--window-size=1400,1000"]


def chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    assert CHROMIUM is not None
    argv = [CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}", *args]
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    except subprocess.TimeoutExpired:
        # It renders in about a second; a hang is what a script dialog (an unescaped <script>) does.
        pytest.fail("chromium did not finish within 60 s: a script in the page (alert dialog) or a fetch hangs it")


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (Debian package 'chromium')")
def test_report_renders_in_headless_chromium(real: RunRecord, tmp_path: Path) -> None:
    rec = synthetic(real)
    page = tmp_path / "report.html"
    page.write_text(render_html(rec, run_dir=REAL, comparison=compare(real, rec)))
    dom = chromium(tmp_path, "--enable-logging=stderr", "--dump-dom", page.as_uri())
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert "CONSOLE" not in dom.stderr and "Failed to load" not in dom.stderr, dom.stderr[-2000:]
    rendered = Page(dom.stdout)
    assert rendered.tags["script"] == 0, "the browser saw no script (the hostile reason stayed text)"
    assert HOSTILE in rendered.section("failures")
    assert "SSHError: guest unreachable" in rendered.section("failures")
    c = counts(rec)
    assert f"{c['failed']} failed" in rendered.section("summary")
    shot = tmp_path / "report.png"
    res = chromium(tmp_path, f"--screenshot={shot}", page.as_uri())
    assert res.returncode == 0, res.stderr[-2000:]
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert struct.unpack(">II", data[16:24]) == (1400, 1000)
    assert len(data) > 20_000, "a blank page compresses to a few kB"
    keep = os.environ.get("KLH_REPORT_SCREENSHOT")  # a path to look at the screenshot afterwards
    if keep:
        shutil.copy(shot, keep)


# -- scripts/nightly with a stand-in for `klharness run` ------------------------------------------------------------

FAKE_KLHARNESS = """#!/usr/bin/env bash
# `run` copies $FAKE_RECORD into a new run directory (nothing when it is empty); the rest is the real CLI.
if [ "$1" = run ]; then
    dir=$4
    n=$(( $(cat "$dir/.n" 2>/dev/null || echo 0) + 1 )); echo $n > "$dir/.n"
    id=$(printf '20990101-%06d-abcd' "$n")
    [ -n "$FAKE_RECORD" ] || exit 3
    mkdir -p "$dir/$id"
    sed "s/\\"run_id\\": \\"[^\\"]*\\"/\\"run_id\\": \\"$id\\"/" "$FAKE_RECORD" > "$dir/$id/record.json"
    exit 1
fi
exec python3 -m harness.cli "$@"
"""


@pytest.mark.slow
def test_nightly_script_compares_keeps_n_runs_and_fails_only_on_regressions(tmp_path: Path) -> None:
    fake = tmp_path / "klharness"
    fake.write_text(FAKE_KLHARNESS)
    fake.chmod(0o755)
    none = tmp_path / "none.yaml"
    none.write_text("[]\n")
    results = tmp_path / "nightly"
    env = {**os.environ, "KLHARNESS": str(fake), "KLH_NIGHTLY_DIR": str(results), "KLH_NIGHTLY_KEEP": "2",
           "KLH_KNOWN_ISSUES": str(none), "PYTHONPATH": str(REPO)}

    def night(record: Path | None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["bash", str(REPO / "scripts" / "nightly")], capture_output=True, text=True,
                              env={**env, "FAKE_RECORD": str(record or "")}, timeout=300, check=False)

    first = night(REAL / "record.json")
    assert first.returncode == 0, first.stdout + first.stderr
    assert "first run" in first.stdout
    second = night(BROKEN / "record.json")
    assert second.returncode == 1, second.stdout + second.stderr  # the three reboot regressions
    assert "3 regressions" in second.stdout
    third = night(BROKEN / "record.json")
    assert third.returncode == 0, third.stdout + third.stderr  # still failing is not a regression
    runs = sorted(p.name for p in results.iterdir() if p.is_dir() and not p.is_symlink())
    assert runs == ["20990101-000002-abcd", "20990101-000003-abcd"], "retention keeps the newest 2"
    assert (results / "latest").resolve().name == "20990101-000003-abcd"
    newest = results / "20990101-000003-abcd"
    assert "Compared with `20990101-000002-abcd`: no regressions" in (newest / "summary.md").read_text()
    assert "Changes since 20990101-000002-abcd" in (newest / "report.html").read_text()
    assert (results / "history.html").exists() and "REGRESSED" not in (results / "history.txt").read_text()
    broken_run = night(None)
    assert broken_run.returncode == 3 and "wrote no run record" in broken_run.stderr


def test_the_stacks_table_puts_three_profiles_beside_what_a_run_saw() -> None:
    from harness.plan.profiles import load_profile
    from harness.report import stacks

    def cell(guest: str, outcome: str, **fields: object) -> TestEntry:
        return TestEntry(nodeid=f"t.py::t[{guest}]", test="t", guest=guest, outcome=outcome, **fields)

    record = RunRecord(run_id="r", profile="qemu-kl", tests=(
        cell("kl-full", "passed", event="migrate", observation={"handle_valid": True}),
        cell("kl-blocked", "passed", event="migrate", observation={"refused": "blocker"}),
        cell("kl-full", "failed", event="reboot", observation={"handle_valid": True}),
        cell("kl-full", "passed", check="x")))
    profiles = {s: load_profile(s) for s in stacks.STACKS}
    rows = {r[0]: r for r in stacks.table(profiles, [record])}
    assert rows["event"] == ["event", "emulated (profile)", "emulated-random (profile)", "qemu-kl (profile)",
                             "kvm-kl-rfc (profile)", "observed"]
    # Where the in-guest model and the VMM disagree: a random KeySource across migration.
    assert rows["migrate"] == ["migrate", "valid", "valid; random keysource: invalid",
                               "valid; random keysource: valid; migration blocker: refused", "refused",
                               "qemu-kl:kl-full=valid, qemu-kl:kl-blocked=refused"]
    assert rows["reboot"][-1] == "qemu-kl:kl-full=valid ✗"  # the profile said invalid: the run failed it
    assert rows["suspend"][-1] == "—"
    assert stacks.for_record(RunRecord(run_id="r")) is None
    assert stacks.markdown(list(rows.values())).startswith("| event | emulated (profile) |")
