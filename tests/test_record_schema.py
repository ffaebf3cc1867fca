"""The run record's schema (harness/results/schema.py): records read back unchanged, with their extra
keys; a field of the wrong kind names the file, the field and what was expected; another schema
version is refused by name; a test entry built from keyword arguments is what the plugin writes."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from harness.errors import HostError
from harness.results.record import RunRecorder, load_record
from harness.results.schema import (
    FAILING,
    SCHEMA,
    SCHEMA_VERSION,
    GuestEntry,
    RerunOf,
    RunRecord,
    TestEntry,
    Verdict,
    failing,
)

RUNS = Path(__file__).resolve().parent / "data" / "runs"

CELLS = '''
import pytest
from harness.errors import HostError

def test_judged(kl_guest, kl_record):
    kl_record.update(observation=[1, 2], expectation=None, source=None, provenance="emulated",
                     timings={"save": 0.5}, verdict={"passed": False, "reasons": ["ZF=1, expected 0"]})
    assert False

def test_plain(kl_guest, kl_record):
    kl_record.update(observation={"zf": 0}, expectation={"zf": 0}, source="KEYLOCKER.md")

def test_skipped(kl_guest):
    pytest.skip("not on this guest")

def test_broken_host(kl_guest):
    raise HostError("the daemon went away")
'''

MATRIX = """
run: {profile: stock-kvm, kl_backend: emulated}
guests:
  - name: kl-a
    kl: {enabled: true}
  - name: kl-b
    kl: {enabled: false}
"""


@pytest.fixture(scope="module")
def plugin_record(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A record written by the plugin (pytest in a subprocess, no guests): every kind of test entry."""
    import subprocess
    import sys

    where = tmp_path_factory.mktemp("run")
    (where / "test_cells.py").write_text(CELLS)
    (where / "matrix.yaml").write_text(MATRIX)
    subprocess.run([sys.executable, "-m", "pytest", "test_cells.py", "--kl-config=matrix.yaml",
                    f"--kl-results={where / 'res'}", "--kl-run-id=p1", "-p", "no:cacheprovider", "-q"],
                   cwd=where, capture_output=True, text=True, timeout=300, check=False)
    return where / "res" / "p1" / "record.json"


def recorder_record(tmp_path: Path) -> Path:
    """A record as the session and the hosts write it through RunRecorder (guests, images, teardown)."""
    rec = RunRecorder(tmp_path / "r1", "r1", {"config": "configs/ci.yaml", "profile": "emulated",
                                              "profile_source": "configs/profiles/emulated.yaml",
                                              "uri": "qemu:///system"})
    rec.update(lambda d: d.update(host={"kernel": "6.1", "accel": {"accel": "tcg", "reason": "no KVM"}},
                                  reaped=["klh-old-1 (pid 7 gone)"]))
    rec.update(lambda d: d.setdefault("timings", {}).setdefault("setup_per_host", {}).update({"local": 0.1}))
    rec.update(lambda d: d.setdefault("images", {}).update({"mini": {"key": "abc", "seconds": 0.4}}))
    rec.update(lambda d: d.setdefault("staged_images", {}).update({"lab/mini": 1.5}))
    rec.update(lambda d: d.update(placement={"kl-a": "local"}, unplaced={"kl-n": "no host runs native KL"}))
    rec.set_guest("kl-a", plan="kl-a", domain="klh-r1-kl-a", backend="emulated", host="local", spec_key="k",
                  accel="tcg", image="abc", timings={"boot_total": 6.2, "ssh_ready": 6.7}, helper=None,
                  helper_timings={}, vmm="qemu", artifacts=str(tmp_path / "r1" / "guests" / "kl-a"))
    rec.set_guest("kl-a", probe={"schema": "klharness.probe", "backend": "emulated"}, probe_seconds=1.25)
    rec.set_guest("kl-b", probe="not json: the probe crashed")
    rec.set_guest("kl-a", timings={"boot_total": 6.2, "ssh_ready": 6.7, "teardown": 2.0}, kept=False)  # release
    rec.add_test(TestEntry(nodeid="t.py::test_x[kl-a]", test="test_x", guest="kl-a", outcome="passed",
                           duration=0.01, finished=1.5).to_json())
    rec.update(lambda d: d.update(teardown_errors=["release kl-a: VirtError: gone"]))
    rec.finish("complete")
    return rec.path


def write(tmp_path: Path, data: dict[str, Any]) -> Path:
    path = tmp_path / "record.json"
    path.write_text(json.dumps(data))
    return path


def raw(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text())
    return data


# -- round trip --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("run", ["real", "real-broken"])
def test_the_fixture_records_read_back_unchanged(run: Path) -> None:
    path = RUNS / run / "record.json"
    data = raw(path)
    record = RunRecord.from_json(data, source=path)
    assert record.to_json() == data
    assert len(record.tests) == len(data["tests"]) and set(record.guests) == set(data["guests"])
    assert not record.extra and all(not t.extra for t in record.tests)  # every key of a real record is typed


