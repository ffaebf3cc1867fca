"""Rerun and reproduce: the invocation in the record (harness/results/invocation.py), what ``klharness
rerun`` runs (harness/results/rerun.py), the reproduce command of a cell (harness/report/reproduce.py)
in the terminal, Markdown and HTML summaries, and ``report compare`` over a rerun — on the real run
records of tests/data/runs, and end to end through pytest without libvirt."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from harness.commands.run import pytest_args, summarize
from harness.errors import ConfigError
from harness.report.compare import compare
from harness.report.html import render_html
from harness.report.markdown import render_comparison, render_markdown
from harness.report.reproduce import reproduce_command
from harness.results.invocation import Invocation, RerunOf
from harness.results.record import load_record
from harness.results.rerun import failed_cells, rerun_invocation
from harness.results.schema import GuestEntry, RunRecord, TestEntry

REPO = Path(__file__).resolve().parent.parent
REAL = REPO / "tests" / "data" / "runs" / "real"
BROKEN = REPO / "tests" / "data" / "runs" / "real-broken"
KLHARNESS = [sys.executable, "-m", "harness.cli"]
REBOOTS = [f"testcases/test_lifecycle.py::test_handle_across_event[{g}:reboot]"
           for g in ("kl-full", "kl-nowide", "kl-cpl0-only")]


@pytest.fixture(scope="module")
def broken() -> RunRecord:
    return load_record(BROKEN)


def cell(nodeid: str) -> TestEntry:
    return TestEntry(nodeid=nodeid, test=nodeid.rsplit("::", 1)[-1].split("[")[0], guest="g", outcome="failed")


# -- the invocation in the record ----------------------------------------------------------------------------------

def test_an_invocation_survives_the_record_unchanged() -> None:
    inv = Invocation(config="/r/configs/ci.yaml", profile="stock-kvm", uri="qemu:///system", keep="all",
                     results="/r/results", keyword="kl-off", tests=("/r/testcases/test_x.py::test_y[g]",),
                     pytest_args=("-x",), argv=("klharness", "run"), cwd="/r", rootdir="/r")
    record = RunRecord(run_id="r1", invocation=json.loads(json.dumps(inv.to_record())))
    assert Invocation.from_record(record, "rec.json") == inv


def test_a_password_in_the_uri_never_reaches_the_record() -> None:
    inv = Invocation(config="/c.yaml", uri="qemu+tcp://lab:hunter2@lab1/system",
                     argv=("klharness", "run", "--uri", "qemu+tcp://lab:hunter2@lab1/system"))
    text = json.dumps(inv.to_record())
    assert "hunter2" not in text
    assert Invocation.from_record(RunRecord(run_id="r1", invocation=inv.to_record()), "rec.json").secret_redacted


def test_an_older_record_is_rerun_with_its_config_and_profile(broken: RunRecord) -> None:
    real = Invocation.from_record(load_record(REAL), "real/record.json")
    assert (real.config, real.profile, real.uri) == (str(REPO / "configs" / "nightly.yaml"), "emulated", None)
    # A private copy of a profile is named by its file, not by a name configs/profiles/ does not have.
    assert Invocation.from_record(broken, "x").profile == "/tmp/klh-broken/emulated-broken.yaml"


@pytest.mark.parametrize(("invocation", "message"), [
    ({"config": 3}, "rec.json: invocation.config: expected a string, got 3"),
    ({"config": "/c.yaml", "tests": "a.py"}, "rec.json: invocation.tests: expected a list of strings, got 'a.py'"),
    ({"profile": "p"}, "rec.json: invocation.config: missing"),
    ([], "rec.json: invocation: expected an object, got list"),
])
def test_a_malformed_invocation_names_the_record_and_the_field(invocation: Any, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        Invocation.from_record(RunRecord(run_id="r1", invocation=invocation), "rec.json")
    assert str(err.value).startswith(message)
    assert "klharness run CONFIG --profile P" in str(err.value)


# -- what a rerun runs ---------------------------------------------------------------------------------------

def test_the_failed_cells_of_a_run_are_its_failed_and_errored_tests(broken: RunRecord) -> None:
    assert failed_cells(broken) == REBOOTS
    errored = replace(broken, tests=(replace(broken.tests[0], outcome="error"), *broken.tests))
    assert failed_cells(errored) == [broken.tests[0].nodeid, *REBOOTS]


def test_rerun_failed_selects_exactly_those_node_ids_and_links_the_old_run(broken: RunRecord) -> None:
    inv = rerun_invocation(broken, BROKEN, failed_only=True)
    assert inv is not None
    assert inv.tests == tuple(str(REPO / n) for n in REBOOTS)
    assert inv.keyword is None
    assert inv.rerun_of == RerunOf("20261126-141543-1fed", str(BROKEN / "record.json"), True)
    assert inv.results == str(BROKEN.parent)  # next to the run it repeats
    args = pytest_args(inv, "new-id", Path("/res"))
    assert args[:3] == list(inv.tests)  # in place of the whole catalogue
    assert str(REPO / "testcases") not in args
    assert "--kl-profile=/tmp/klh-broken/emulated-broken.yaml" in args


def test_a_full_rerun_keeps_the_selection_and_options_of_the_run() -> None:
    inv = Invocation(config="/c.yaml", profile="stock-kvm", keyword="kl-off", keep="all", pytest_args=("-x",))
    record = RunRecord(run_id="r1", invocation=inv.to_record())
    again = rerun_invocation(record, Path("/res/r1"), failed_only=False)
    assert again is not None
    args = pytest_args(again, "r2", Path("/res"))
    assert args[0] == str(REPO / "testcases")
    assert {"--kl-profile=stock-kvm", "--kl-keep=all", "kl-off", "-x"} <= set(args)
    assert again.rerun_of == RerunOf("r1", "/res/r1/record.json", False)


def test_rerun_failed_of_a_run_without_failures_runs_nothing() -> None:
    record = load_record(REAL)
    record = replace(record, tests=tuple(t for t in record.tests if t.outcome == "passed"))
    assert rerun_invocation(record, REAL, failed_only=True) is None


def test_a_uri_that_lost_its_password_must_be_given_again() -> None:
    inv = Invocation(config="/c.yaml", uri="qemu+tcp://lab:pw@lab1/system")
    record = RunRecord(run_id="r1", invocation=inv.to_record())
    with pytest.raises(ConfigError, match=r"/res/r1/record.json: invocation.uri: qemu\+tcp://lab:\*\*\*@lab1/system "
                                          r"lost its password .* give the URI again with --uri"):
        rerun_invocation(record, Path("/res/r1"), failed_only=False)
    again = rerun_invocation(record, Path("/res/r1"), failed_only=False, uri="qemu+tcp://lab:pw@lab1/system")
    assert again is not None and again.uri == "qemu+tcp://lab:pw@lab1/system"


# -- the reproduce command ------------------------------------------------------------------------------------------

def test_each_failure_has_a_command_naming_the_config_profile_and_cell(broken: RunRecord) -> None:
    failed = [t for t in broken.tests if t.outcome == "failed"]
    assert reproduce_command(broken, failed[0]) == (
        "klharness run configs/nightly.yaml --profile /tmp/klh-broken/emulated-broken.yaml "
        "-k 'test_handle_across_event[kl-full:reboot]'")
    recorded = replace(broken, invocation=Invocation(config=str(REPO / "configs/ci.yaml"), profile="stock-kvm",
                                                     uri="qemu:///session").to_record())
    assert reproduce_command(recorded, failed[0]) == (
        "klharness run configs/ci.yaml --profile stock-kvm --uri qemu:///session "
        "-k 'test_handle_across_event[kl-full:reboot]'")


def test_a_name_k_cannot_express_is_reproduced_through_its_node_id() -> None:
    record = RunRecord(run_id="r1", config="configs/ci.yaml", profile="emulated",
                       profile_source="configs/profiles/emulated.yaml")
    cmd = reproduce_command(record, cell("testcases/test_x.py::test_y[a b]"))
    assert shlex.split(cmd) == ["pytest", "testcases/test_x.py::test_y[a b]", "--kl-config=configs/ci.yaml",
                                "--kl-profile=emulated"]


TWO_GUESTS = """
run: {profile: stock-kvm, kl_backend: emulated}
guests:
  - name: kl-a
    kl: {enabled: true}
  - name: kl-ab
    kl: {enabled: true}
