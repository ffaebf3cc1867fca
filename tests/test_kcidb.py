"""KCIDB export (harness/report/kcidb.py, ``klharness report kcidb``): the real run records of
tests/data/runs become KCIDB JSON that the official schema (the ``kcidb-io`` package) accepts,
with our provenance, guest, check id, profile and timings in ``misc`` and the kept console logs
and the record as ``output_files`` under a base URL."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import kcidb_io
import pytest

from harness.errors import ConfigError
from harness.report.kcidb import kcidb_path, to_kcidb
from harness.results.record import load_record
from harness.results.schema import TestEntry

REPO = Path(__file__).resolve().parent.parent
RUNS = REPO / "tests" / "data" / "runs"
REAL, BROKEN = RUNS / "real", RUNS / "real-broken"
BASE = "https://ci.example.org/klharness/20261126-141202-7ca2"
HOTPLUG = "testcases/test_lifecycle.py::test_handle_across_event[kl-full:vcpu-hotplug]"


def by_nodeid(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {t["misc"]["nodeid"]: t for t in doc["tests"]}


@pytest.mark.parametrize("run", [REAL, BROKEN], ids=["real", "real-broken"])
@pytest.mark.parametrize("base_url", [None, BASE], ids=["no-url", "base-url"])
def test_a_real_run_is_valid_kcidb(run: Path, base_url: str | None) -> None:
    record = load_record(run)
    doc = to_kcidb(record, origin="klharness_ci", base_url=base_url, run_dir=run)
    kcidb_io.schema.V5_3.validate_exactly(doc)
    kcidb_io.schema.LATEST.validate(doc)
    assert kcidb_io.schema.LATEST.count(doc) == 2 + len(record.tests)  # one checkout, one build, the tests
    ids = [t["id"] for t in doc["tests"]]
    assert len(set(ids)) == len(ids) and all(i.startswith(f"klharness_ci:{record.run_id}:") for i in ids)


def test_statuses_follow_the_verdicts() -> None:
    doc = to_kcidb(load_record(BROKEN), origin="o")
    statuses = {t["misc"]["nodeid"]: t["status"] for t in doc["tests"]}
    assert sorted(n for n, s in statuses.items() if s == "FAIL") == sorted(
        f"testcases/test_lifecycle.py::test_handle_across_event[{g}:reboot]"
        for g in ("kl-full", "kl-nowide", "kl-cpl0-only"))
    assert set(statuses.values()) == {"PASS", "FAIL"}


@pytest.mark.parametrize(("outcome", "infrastructure", "status"), [
    ("skipped", None, "SKIP"), ("error", None, "ERROR"), ("error", "VirtError", "MISS"),
    ("failed", "HostError", "ERROR"), ("failed", None, "FAIL"), ("passed", None, "PASS"),
])
def test_an_infrastructure_failure_is_not_reported_as_the_stack_failing(outcome: str, infrastructure: str | None,
                                                                       status: str) -> None:
    record = load_record(REAL)
    record = replace(record, tests=(replace(record.tests[0], outcome=outcome, infrastructure=infrastructure),))
    doc = to_kcidb(record, origin="o")
    kcidb_io.schema.V5_3.validate_exactly(doc)
    assert doc["tests"][0]["status"] == status


def test_misc_carries_provenance_guest_check_profile_and_timings() -> None:
    record = load_record(REAL)
    check = by_nodeid(to_kcidb(record, origin="o"))[
        "testcases/test_instructions.py::test_check[kl-full:encodekey128.restrictions.r0]"]
    assert check["path"] == "keylocker.instructions.encodekey128.restrictions.r0"
    misc = check["misc"]
    assert (misc["provenance"], misc["guest"], misc["check"], misc["profile"]) == (
        "emulated", "kl-full", "encodekey128.restrictions.r0", "emulated")
    assert misc["guest_timings"] == record.guests["kl-full"].timings == json.loads(
        (REAL / "record.json").read_text())["guests"]["kl-full"]["timings"]
    assert check["environment"]["misc"]["backend"] == "emulated"
    assert check["duration"] == 0.0003 and check["start_time"].endswith("+00:00")


def test_a_lifecycle_test_runs_on_its_own_guest_with_its_event_timings() -> None:
    event = by_nodeid(to_kcidb(load_record(REAL), origin="o"))[HOTPLUG]
    assert event["path"] == "keylocker.lifecycle.vcpu-hotplug"
    assert event["environment"]["misc"]["guest"] == "kl-full-vcpu-hotplug"
    assert event["misc"]["event"] == "vcpu-hotplug" and event["status"] == "FAIL"


def test_with_a_base_url_the_record_and_kept_consoles_are_output_files() -> None:
    doc = to_kcidb(load_record(REAL), origin="o", base_url=BASE + "/", run_dir=REAL)
    tests = by_nodeid(doc)
    assert tests[HOTPLUG]["output_files"] == [
        {"name": "console.log", "url": f"{BASE}/guests/kl-full-vcpu-hotplug/console.log"},
        {"name": "record.json", "url": f"{BASE}/record.json"}]
    # kl-off's console was not kept (it passed): no link to a file that is not there.
    off = next(t for n, t in tests.items() if "[kl-off" in n)
    assert off["output_files"] == [{"name": "record.json", "url": f"{BASE}/record.json"}]
    assert doc["builds"][0]["output_files"] == [{"name": "record.json", "url": f"{BASE}/record.json"}]
    assert all("output_files" not in t for t in to_kcidb(load_record(REAL), origin="o")["tests"])


def test_checkout_and_build_name_the_run_config_profile_and_host() -> None:
    doc = to_kcidb(load_record(BROKEN), origin="o")
    (checkout,), (build,) = doc["checkouts"], doc["builds"]
    assert checkout["id"] == build["checkout_id"] == build["id"] == "o:20261126-141543-1fed"
    assert checkout["misc"]["profile"] == "emulated-broken" and checkout["start_time"] == "2026-11-26T14:15:43+00:00"
    assert build["misc"]["accel"]["accel"] == "tcg"


def test_a_path_keeps_only_the_characters_kcidb_allows() -> None:
    def entry(nodeid: str, **fields: str) -> TestEntry:
        return TestEntry(**{"nodeid": nodeid, "test": "test_y", "guest": "g", "outcome": "passed", **fields})

    assert kcidb_path(entry("testcases/test_x.py::test_y[g]", check="a b.c/d")) == "keylocker.x.a_b.c_d"
    assert kcidb_path(entry("testcases/test_determinism.py::test_same[g]", test="test_same")) == \
        "keylocker.determinism.same"
    assert kcidb_path(entry("t.py::test_h[g-reboot]", event="reboot")) == "keylocker.t.reboot"


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"origin": "Lab-1"}, "--origin 'Lab-1': a KCIDB origin is lowercase letters, digits and _ only"),
    ({"origin": "o", "base_url": "ci.example.org/x"}, "--base-url 'ci.example.org/x': not an absolute http(s)"),
])
def test_a_bad_origin_or_base_url_says_what_is_accepted(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as err:
        to_kcidb(load_record(REAL), **kwargs)
    assert str(err.value).startswith(message)


def test_the_command_writes_a_file_kcidb_io_accepts(tmp_path: Path) -> None:
    out = tmp_path / "kcidb.json"
    cmd = [sys.executable, "-m", "harness.cli", "report", "kcidb", str(REAL), "-o", str(out),
           "--origin", "klharness_lab", "--base-url", BASE]
    res = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=120, check=False)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == f"{out}: KCIDB v5.3, 237 tests"
    kcidb_io.schema.V5_3.validate_exactly(json.loads(out.read_text()))


def test_the_command_requires_an_origin(tmp_path: Path) -> None:
    res = subprocess.run([sys.executable, "-m", "harness.cli", "report", "kcidb", str(REAL), "-o",
                          str(tmp_path / "k.json")], capture_output=True, text=True, cwd=REPO, timeout=120,
                         check=False)
    assert res.returncode == 2
    assert "the following arguments are required: --origin" in res.stderr
    bad = subprocess.run([sys.executable, "-m", "harness.cli", "report", "kcidb", str(REAL), "-o",
                          str(tmp_path / "k.json"), "--origin", "My CI"], capture_output=True, text=True, cwd=REPO,
                         timeout=120, check=False)
    assert bad.returncode == 2
    assert "klharness: error: --origin 'My CI': a KCIDB origin is lowercase letters" in bad.stderr
