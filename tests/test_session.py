"""The run's session (harness/run/session.py): backend choice, signals, teardown, every host on one path.

Each of the first three was a bug (issue "one run engine"): ``kl_backend: auto`` never asked the
host and so never chose native; signal handlers were installed on the background boot thread of a
pooled run, i.e. not at all, so a SIGTERM left its guests to the next run's reaper; one failing
teardown step skipped the next and its error reached no record.  The last: the first host of
``hosts:`` took a path of its own (``local-peer`` could not be first; ``stage_files`` was ignored).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import libvirt
import pytest

from harness.config.model import Config, GuestConfig, KlConfig, RunSettings
from harness.errors import VirtError
from harness.paths import REPO_DIR
from harness.plan.profiles import load_profile
from harness.run import session as session_mod
from harness.run.pool import FreshGuest
from harness.run.session import KlSession

AUTO = Config("auto.yaml", RunSettings(kl_backend="auto"), (GuestConfig(name="g", kl=KlConfig(enabled=True)),))


def new_session(config: Config = AUTO, **kw: Any) -> KlSession:
    return KlSession(config, load_profile("emulated"), persist=False, **kw)


@pytest.mark.parametrize(("usable", "backend"), [(True, "native"), (False, "emulated")])
def test_auto_follows_the_hosts_key_locker(usable: bool, backend: str) -> None:
    asked: list[bool] = []

    def host() -> bool:
        asked.append(True)
        return usable

    s = new_session(host_kl_usable=host)
    try:
        assert s.plans["g"].backend == backend and asked == [True]
    finally:
        s.close("complete")


def test_auto_on_this_host_is_what_host_check_says(tmp_path: Path) -> None:
    from harness.host.check import host_check

    native = host_check(None)["verdicts"]["native"]
    s = new_session()
    try:
        want = "native" if native["possible"] is not False and not native["reasons"] else "emulated"
        assert s.plans["g"].backend == want
    finally:
        s.close("complete")


def test_an_explicit_backend_never_asks_the_host() -> None:
    config = Config("e.yaml", RunSettings(kl_backend="emulated"), AUTO.guests)
    s = new_session(config, host_kl_usable=lambda: pytest.fail("the host was asked"))  # type: ignore[arg-type]
    s.close("complete")


def test_signal_handlers_are_in_place_from_the_start_and_restored_at_the_end() -> None:
    before = signal.getsignal(signal.SIGTERM)
    s = new_session(host_kl_usable=lambda: False)
    try:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            assert signal.getsignal(sig) == s.registry._interrupt, sig  # before any guest boots
    finally:
        s.close("complete")
    assert signal.getsignal(signal.SIGTERM) == before


@dataclass
class FakeCtx:
    conn: Any
    stage: Any


def test_a_failing_teardown_step_skips_nothing_and_is_recorded(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []

    def failing_delete(conn: Any, prefix: str) -> list[str]:
        calls.append("delete")
        raise VirtError("deleting the volumes fw-klh-x-* failed: pool gone")

    def peers(run_id: str | None = None) -> list[str]:
        calls.append("peers")
        return []

    monkeypatch.setattr(session_mod, "delete_volumes", failing_delete)
    monkeypatch.setattr(session_mod, "close_run_peers", peers)
    s = new_session(host_kl_usable=lambda: False)
    s.run_hosts._contexts["lab1"] = FakeCtx(conn=object(), stage=object())  # type: ignore[assignment]
    s.run_hosts._contexts["lab2"] = FakeCtx(conn=object(), stage=object())  # type: ignore[assignment]
    s.close("complete")
    assert calls == ["delete", "delete", "peers"]  # both hosts tried, and the peers stopped after them
    record = s.recorder.snapshot()
    assert record["status"] == "complete"
    failure = "VirtError: deleting the volumes fw-klh-x-* failed: pool gone"
    assert record["teardown_errors"] == [f"delete staged files (fw_cfg blobs, save images) on {h}: {failure}"
                                         for h in ("lab1", "lab2")]


class FakeGuest:
    """What the pool's release touches of a ProbeGuest: its name, its teardown and its timings."""

    def __init__(self, name: str, *, gate: threading.Event, error: Exception | None = None) -> None:
        self.guest = SimpleNamespace(spec=SimpleNamespace(name=name))
        self.timings: dict[str, float] = {}
        self.gate, self.error, self.torn_down = gate, error, False

    def teardown(self, *, keep: bool) -> None:
        assert self.gate.wait(10), "the test never opened the gate"
        self.torn_down = True
        if self.error is not None:
            raise self.error