lifecycle: [save-restore, reboot]
"""


def test_the_reproduce_expression_selects_that_one_cell(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_lifecycle=(REPO / "testcases" / "test_lifecycle.py").read_text())
    cfg = pytester.makefile(".yaml", matrix=TWO_GUESTS)
    nodeid = "test_lifecycle.py::test_handle_across_event[kl-a:reboot]"
    record = RunRecord(run_id="r1", config=str(cfg), profile="stock-kvm")
    argv = shlex.split(reproduce_command(record, cell(f"testcases/{nodeid}")))
    keyword = argv[argv.index("-k") + 1]
    result = pytester.runpytest("--collect-only", "-q", f"--kl-config={cfg}", "-k", keyword,
                                f"--kl-results={pytester.path}", "-p", "no:cacheprovider")
    assert [ln for ln in result.stdout.lines if "::" in ln] == [nodeid]  # not kl-ab's, not save-restore


def test_the_terminal_markdown_and_html_summaries_carry_each_failures_command(broken: RunRecord) -> None:
    commands = [reproduce_command(broken, t) for t in broken.tests if t.outcome == "failed"]
    assert len(commands) == 3
    text, md, page = summarize(broken), render_markdown(broken), render_html(broken)
    for cmd in commands:
        assert f"    reproduce: {cmd}" in text
        assert f"  reproduce: `{cmd}`" in md
        assert f"reproduce: <code>{cmd.replace(chr(39), '&#x27;')}</code>" in page


# -- compare over a rerun -------------------------------------------------------------------------------------------

def _rerun_of(base: RunRecord, passed: set[str]) -> RunRecord:
    """A --failed rerun of ``base``: its failed cells again, those in ``passed`` passing now."""
    return replace(base, run_id="20261127-090000-beef", rerun_of=RerunOf(base.run_id, "x", True),
                   tests=tuple(replace(t, outcome="passed" if t.nodeid in passed else t.outcome)
                               for t in base.tests if t.outcome in ("failed", "error")))


def test_compare_takes_a_rerun_over_its_cells_only(broken: RunRecord) -> None:
    rerun = _rerun_of(broken, passed={REBOOTS[0]})
    c = compare(broken, rerun)
    assert (c.rerun, c.failed_only, c.scope) == (True, True, 3)
    assert c.removed == ()  # the 234 cells it did not rerun are not "gone"
    assert [t.nodeid for t in c.fixes] == [REBOOTS[0]]
    assert [t.nodeid for t in c.still_failing] == REBOOTS[1:]
    text = render_comparison(c)
    assert text.startswith("**Rerun `20261127-090000-beef` of `20261126-141543-1fed`, compared over its 3 rerun "
                           "cells only: no regressions**")
    assert "- Still failing (failing both times): 2" in text
    assert "- Passed on rerun (failing → passed: flaky, or fixed since): 1" in text
    # The same records without the link: an ordinary comparison, where everything not rerun is gone.
    plain = compare(broken, replace(rerun, rerun_of=None))
    assert not plain.rerun and len(plain.removed) == len(broken.tests) - 3


def test_the_html_report_of_a_rerun_says_what_it_reran(broken: RunRecord) -> None:
    rerun = _rerun_of(broken, passed=set())
    page = render_html(rerun, comparison=compare(broken, rerun))
    assert "rerun of <b>20261126-141543-1fed</b> (its failed cells only)" in page
    assert "<h2>Rerun of 20261126-141543-1fed: its 3 rerun cells compared</h2>" in page
    assert "Still failing (failing both times): 3" in page


# -- end to end: a run with a deliberately broken expectation, then rerun --failed -----------------------------

CELLS = '''
def test_answer(kl_guest, kl_record):
    kl_record.update(expectation={"answer": 42})
    assert kl_guest != "kl-ab", "deliberately broken expectation for kl-ab"

def test_other(kl_guest):
    pass
'''


def test_rerun_failed_reruns_exactly_the_failed_cells_and_links_the_records(tmp_path: Path) -> None:
    (tmp_path / "test_cells.py").write_text(CELLS)
    cfg = tmp_path / "matrix.yaml"
    cfg.write_text(TWO_GUESTS)
    res = tmp_path / "res"
    first = subprocess.run([sys.executable, "-m", "pytest", "test_cells.py", f"--kl-config={cfg}",
                            f"--kl-results={res}", "--kl-run-id=first", "-p", "no:cacheprovider", "-q"],
                           cwd=tmp_path, capture_output=True, text=True, timeout=300, check=False)
    assert first.returncode == 1, first.stdout + first.stderr
    old = load_record(res / "first")
    assert failed_cells(old) == ["test_cells.py::test_answer[kl-ab]"]
    assert old.invocation is not None and old.invocation["tests"] == [str(tmp_path / "test_cells.py")]

    again = subprocess.run([*KLHARNESS, "rerun", str(res / "first"), "--failed"], cwd=REPO, capture_output=True,
                           text=True, timeout=300, check=False)
    assert again.returncode == 1, again.stdout + again.stderr
    assert "run first again, its 1 failed cells" in again.stdout
    new_dir = next(d for d in res.iterdir() if d.name != "first")
    new = load_record(new_dir)
    assert [t.nodeid for t in new.tests] == ["test_cells.py::test_answer[kl-ab]"]
    assert new.rerun_of == RerunOf("first", str(res / "first" / "record.json"), True)
    assert new.to_json()["rerun_of"] == {"run_id": "first", "record": str(res / "first" / "record.json"),
                                         "failed_only": True}
    assert (new.config, new.profile) == (old.config, old.profile)
    assert new.invocation is not None
    assert new.invocation["argv"] == ["klharness", "rerun", str(res / "first"), "--failed"]
    # Not a catalogue test: reproduced through pytest and its node id, not klharness run's catalogue.
    assert (f"reproduce: pytest '{tmp_path}/test_cells.py::test_answer[kl-ab]' --kl-config={cfg} "
            "--kl-profile=stock-kvm") in again.stdout

    fixed = replace(new, tests=tuple(replace(t, outcome="passed") for t in new.tests))
    (res / "nothing").mkdir()
    (res / "nothing" / "record.json").write_text(json.dumps(fixed.to_json()))
    none = subprocess.run([*KLHARNESS, "rerun", str(res / "nothing"), "--failed"], cwd=REPO, capture_output=True,
                          text=True, timeout=300, check=False)
    assert none.returncode == 0 and "nothing to rerun" in none.stdout, none.stdout + none.stderr


def test_rerun_of_something_that_is_not_a_run_says_so(tmp_path: Path) -> None:
    res = subprocess.run([*KLHARNESS, "rerun", str(tmp_path)], cwd=REPO, capture_output=True, text=True,
                         timeout=120, check=False)
    assert res.returncode == 3
    assert f"klharness: error: {tmp_path / 'record.json'}: no run record here" in res.stderr


def test_the_terminal_summary_says_which_kernel_each_guest_booted() -> None:
    booted = GuestEntry(backend="emulated", host="local", timings={"ssh_ready": 3.2},
                        kernel="6.1.192-klh (klharness: linux-source-6.1 6.1.192-3, guest_images/kernel/klh.config)")
    record = RunRecord(run_id="r1", profile="emulated",
                       guests={"kl-a": booted, "kl-a-reboot": replace(booted, kernel="6.1.0-57-cloud-amd64 (Debian)"),
                               "cloud": replace(booted, kernel=None)},
                       tests=(replace(cell("testcases/test_exposure.py::test_x[kl-a]"), guest="kl-a", outcome="passed"),
                              replace(cell("testcases/test_exposure.py::test_x[cloud]"), guest="cloud",
                                      outcome="passed")))
    text = summarize(record)
    assert "kl-a: VMM backend emulated, host local, kernel 6.1.192-klh, boot->ssh 3.2s" in text
    assert "kl-a-reboot: kernel 6.1.0-57-cloud-amd64, boot->ssh 3.2s (lifecycle guest)" in text
    assert "cloud: VMM backend emulated, host local, boot->ssh 3.2s" in text  # a disk image's kernel: not known


def test_the_terminal_summary_names_a_host_left_out_and_teardown_failures() -> None:
    record = RunRecord(run_id="r1", profile="emulated", guests={},
                       hosts_down={"lab": "HostError: host root@lab:22 unreachable over SSH"},
                       teardown_errors=("delete staged files (fw_cfg blobs, save images) on lab: VirtError: gone",))
    text = summarize(record)
    assert "host lab left out (its guests ran on the other hosts): HostError: host root@lab:22 unreachable" in text
    assert "teardown: delete staged files (fw_cfg blobs, save images) on lab: VirtError: gone" in text
