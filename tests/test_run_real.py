"""``klharness run`` on real guests, once, small: the kl-off guest of configs/ci.yaml judged by a
deliberately broken copy of the emulated profile (every ``ud.aesenc*`` check must execute, which
a guest without Key Locker never does).  Its log shows each real phase with its seconds, each
failure carries its reproduce command, the record keeps the invocation ``klharness rerun`` needs
and exactly the broken cells as failed, and its KCIDB file validates with kcidb-io.
(``klharness rerun --failed`` itself is tested end to end without guests in tests/test_rerun.py.)"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import kcidb_io
import pytest

from harness.report.kcidb import to_kcidb
from harness.results.record import load_record
from harness.results.rerun import failed_cells

REPO = Path(__file__).resolve().parent.parent
BROKEN_CHECKS = ("ud.aesenc128kl", "ud.aesenc256kl", "ud.aesencwide128kl", "ud.aesencwide256kl")


@pytest.mark.integration
def test_a_real_run_logs_its_phases_and_its_failures_reproduce_and_export(tmp_path: Path) -> None:
    text = (REPO / "configs" / "profiles" / "emulated.yaml").read_text()
    broken = tmp_path / "emulated-broken.yaml"
    broken.write_text(text.replace("name: emulated\n", "name: emulated-broken\n").replace(
        "checks: []", 'checks: [{pattern: "ud.aesenc*", outcome: ok, source: "deliberately broken"}]'))
    res = subprocess.run([sys.executable, "-m", "harness.cli", "run", "configs/ci.yaml", "--profile", str(broken),
                          "-k", "kl-off", "--results", str(tmp_path / "res")],
                         cwd=REPO, capture_output=True, text=True, timeout=900, check=False)
    out = res.stdout
    assert res.returncode == 1, out + res.stderr
    for pattern in (r"\] kl-off: image mini", r"\] kl-off: booting \(image ready in [\d.]+s\)",
                    r"\] kl-off: ssh \(booted in [\d.]+s\)", r"\] kl-off: probe \(ssh in [\d.]+s\)",
                    r"\] kl-off: FAILED ud\.aesenc128kl: ", r"\] kl-off: done in \S+: 4 failed, 8 passed · run 12/12",
                    r"\] run \S+ complete: 12/12 tests: 4 failed, 8 passed"):
        assert re.search(pattern, out), f"{pattern!r} not in:\n{out}"
    for check in BROKEN_CHECKS:
        assert f"reproduce: klharness run configs/ci.yaml --profile {broken} -k 'test_check[kl-off:{check}]'" in out
    (run_dir,) = (tmp_path / "res").iterdir()
    record = load_record(run_dir)
    assert record.invocation is not None
    assert record.invocation["keyword"] == "kl-off" and record.invocation["profile"] == str(broken)
    assert failed_cells(record) == [f"testcases/test_instructions.py::test_check[kl-off:{c}]" for c in BROKEN_CHECKS]
    doc = to_kcidb(record, origin="klharness_ci", base_url="https://ci.example.org/r", run_dir=run_dir)
    kcidb_io.schema.V5_3.validate_exactly(doc)
    consoles = {f["url"] for t in doc["tests"] for f in t.get("output_files", []) if f["name"] == "console.log"}
    assert consoles == {"https://ci.example.org/r/guests/kl-off/console.log"}  # kept: its guest failed