def test_a_record_the_plugin_wrote_reads_back_unchanged(plugin_record: Path) -> None:
    data = raw(plugin_record)
    record = load_record(plugin_record)
    assert record.to_json() == data
    tests = {t.test: t for t in record.tests}
    assert set(tests) == {"test_judged", "test_plain", "test_skipped", "test_broken_host"}
    judged = tests["test_judged"]
    assert judged.outcome == "failed" and judged.verdict == Verdict(False, ("ZF=1, expected 0",))
    assert judged.observation == [1, 2] and judged.source is None and "source" in judged.nulls
    assert judged.timings == {"save": 0.5} and judged.reason == "ZF=1, expected 0"
    assert tests["test_skipped"].reason == "not on this guest" and tests["test_skipped"].outcome == "skipped"
    assert tests["test_broken_host"].infrastructure == "HostError"
    assert record.invocation is not None and record.status == "complete" and record.finished is not None


def test_a_record_the_recorder_wrote_reads_back_unchanged_with_its_guests(tmp_path: Path) -> None:
    path = recorder_record(tmp_path)
    data = raw(path)
    record = load_record(path)
    assert record.to_json() == data
    a = record.guests["kl-a"]
    assert (a.backend, a.host, a.accel, a.probe_seconds, a.kept, a.helper) == ("emulated", "local", "tcg", 1.25,
                                                                              False, None)
    assert a.timings == {"boot_total": 6.2, "ssh_ready": 6.7, "teardown": 2.0}
    assert isinstance(a.probe, dict) and a.probe["backend"] == "emulated"
    assert record.guests["kl-b"].probe == "not json: the probe crashed"
    assert record.guest("absent") == GuestEntry()
    assert record.staged_images == {"lab/mini": 1.5} and record.placement == {"kl-a": "local"}
    assert record.teardown_errors == ("release kl-a: VirtError: gone",) and record.reaped == ("klh-old-1 (pid 7 gone)",)


def test_a_record_of_a_run_still_running_reads_back_with_finished_null(tmp_path: Path) -> None:
    rec = RunRecorder(tmp_path / "r2", "r2", {"config": "c.yaml"})
    data = raw(rec.path)
    record = load_record(rec.path)
    assert (record.status, record.finished) == ("running", None)
    assert record.to_json() == data and data["finished"] is None


def test_extra_keys_are_kept_at_every_level(tmp_path: Path) -> None:
    data = raw(RUNS / "real" / "record.json")
    data["new_header_field"] = {"from": "a later klharness"}
    data["tests"][3]["coverage"] = 0.5
    data["tests"][0]["verdict"] = {"passed": True, "reasons": [], "judge": "spec v2"}
    data["guests"]["kl-full"]["numa"] = [0, 1]
    path = write(tmp_path, data)
    record = load_record(path)
    assert record.extra == {"new_header_field": {"from": "a later klharness"}}
    assert record.tests[3].extra == {"coverage": 0.5}
    assert record.tests[0].verdict is not None and record.tests[0].verdict.extra == {"judge": "spec v2"}
    assert record.guests["kl-full"].extra == {"numa": [0, 1]}
    assert record.to_json() == data
    assert RunRecord.from_json(json.loads(json.dumps(record.to_json())), source=path) == record


# -- errors that name the file and the field ---------------------------------------------------------------------

@pytest.mark.parametrize(("change", "message"), [
    (lambda d: d["tests"][3].update(outcome="pass"),
     "tests[3].outcome: expected one of passed, failed, skipped, error, got 'pass'"),
    (lambda d: d["tests"][5].update(duration="0.3 s"), "tests[5].duration: expected a number, got '0.3 s'"),
    (lambda d: d["tests"][0].pop("nodeid"), "tests[0].nodeid: missing"),
    (lambda d: d["tests"][2].update(verdict={"passed": "no", "reasons": []}),
     "tests[2].verdict.passed: expected true or false, got 'no'"),
    (lambda d: d["tests"][2].update(verdict={"passed": False, "reasons": "ZF=1"}),
     "tests[2].verdict.reasons: expected a list of strings, got 'ZF=1'"),
    (lambda d: d["guests"]["kl-full"]["timings"].update(ssh_ready="6.7"),
     "guests['kl-full'].timings: expected an object of numbers (seconds), got an object"),
    (lambda d: d["guests"]["kl-full"].update(kept="yes"), "guests['kl-full'].kept: expected true or false, got 'yes'"),
    (lambda d: d.update(tests={"a": 1}), "tests: expected a list of test entries, got an object"),
    (lambda d: d["tests"].__setitem__(7, "passed"), "tests[7]: expected an object, got 'passed'"),
    (lambda d: d.update(run_id=None), "run_id: expected a string, got null"),
    (lambda d: d.pop("guests"), "guests: missing"),
    (lambda d: d.update(rerun_of={"run_id": "r0", "record": "x"}), "rerun_of.failed_only: missing"),
    (lambda d: d.update(invocation=["klharness", "run"]), "invocation: expected an object, got a list"),
    (lambda d: d.update(pid=True), "pid: expected an integer, got True"),
])
def test_a_field_of_the_wrong_kind_names_the_file_and_the_field(tmp_path: Path, change: Any, message: str) -> None:
    data = raw(RUNS / "real" / "record.json")
    change(data)
    path = write(tmp_path, data)
    with pytest.raises(HostError) as err:
        load_record(tmp_path)
    assert str(err.value).startswith(f"{path}: {message}"), str(err.value)
    assert str(err.value).endswith("(was the record edited, or written by another klharness?)")