def test_a_release_runs_beside_the_next_cell_and_the_teardown_waits_for_it_and_records_its_error() -> None:
    s = new_session(host_kl_usable=lambda: False)
    gate = threading.Event()
    good = FakeGuest("g-reboot", gate=gate)
    bad = FakeGuest("g-migrate", gate=gate, error=VirtError("destroying klh-x-g-migrate: timed out"))
    s.pool.fresh_guests += [good, bad]  # type: ignore[list-item]
    s.pool.release(good, failed=False)  # type: ignore[arg-type]
    s.pool.release(bad, failed=True)  # type: ignore[arg-type]
    assert not good.torn_down and not bad.torn_down  # both returned while their teardowns still wait
    assert s.pool.fresh_guests == []  # released: the run's teardown owes them nothing more
    gate.set()
    s.close("complete")
    assert good.torn_down and bad.torn_down
    record = s.recorder.snapshot()
    assert record["teardown_errors"] == ["wait for the guests' releases: KlharnessError: releasing guests failed: "
                                         "g-migrate: destroying klh-x-g-migrate: timed out"]
    # The keep policy (keep: failed, the default) still decides each: the failed cell's guest is kept.
    assert record["guests"]["g-reboot"]["kept"] is False and record["guests"]["g-migrate"]["kept"] is True


def test_each_lifecycle_guest_boots_while_the_cell_before_it_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    s = new_session(host_kl_usable=lambda: False)
    gate = threading.Event()
    gate.set()
    booted: list[str] = []

    def boot(name: str, suffix: str = "", **kw: bool) -> FakeGuest:
        booted.append(f"{name}{suffix}" + ("/persistent" if kw.get("persistent") else ""))
        return FakeGuest(f"{name}{suffix}", gate=gate)

    monkeypatch.setattr(s.pool, "_boot", boot)
    queue = [FreshGuest("g", "-reboot"), FreshGuest("g", "-managed-save", persistent=True), FreshGuest("g", "-migrate")]
    s.pool.plan_fresh(queue)
    first = s.pool.fresh("g", "-reboot")
    assert first.guest.spec.name == "g-reboot"
    deadline = time.monotonic() + 5
    while len(booted) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert booted == ["g-reboot", "g-managed-save/persistent"]  # the next one booted ahead, no further
    s.pool.release(first, failed=False)  # type: ignore[arg-type]
    # A cell asking for a guest other than the one booted ahead (a -k selection) gets one booted now,
    # and the guest booted ahead for the cell that never ran is released at the end.
    other = s.pool.fresh("g", "-suspend", suspend=True)
    assert other.guest.spec.name == "g-suspend" and "g-suspend" in booted
    s.pool.release(other, failed=False)  # type: ignore[arg-type]
    s.close("complete")
    record = s.recorder.snapshot()
    assert {"g-reboot", "g-suspend", "g-managed-save"} <= set(record["guests"]), record["guests"]
    assert "teardown_errors" not in record


# -- for real --------------------------------------------------------------------------------------

