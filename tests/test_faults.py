"""Fault injection with real guests: each test breaks something on purpose and asserts what
survived — results written so far, no leaked domains, a classified error, no hang."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from harness import cbuild
from harness.config import load_config
from harness.errors import GuestError, HostError, SSHError
from harness.guest.probeguest import ProbeGuest, RunContext, boot
from harness.guest.ssh import generate_keypair
from harness.images import build_image
from harness.kl.emuconfig import private_runtime_dir
from harness.plan.matrix import GuestPlan, plan
from harness.results.record import RunRecorder, new_run_id
from harness.timeouts import Timeouts
from harness.virt.accel import choose_accel
from harness.virt.connection import connect
from harness.virt.registry import RunGuests

REPO = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.integration

SMALL = """
run: {profile: emulated, kl_backend: emulated, parallel: 1}
guests:
  - name: kl-off
    kl: {enabled: false}
  - name: kl-on
    kl: {enabled: true}
"""


def klh_domains(conn: Any, run_id: str) -> list[str]:
    return [d.name() for d in conn.listAllDomains() if d.name().startswith(f"klh-{run_id}-")]


@pytest.fixture(scope="module")
def conn() -> Iterator[Any]:
    c = connect("qemu:///system")
    yield c
    c.close()


def start_run(tmp_path: Path, run_id: str) -> subprocess.Popen[bytes]:
    cfg = tmp_path / "small.yaml"
    cfg.write_text(SMALL)
    argv = [sys.executable, "-m", "pytest", str(REPO / "testcases"), f"--kl-config={cfg}",
            f"--kl-results={tmp_path / 'results'}", f"--kl-run-id={run_id}", "-p", "no:cacheprovider", "-q"]
    log = (tmp_path / f"{run_id}.log").open("wb")
    return subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def wait_for_tests(record: Path, count: int, proc: subprocess.Popen[bytes], timeout: float = 300) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(FileNotFoundError, json.JSONDecodeError):
            data: dict[str, Any] = json.loads(record.read_text())
            if len(data["tests"]) >= count:
                return data
        assert proc.poll() is None, "the run ended before reaching the point to interrupt it"
        time.sleep(0.2)
    raise AssertionError(f"no {count} test results in {record} after {timeout}s")


def test_kill_9_keeps_results_and_the_next_run_reaps_the_guests(tmp_path: Path, conn: Any) -> None:
    run_id = new_run_id()
    proc = start_run(tmp_path, run_id)
    record = tmp_path / "results" / run_id / "record.json"
    try:
        seen = wait_for_tests(record, 3, proc)
        assert klh_domains(conn, run_id), "a guest should be running mid-run"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    after = json.loads(record.read_text())  # intact, readable JSON
    assert after["status"] == "running" and len(after["tests"]) >= len(seen["tests"])
    assert klh_domains(conn, run_id), "SIGKILL cannot tear down: the guest must still be there for the reaper"
    out = subprocess.run([sys.executable, "-m", "harness.cli", "cleanup"], capture_output=True, text=True,
                         timeout=120, check=True)
    assert run_id in out.stdout
    assert klh_domains(conn, run_id) == []
    assert not list(Path("/var/tmp/klharness").glob(f"klh-{run_id}-*"))


def test_sigint_tears_down_and_marks_the_record_interrupted(tmp_path: Path, conn: Any) -> None:
    run_id = new_run_id()
    proc = start_run(tmp_path, run_id)
    record = tmp_path / "results" / run_id / "record.json"
    try:
        wait_for_tests(record, 2, proc)
        os.kill(proc.pid, signal.SIGINT)
        proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    data = json.loads(record.read_text())
    assert data["status"] == "interrupted", (tmp_path / f"{run_id}.log").read_text()[-2000:]
    assert data["finished"] and len(data["tests"]) >= 2
    assert klh_domains(conn, run_id) == []


def test_two_runs_at_once_do_not_clash(tmp_path: Path, conn: Any) -> None:
    ids = [new_run_id(), new_run_id()]
    procs = [start_run(tmp_path / f"r{i}", rid) for i, rid in enumerate(ids)
             if (tmp_path / f"r{i}").mkdir() is None]
    try:
        codes = [p.wait(timeout=600) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
    logs = [(tmp_path / f"r{i}" / f"{rid}.log").read_text() for i, rid in enumerate(ids)]
    assert codes == [0, 0], "\n".join(log[-1500:] for log in logs)
    for i, rid in enumerate(ids):
        data = json.loads((tmp_path / f"r{i}" / "results" / rid / "record.json").read_text())
        assert data["status"] == "complete" and all(t["outcome"] == "passed" for t in data["tests"])
        assert klh_domains(conn, rid) == []


# -- faults inside one guest -----------------------------------------------------------------------------

@pytest.fixture()
def ctx(conn: Any) -> Iterator[RunContext]:
    run_id = new_run_id()
    with RunGuests(run_id) as reg:
        kp = generate_keypair(private_runtime_dir(run_id) / "ssh", f"klharness-{run_id}")
        yield RunContext(run_id, conn, kp, Timeouts(boot=60), reg, cbuild.build("klprobe"),
                         choose_accel("auto", local=True), Path("/var/tmp/klharness-tests/faults") / run_id)
        reg.teardown_all()


def ci_plan(name: str) -> GuestPlan:
    return {p.name: p for p in plan(load_config(REPO / "configs/ci.yaml"))}[name]


def test_guest_kernel_panic_fails_fast_with_the_console_excerpt(ctx: RunContext) -> None:
    p = ci_plan("kl-off")
    broken = replace(p, spec=replace(p.spec, extra_cmdline="rdinit=/bin/false"))
    start = time.monotonic()
    with pytest.raises(GuestError) as err:
        boot(ctx, broken, build_image("mini"))
    took = time.monotonic() - start
    assert "panic" in str(err.value).lower() and "Kernel panic" in str(err.value)
    assert took < 50, f"a panic must end the wait early, not at the {ctx.timeouts.boot:.0f}s boot timeout"
    assert klh_domains(ctx.conn, ctx.run_id) == []


def test_ssh_dropped_mid_command_is_classified_and_not_rerun(ctx: RunContext) -> None:
    pg: ProbeGuest = boot(ctx, ci_plan("kl-off"), build_image("mini"))
    try:
        marker = "/tmp/klh-ran"
        other = pg.run(["true"])  # the session works
        assert other.returncode == 0
        # A second after the long command starts, every SSH server process in the guest dies.
        start = time.monotonic()
        pg.run("setsid sh -c 'sleep 1; killall -9 dropbear' </dev/null >/dev/null 2>&1 &", timeout=10)
        with pytest.raises(SSHError, match=r"connection lost while running .* \(not retried"):
            pg.run(f"touch {marker}; sleep 30", timeout=60)
        assert time.monotonic() - start < 30
    finally:
        pg.teardown(keep=False)


def test_full_results_filesystem_is_a_clear_error_and_the_record_stays_whole(tmp_path: Path) -> None:
    mnt = tmp_path / "small"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mnt)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        rec = RunRecorder(mnt / "run", "r1", {"config": "x"})
        rec.add_test({"nodeid": "t1", "outcome": "passed"})
        with pytest.raises(HostError, match=r"record.json: cannot write results: No space left on device"):
            rec.add_test({"nodeid": "big", "blob": "x" * 200_000})
        kept = json.loads((mnt / "run" / "record.json").read_text())
        assert [t["nodeid"] for t in kept["tests"]] == ["t1"]
        assert not [p for p in (mnt / "run").iterdir() if p.name.endswith(".tmp")]
    finally:
        subprocess.run(["umount", str(mnt)], check=False)


def test_read_only_results_directory_is_a_clear_error(tmp_path: Path) -> None:
    ro = tmp_path / "ro"
    ro.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(ro)], capture_output=True).returncode:
        pytest.skip("cannot mount a read-only tmpfs here (needs root)")
    try:
        with pytest.raises(HostError, match=r"cannot create the results directory: Read-only file system"):
            RunRecorder(ro / "run", "r1", {})
    finally:
        subprocess.run(["umount", str(ro)], check=False)
