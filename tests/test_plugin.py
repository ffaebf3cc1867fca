"""The pytest plugin, exercised with pytester: parametrization from the matrix, usage errors,
skips with the profile's reason, and the run record it writes — without booting guests.  The
records are read through the schema (harness.results.schema), so a key the plugin writes with
the wrong kind fails here."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.results.record import load_record
from harness.results.schema import Verdict

REPO = Path(__file__).resolve().parent.parent

KL_ONLY = """
run: {profile: stock-kvm, kl_backend: emulated}
guests:
  - name: kl-a
    vcpus: 2
    max_vcpus: 3
    kl: {enabled: true}
lifecycle: [save-restore, vcpu-hotplug]
"""


def catalogue(pytester: pytest.Pytester) -> None:
    for name in ("test_instructions.py", "test_lifecycle.py", "test_exposure.py"):
        pytester.makepyfile(**{name[:-3]: (REPO / "testcases" / name).read_text()})


def test_collect_only_shows_one_test_per_check_and_event(pytester: pytest.Pytester) -> None:
    catalogue(pytester)
    cfg = pytester.makefile(".yaml", matrix=KL_ONLY)
    result = pytester.runpytest("--collect-only", "-q", f"--kl-config={cfg}", f"--kl-results={pytester.path}")
    out = result.stdout.str()
    assert "test_check[kl-a:aesenc128kl.fips197_c1]" in out
    assert "test_check[kl-a:ud.aesenc128kl]" not in out
    assert "test_handle_across_event[kl-a:save-restore]" in out
    assert "test_handle_across_event[kl-a:vcpu-hotplug]" in out
    assert "test_kl_guest_sees_key_locker_exactly_as_configured[kl-a]" in out


def test_stock_kvm_skips_kl_cells_with_the_profile_reason(pytester: pytest.Pytester) -> None:
    catalogue(pytester)
    cfg = pytester.makefile(".yaml", matrix=KL_ONLY)
    result = pytester.runpytest("-rs", f"--kl-config={cfg}", f"--kl-results={pytester.path / 'res'}",
                                "--kl-run-id=t1", "-p", "no:cacheprovider")
    outcomes = result.parseoutcomes()
    assert outcomes.get("skipped", 0) > 40 and "passed" not in outcomes and "failed" not in outcomes
    result.stdout.fnmatch_lines(["*mainline KVM treats CR4.KL as reserved*"])
    record = load_record(pytester.path / "res" / "t1")
    assert record.status == "complete" and record.profile == "stock-kvm"
    assert {t.outcome for t in record.tests} == {"skipped"}
    assert all(t.reason and "CR4.KL as reserved" in t.reason for t in record.tests)


def test_bad_config_is_a_usage_error_naming_the_line(pytester: pytest.Pytester) -> None:
    catalogue(pytester)
    cfg = pytester.makefile(".yaml", matrix="guests:\n  - name: a\n    memory: 2 GB\n")
    result = pytester.runpytest(f"--kl-config={cfg}", f"--kl-results={pytester.path}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*matrix.yaml:3: guests[[]0[]].memory: '2 GB' is not a size (use 2G or 2048M)*"])


def test_unknown_profile_is_a_usage_error(pytester: pytest.Pytester) -> None:
    catalogue(pytester)
    cfg = pytester.makefile(".yaml", matrix=KL_ONLY)
    result = pytester.runpytest(f"--kl-config={cfg}", "--kl-profile=nope", f"--kl-results={pytester.path}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*profile 'nope': no configs/profiles/nope.yaml*"])


def test_plugin_is_inert_for_ordinary_tests(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_plain():\n    assert 1 + 1 == 2\n")
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    assert "klharness run record" not in result.stdout.str()


def test_infrastructure_errors_are_marked_apart_from_verdicts(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_infra="""
from harness.errors import HostError

def test_broken_host(kl_guest, kl_record):
    raise HostError("the libvirt daemon went away")

def test_wrong_answer(kl_guest, kl_record):
    assert 1 == 2, "the stack answered wrongly"
""")
    cfg = pytester.makefile(".yaml", matrix=KL_ONLY)
    pytester.runpytest(f"--kl-config={cfg}", f"--kl-results={pytester.path / 'res'}", "--kl-run-id=i1",
                       "-p", "no:cacheprovider")
    tests = {t.test: t for t in load_record(pytester.path / "res" / "i1").tests}
    assert tests["test_broken_host"].infrastructure == "HostError"
    assert tests["test_wrong_answer"].infrastructure is None
    assert "infrastructure" not in tests["test_wrong_answer"].to_json()
    assert tests["test_wrong_answer"].outcome == "failed"


VERDICT_CELLS = '''
def test_judged(kl_guest, kl_record):
    kl_record.update(verdict={"passed": False, "reasons": ["ZF=1, expected 0", "XMM0 differs"]})
    assert False, "this text is not the record's reason"

def test_plain(kl_guest):
    assert kl_guest == "nope", "an assertion of the test's own"
'''


def test_the_record_keeps_the_judged_verdict_not_the_failure_text(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_cells=VERDICT_CELLS)
    cfg = pytester.makefile(".yaml", matrix=KL_ONLY)
    pytester.runpytest(f"--kl-config={cfg}", f"--kl-results={pytester.path / 'res'}", "--kl-run-id=v1",
                       "-p", "no:cacheprovider")
    tests = {t.test: t for t in load_record(pytester.path / "res" / "v1").tests}
    assert tests["test_judged"].reason == "ZF=1, expected 0; XMM0 differs"
    assert tests["test_judged"].verdict == Verdict(False, ("ZF=1, expected 0", "XMM0 differs"))
    assert tests["test_plain"].verdict is None
    assert (tests["test_plain"].reason or "").startswith("AssertionError: an assertion of the test's own")


def test_a_detail_of_the_wrong_kind_is_named_and_the_cell_keeps_its_outcome(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_kinds="""
def test_bad_source(kl_guest, kl_record):
    kl_record.update(source=["KEYLOCKER.md", "§3"], observation={"zf": 0})
""")
    cfg = pytester.makefile(".yaml", matrix=KL_ONLY)
    result = pytester.runpytest(f"--kl-config={cfg}", f"--kl-results={pytester.path / 'res'}", "--kl-run-id=k1",
                                "-p", "no:cacheprovider")
    (entry,) = [t for t in load_record(pytester.path / "res" / "k1").tests if t.test == "test_bad_source"]
    assert entry.outcome == "passed" and entry.infrastructure == "RecordError"
    assert "test_bad_source[kl-a]: kl_record: source: expected a string, got a list" in (entry.reason or "")
    assert entry.source is None and entry.observation is None  # not written as they were
    assert result.ret == 0