def run_domains(run_id: str) -> list[str]:
    conn = libvirt.open("qemu:///system")
    try:
        return [d.name() for d in conn.listAllDomains(0) if d.name().startswith(f"klh-{run_id}-")]
    finally:
        conn.close()


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
def test_a_signal_while_guests_boot_in_the_background_tears_the_run_down(sig: int, tmp_path: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-m", "harness.cli", "run", str(REPO_DIR / "configs/ci.yaml"),
                             "--results", str(tmp_path)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 240
        run_id = None
        while time.monotonic() < deadline and proc.poll() is None:
            records = list(tmp_path.glob("*/record.json"))
            if records and run_domains(run_id := records[0].parent.name):
                break
            time.sleep(0.2)
        assert run_id and run_domains(run_id), "no guest of the run came up to be interrupted"
        os.kill(proc.pid, sig)
        proc.wait(timeout=180)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    record = json.loads((tmp_path / run_id / "record.json").read_text())
    assert record["status"] == "interrupted", record["status"]
    assert run_domains(run_id) == [], "guests of the interrupted run are still defined"
    assert not list(Path("/var/tmp/klharness").glob(f"klh-{run_id}-*")), "work directories left behind"
    assert "teardown_errors" not in record


PEER_FIRST = """\
run: {kl_backend: emulated, profile: emulated}
hosts:
  - {name: peer, uri: local-peer, stage_files: true}
guests:
  - name: kl-off
    kl: {enabled: false}
"""


@pytest.mark.integration
@pytest.mark.slow
def test_a_local_peer_first_host_with_stage_files_runs_like_any_other(tmp_path: Path) -> None:
    config = tmp_path / "peer-first.yaml"
    config.write_text(PEER_FIRST)
    res = subprocess.run([sys.executable, "-m", "pytest", str(REPO_DIR / "testcases"), "-p", "no:cacheprovider",
                          "-q", f"--kl-config={config}", f"--kl-results={tmp_path / 'results'}", "-k", "kl-off"],
                         capture_output=True, text=True, timeout=900, cwd=REPO_DIR)
    [path] = (tmp_path / "results").glob("*/record.json")
    record = json.loads(path.read_text())
    assert res.returncode == 0, res.stdout[-3000:]
    assert record["host"]["name"] == "peer" and record["guests"]["kl-off"]["host"] == "peer"
    assert "peer/mini" in record.get("staged_images", {}), record.get("staged_images")
    assert {t["outcome"] for t in record["tests"]} == {"passed"} and len(record["tests"]) >= 12


# -- the keep policy and the run's images ------------------------------------------------------------------

@pytest.mark.parametrize(("keep", "failed", "kept"), [
    ("all", False, True), ("all", True, True), ("failed", False, False), ("failed", True, True),
    ("none", True, False), ("none", False, False)])
def test_one_keep_policy_decides_the_guest_and_its_artifacts(tmp_path: Path, keep: str, failed: bool,
                                                              kept: bool) -> None:
    from harness.run.artifacts import Artifacts

    a = Artifacts(tmp_path, keep)
    path = a.write("g1", "probe.json", "{}")
    assert path == tmp_path / "guests" / "g1" / "probe.json" and path.read_text() == "{}"
    assert a.keeps(failed=failed) is kept
    a.settle("g1", kept=a.keeps(failed=failed))
    assert path.exists() is kept


def test_an_image_is_built_once_per_run_however_many_guests_ask(monkeypatch: pytest.MonkeyPatch) -> None:
    import threading
    from concurrent.futures import ThreadPoolExecutor

    from harness.results.record import RunRecorder
    from harness.run import images as images_mod

    built: list[str] = []

    class Artifact:
        def __init__(self, name: str) -> None:
            self.key = f"key-{name}"

    def fake_build(name: str, *, options: object = None) -> Artifact:
        built.append(name)
        time.sleep(0.05)  # long enough for the other threads to ask meanwhile
        return Artifact(name)

    monkeypatch.setattr(images_mod, "build_image", fake_build)
    recorder = RunRecorder(Path("unused"), "r", {}, persist=False)
    images = images_mod.RunImages(AUTO, recorder)
    barrier = threading.Barrier(4)

    def ask(name: str) -> str:
        barrier.wait()
        return str(images.image(name).key)

    with ThreadPoolExecutor(4) as pool:
        keys = list(pool.map(ask, ["mini", "mini", "debian", "mini"]))
    assert keys == ["key-mini", "key-mini", "key-debian", "key-mini"]
    assert sorted(built) == ["debian", "mini"]
    assert set(recorder.snapshot()["images"]) == {"debian", "mini"}


def test_a_host_that_cannot_be_reached_leaves_its_guests_to_the_others(monkeypatch: pytest.MonkeyPatch) -> None:
    from harness.config.model import HostConfig
    from harness.errors import HostError
    from harness.run.hosts import RunHosts

    two = Config("two.yaml", RunSettings(kl_backend="emulated"),
                 (GuestConfig(name="a", kl=KlConfig(enabled=True)), GuestConfig(name="b")),
                 hosts=(HostConfig("lab", "qemu+ssh://root@lab/system"), HostConfig("local", "qemu:///system")))

    def connect(self: RunHosts, cfg: HostConfig) -> Any:
        if cfg.name == "lab":
            raise HostError("host root@lab:22 unreachable over SSH: connection refused")
        return SimpleNamespace(conn=None, stage=None)

    monkeypatch.setattr(RunHosts, "_connect", connect)
    s = new_session(two)
    try:
        assert [s.run_hosts.for_guest(g)[0] for g in ("a", "b")] == ["local", "local"]
        record = s.recorder.snapshot()
        assert record["placement"] == {"a": "local", "b": "local"}
        assert record["hosts_down"] == {"lab": "HostError: host root@lab:22 unreachable over SSH: connection refused"}
    finally:
        s.close("complete")


def test_when_no_host_answers_every_guest_gets_the_first_hosts_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from harness.config.model import HostConfig
    from harness.errors import HostError
    from harness.run.hosts import RunHosts

    two = Config("two.yaml", RunSettings(kl_backend="emulated"), (GuestConfig(name="a"),),
                 hosts=(HostConfig("lab1", "qemu+ssh://root@lab1/system"),
                        HostConfig("lab2", "qemu+ssh://root@lab2/system")))

    def connect(self: RunHosts, cfg: HostConfig) -> Any:
        raise HostError(f"{cfg.name} is down")

    monkeypatch.setattr(RunHosts, "_connect", connect)
    s = new_session(two)
    try:
        with pytest.raises(HostError, match="lab1 is down"):
            s.run_hosts.for_guest("a")
    finally:
        s.close("complete")