@pytest.mark.parametrize(("version", "message"), [
    (2, "run record schema version 2: this klharness reads version 1 only (a newer klharness wrote it: read it "
        "with that one, or update klharness)"),
    (0, "run record schema version 0: this klharness reads version 1 only (read it with the klharness that wrote "
        "it)"),
    ("1", "run record schema version '1': this klharness reads version 1 only"),
    (None, "run record schema version null: this klharness reads version 1 only"),
])
def test_another_schema_version_is_refused_naming_both_versions(tmp_path: Path, version: Any, message: str) -> None:
    data = raw(RUNS / "real" / "record.json")
    data["schema_version"] = version
    if version is None:
        del data["schema_version"]
    path = write(tmp_path, data)
    with pytest.raises(HostError) as err:
        load_record(path)
    assert str(err.value).startswith(f"{path}: {message}"), str(err.value)


def test_not_a_record_missing_or_unreadable_keep_their_messages(tmp_path: Path) -> None:
    with pytest.raises(HostError, match=r"record.json: no run record here"):
        load_record(tmp_path)
    (tmp_path / "record.json").write_text("{")
    with pytest.raises(HostError, match=r"record.json: not a readable run record: "):
        load_record(tmp_path)
    path = write(tmp_path, {"schema": "klharness.probe", "schema_version": 1})
    with pytest.raises(HostError, match=rf"^{path}: not a klharness run record \(schema 'klharness.run' expected\)$"):
        load_record(path)
    with pytest.raises(HostError, match=r"not a klharness run record"):
        RunRecord.from_json([], source="x.json")


# -- building entries (the writer's side) -------------------------------------------------------------------------

def test_a_test_entry_from_keywords_is_what_the_plugin_writes() -> None:
    entry = TestEntry(nodeid="t.py::test_x[g]", test="test_x", guest="g", outcome="skipped", duration=0.1,
                      finished=2.0, reason="needs native KL")
    assert entry.to_json() == {"nodeid": "t.py::test_x[g]", "test": "test_x", "guest": "g", "check": None,
                               "event": None, "outcome": "skipped", "duration": 0.1, "finished": 2.0,
                               "reason": "needs native KL"}
    judged = replace(entry, outcome="failed", verdict=Verdict(False, ("ZF=1",)), observation={"zf": 1})
    assert judged.to_json()["verdict"] == {"passed": False, "reasons": ["ZF=1"]}
    assert judged.to_json()["observation"] == {"zf": 1}
    assert TestEntry.from_json(judged.to_json(), source="x") == judged


def test_a_record_built_from_keywords_reads_back_as_itself() -> None:
    record = RunRecord(run_id="r1", status="complete", profile="emulated",
                       guests={"g": GuestEntry(backend="emulated", timings={"ssh_ready": 3.0})},
                       tests=(TestEntry(nodeid="a", test="t", guest="g", outcome="passed"),),
                       rerun_of=RerunOf("r0", "/res/r0/record.json", True))
    data = record.to_json()
    assert (data["schema"], data["schema_version"], data["finished"]) == (SCHEMA, SCHEMA_VERSION, None)
    assert data["rerun_of"] == {"run_id": "r0", "record": "/res/r0/record.json", "failed_only": True}
    assert RunRecord.from_json(data, source="built") == record


def test_extra_keys_may_not_shadow_a_field() -> None:
    with pytest.raises(ValueError, match=r"extra keys \['outcome'\] are fields of TestEntry"):
        TestEntry(nodeid="a", test="t", guest="g", outcome="passed", extra={"outcome": "failed"})
    with pytest.raises(ValueError, match=r"extra keys \['schema'\] are fields of RunRecord"):
        RunRecord(run_id="r", extra={"schema": "other"})


def test_failing_means_failed_or_errored() -> None:
    def entry(outcome: str) -> TestEntry:
        return TestEntry(nodeid="a", test="t", guest="g", outcome=outcome)

    assert [o for o in ("passed", "failed", "skipped", "error") if failing(entry(o))] == ["failed", "error"]
    assert sorted(FAILING) == ["error", "failed"]
