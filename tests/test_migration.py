"""Migration on one machine: the peer daemon, live and offline moves, refusals, and the reaper for leaked peers.

Tests marked ``integration`` need root, the system libvirtd (``scripts/start-libvirt``),
QEMU and the mini image; each boots at most one guest (TCG: ~3-6 s).  The
unit tests at the end need none of that.
The guests are emulated-KL guests of the CI matrix (its first plan), so a
handle made before a move is checked after it by the probe in the guest.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import libvirt
import libvirt_qemu
import pytest
from virt_support import runtime_root

from harness import cbuild, proc
from harness.config import load_config
from harness.errors import HostError, MigrationRefused, VirtError
from harness.guest.probeguest import ProbeGuest, RunContext, boot
from harness.guest.ssh import KeyPair, generate_keypair
from harness.images.artifact import FWCFG_KLEMU_CONF, ImageArtifact
from harness.kl.emuconfig import private_runtime_dir
from harness.paths import REPO_DIR
from harness.plan.matrix import GuestPlan, plan
from harness.timeouts import Timeouts
from harness.virt.accel import choose_accel
from harness.virt.connection import connect
from harness.virt.launch import launch
from harness.virt.migrate import migrate_live, migrate_offline, refusal
from harness.virt.peer import PeerDaemon, PeerState, _set_conf, peer_uri, reap_peers
from harness.virt.reaper import reap
from harness.virt.registry import RunGuests
from harness.virt.spec import GuestSpec

RUN = f"m{os.getpid()}"
FWCFG_RAW = f"/sys/firmware/qemu_fw_cfg/by_name/{FWCFG_KLEMU_CONF}/raw"


@pytest.fixture(scope="module")
def kl_plan() -> GuestPlan:
    first = plan(load_config(REPO_DIR / "configs" / "ci.yaml"))[0]
    assert first.emulated_cpu is not None, "the CI matrix's first guest should have emulated Key Locker"
    return first


@pytest.fixture(scope="module")
def keypair() -> Iterator[KeyPair]:
    kp = generate_keypair(private_runtime_dir(RUN) / "ssh", f"klharness-{RUN}")
    yield kp
    import shutil

    shutil.rmtree(private_runtime_dir(RUN), ignore_errors=True)


@pytest.fixture(scope="module")
def peer() -> Iterator[PeerDaemon]:
    with PeerDaemon(run_id=RUN) as p:
        yield p


@pytest.fixture()
def ctx(real_conn: Any, keypair: KeyPair, tmp_path: Path) -> Iterator[RunContext]:
    with RunGuests(RUN, handle_signals=False) as reg:
        yield RunContext(RUN, real_conn, keypair, Timeouts(), reg, cbuild.build("klprobe"),
                         choose_accel("auto", local=True), tmp_path / "guests")


def boot_guest(ctx: RunContext, kl_plan: GuestPlan, image: ImageArtifact, suffix: str) -> ProbeGuest:
    return boot(ctx, kl_plan, image, suffix=suffix)


def snapshot(pg: ProbeGuest) -> tuple[bytes, bytes]:
    """(boot id, the klemu.conf fw_cfg bytes) as the guest sees them."""
    boot_id = pg.run(["cat", "/proc/sys/kernel/random/boot_id"], check=True).stdout
    fwcfg = pg.run(["cat", FWCFG_RAW], check=True).stdout
    return boot_id, fwcfg


def domain_names(conn: Any) -> set[str]:
    return {d.name() for d in conn.listAllDomains(0)}


def pids_in_uts(ns: str) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if os.readlink(f"/proc/{entry.name}/ns/uts") == ns:
                    out.append(int(entry.name))
            except OSError:
                pass
    return out


def assert_peer_gone(state: PeerState, workdir: Path) -> None:
    assert not workdir.exists()
    assert state.uts_ns and pids_in_uts(state.uts_ns) == []
    for role, (pid, _start) in state.procs.items():
        assert not Path(f"/proc/{pid}").exists() or Path(f"/proc/{pid}/stat").read_text().split(")")[1].split()[0] \
            == "Z", f"peer {role} (pid {pid}) still runs"
    assert str(workdir) not in Path("/proc/self/mountinfo").read_text()


# -- the peer daemon itself ------------------------------------------------------------------------------------

@pytest.mark.integration
def test_peer_daemon_is_isolated_and_leaves_nothing_behind(real_conn: Any) -> None:
    with PeerDaemon(run_id=RUN) as p:
        workdir, state = p.workdir, p.state
        assert p.timings["start"] < 5
        conn = p.conn
        assert conn.getHostname() == p.name != socket.gethostname()
        assert f"<uuid>{state.host_uuid}</uuid>" in conn.getCapabilities()
        assert f"<uuid>{state.host_uuid}</uuid>" not in real_conn.getCapabilities()
        assert domain_names(conn) == set()
        assert (workdir / "run" / "libvirt-sock").is_socket() and (workdir / "run" / "virtlogd-sock").is_socket()
        assert proc.run(["virsh", "-c", p.uri, "version"], timeout=30).ok
        assert {"holder", "virtlogd", "libvirtd"} <= set(state.procs)
        comms = {role: Path(f"/proc/{pid}/comm").read_text().strip() for role, (pid, _) in state.procs.items()}
        assert comms == {"holder": "sleep", "virtlogd": "virtlogd", "libvirtd": "libvirtd"}
        assert all(os.readlink(f"/proc/{pid}/ns/uts") == state.uts_ns for pid, _ in state.procs.values())
        # the system daemon's directories are untouched from here
        assert not Path("/run/libvirt").samefile(workdir / "run")
        assert str(workdir) not in Path("/proc/self/mountinfo").read_text()
    assert p.timings["stop"] < 15
    assert_peer_gone(state, workdir)
    assert socket.gethostname() == os.uname().nodename
    assert real_conn.getHostname() == socket.gethostname()  # the system daemon still answers


@pytest.mark.integration
def test_a_peer_that_is_not_running_is_a_clear_error(tmp_path: Path) -> None:
    p = PeerDaemon(runtime_root() / f"peer-{RUN}-never", run_id=RUN)
    with pytest.raises(HostError, match=r"peer daemon klh-peer-\S+ is not running: cannot give its URI"):
        _ = p.uri
    with pytest.raises(HostError, match="is not running: cannot give a connection"):
        _ = p.conn
    assert p.stop() == [] and not p.workdir.exists()
    existing = tmp_path / "taken"
    existing.mkdir()
    with pytest.raises(HostError, match="already exists"):
        PeerDaemon(existing).start()


# -- moving guests --------------------------------------------------------------------------------------

@pytest.mark.integration
def test_live_migration_there_and_back_keeps_boot_fwcfg_and_handle(
        ctx: RunContext, real_conn: Any, peer: PeerDaemon, kl_plan: GuestPlan, mini_image: ImageArtifact) -> None:
    pg = boot_guest(ctx, kl_plan, mini_image, "-live")
    try:
        before = snapshot(pg)
        handle = pg.handle_save()
        port0 = pg.guest.ssh_port
        pg.drop_session()
        took = migrate_live(pg.guest, peer.conn, timeout=120)
        assert pg.guest.conn is peer.conn and pg.guest.ssh_port != port0
        assert pg.name not in domain_names(real_conn) and pg.name in domain_names(peer.conn)
        assert pg.guest.state() == "running"
        assert f"hostfwd=tcp:127.0.0.1:{pg.guest.ssh_port}-:22" in pg.guest.live_xml()
        assert 0 < took < 60 and pg.guest.timings["migrate"] == took
        downtime = pg.guest.timings["migrate_downtime"]
        assert 0 <= downtime < 5
        pg.connect()
        assert snapshot(pg) == before
        check = pg.handle_check(handle)
        assert check.facts["handle_valid"] is True and check.facts["same_boot"] is True and check.signal is None
        print(f"live there: {took:.2f}s, downtime {downtime * 1000:.0f} ms")
        # and back to the system daemon
        pg.drop_session()
        back = migrate_live(pg.guest, real_conn)
        assert pg.guest.conn is real_conn and pg.name in domain_names(real_conn)
        assert pg.name not in domain_names(peer.conn)
        pg.connect()
        assert snapshot(pg) == before and pg.handle_check(handle).facts["handle_valid"] is True
        print(f"live back: {back:.2f}s, downtime {pg.guest.timings['migrate_downtime'] * 1000:.0f} ms")
        assert pg.guest.console.read().count(b"klh: init ") == 1  # one boot, console log continued
    finally:
        pg.teardown(keep=False)
    assert pg.guest.state() == "gone" and not pg.guest.workdir.exists()


@pytest.mark.integration
def test_offline_migration_keeps_boot_fwcfg_and_handle_and_bad_destinations_are_refused(
        ctx: RunContext, real_conn: Any, peer: PeerDaemon, kl_plan: GuestPlan, mini_image: ImageArtifact) -> None:
    pg = boot_guest(ctx, kl_plan, mini_image, "-offline")
    try:
        before = snapshot(pg)
        handle = pg.handle_save()
        with pytest.raises(VirtError, match=r"source and destination are the same daemon \(host UUID"):
            migrate_live(pg.guest, real_conn)
        closed = connect(peer.uri)
        closed.close()
        with pytest.raises(VirtError, match=r"destination daemon does not answer|connection to the destination is "
                                            r"closed"):
            migrate_live(pg.guest, closed)
        assert pg.guest.conn is real_conn and pg.guest.state() == "running"  # nothing moved
        pg.drop_session()
        took = migrate_offline(pg.guest, peer.conn)
        assert pg.guest.conn is peer.conn and pg.name in domain_names(peer.conn)
        assert pg.name not in domain_names(real_conn)
        assert {"save", "restore", "migrate_offline"} <= set(pg.guest.timings)
        pg.connect()
        assert snapshot(pg) == before
        assert pg.handle_check(handle).facts["handle_valid"] is True
        t = pg.guest.timings
        print(f"offline: {took:.2f}s (save {t['save']:.2f}s, restore {t['restore']:.2f}s)")
    finally:
        pg.teardown(keep=False)
    assert pg.name not in domain_names(peer.conn) and not pg.guest.workdir.exists()


@pytest.mark.integration
def test_a_migration_blocker_is_refused_and_the_guest_stays_on_the_source(
        ctx: RunContext, real_conn: Any, peer: PeerDaemon, kl_plan: GuestPlan, mini_image: ImageArtifact) -> None:
    pg = boot_guest(ctx, kl_plan, mini_image, "-blocked")
    try:
        dom = pg.guest.domain()
        # ivshmem-plain without master=on registers a QEMU migration blocker ("peer mode")
        for cmd in ({"execute": "object-add", "arguments": {"qom-type": "memory-backend-ram", "id": "klhblk",
                                                             "size": 1 << 20, "share": True}},
                    {"execute": "device_add", "arguments": {"driver": "ivshmem-plain", "id": "klhivshmem",
                                                            "memdev": "klhblk", "bus": "pci.0", "addr": "0x1d"}}):
            assert "error" not in json.loads(libvirt_qemu.qemuMonitorCommand(dom, json.dumps(cmd), 0))
        port = pg.guest.ssh_port
        with pytest.raises(MigrationRefused, match=r"migration of klh-\S+-blocked refused: .*cannot migrate domain"):
            migrate_live(pg.guest, peer.conn)
        assert pg.guest.conn is real_conn and pg.guest.ssh_port == port and pg.guest.state() == "running"
        assert pg.name not in domain_names(peer.conn)
        assert pg.run(["true"]).returncode == 0  # still reachable, session intact
    finally:
        pg.teardown(keep=False)


# -- a harness killed with SIGKILL leaves its peer to the reaper ---------------------------------------------------

CHILD = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from harness.virt.peer import PeerDaemon
    p = PeerDaemon(Path(sys.argv[1]), run_id=sys.argv[2])
    p.start()
    print("up", flush=True)
    time.sleep(600)
""")


@pytest.mark.integration
def test_a_killed_harness_leaves_a_peer_that_the_reaper_stops(real_conn: Any, mini_image: ImageArtifact) -> None:
    root = runtime_root() / f"reap-{RUN}"
    (root / "peers").mkdir(parents=True, exist_ok=True)
    workdir = root / "peers" / "leaked"
    out = root / "child.out"
    child = proc.Background([sys.executable, "-c", CHILD, workdir, f"{RUN}-killed"], stdout_path=out,
                            env={"PYTHONPATH": str(REPO_DIR)})
    guest = None
    try:
        with child:
            deadline = time.monotonic() + 60
            while b"up" not in out.read_bytes():
                assert child.proc is not None and child.proc.poll() is None, out.read_text()
                assert time.monotonic() < deadline, "the child's peer did not come up"
                time.sleep(0.1)
            assert child.proc is not None
            os.kill(child.proc.pid, signal.SIGKILL)
            child.proc.wait()
        state = PeerState.load(workdir)
        assert state is not None and state.harness_pid == child.proc.pid
        libvirtd = state.procs["libvirtd"][0]
        assert Path(f"/proc/{libvirtd}").exists(), "the peer should outlive its harness"
        # a guest on the leaked peer (not waited for): the reaper must destroy it through the peer's socket
        leaked = connect(peer_uri(workdir))
        try:
            guest = launch(leaked, GuestSpec(name="leaked"), mini_image, run_id=RUN, wait=False,
                           workdir_root=runtime_root())
            assert guest.state() == "running"
        finally:
            leaked.close()
        reaped = reap(real_conn, workdir_root=root)
        mine = [r for r in reaped if r.what == f"peer daemon {workdir}"]
        assert len(mine) == 1 and mine[0].errors == [], [r.describe() for r in reaped]
        assert mine[0].reason == f"harness pid {child.proc.pid} on {socket.gethostname()} is gone"
        assert mine[0].actions == ["destroyed its domains", "stopped its daemons", "removed its directory"]
        assert_peer_gone(state, workdir)
        assert not [r for r in reap(real_conn, workdir_root=root) if r.what.startswith("peer daemon")]
    finally:
        import shutil

        if guest is not None:
            shutil.rmtree(guest.workdir, ignore_errors=True)
        shutil.rmtree(root, ignore_errors=True)


@pytest.mark.integration
def test_reaper_leaves_the_peer_of_a_live_harness_alone(real_conn: Any, peer: PeerDaemon) -> None:
    reaped = reap(real_conn, workdir_root=peer.workdir.parent.parent)
    assert all(str(peer.workdir) not in r.what for r in reaped)
    assert peer.conn.getHostname() == peer.name


@pytest.mark.integration
def test_migrating_a_guest_whose_domain_is_gone_names_it(peer: PeerDaemon, real_conn: Any,
                                                          mini_image: ImageArtifact) -> None:
    with RunGuests(RUN, handle_signals=False) as reg:
        g = launch(real_conn, GuestSpec(name="gone"), mini_image, run_id=RUN, registry=reg, wait=False,
                   workdir_root=runtime_root())
        g.destroy()
        with pytest.raises(VirtError, match=r"looking up domain klh-\S+-gone failed"):
            migrate_live(g, peer.conn)


# -- unit tests: no daemon, no guest ------------------------------------------------------------------------------

class FakeLibvirtError(libvirt.libvirtError):
    def __init__(self, code: int, message: str) -> None:
        Exception.__init__(self, message)
        self.code, self.message = code, message

    def get_error_code(self) -> int:
        return self.code

    def get_error_message(self) -> str:
        return self.message


@pytest.mark.parametrize(("code", "message", "refused"), [
    (libvirt.VIR_ERR_OPERATION_INVALID, "Requested operation is not valid: cannot migrate domain: Migration is "
     "disabled when using feature 'peer mode' in device 'ivshmem'", True),
    (libvirt.VIR_ERR_OPERATION_FAILED, "State blocked by non-migratable device 'kl-iwkey'", True),
    (libvirt.VIR_ERR_MIGRATE_UNSAFE, "Unsafe migration: Migration may lead to data corruption", True),
    (libvirt.VIR_ERR_OPERATION_FAILED, "operation failed: Could not set up host forwarding rule", False),
    (libvirt.VIR_ERR_OPERATION_INVALID, "Requested operation is not valid: domain is not running", False),
])
def test_refusal_recognises_blockers_and_nothing_else(code: int, message: str, refused: bool) -> None:
    err = refusal(FakeLibvirtError(code, message), "klh-r-g")
    if refused:
        assert isinstance(err, MigrationRefused) and isinstance(err, VirtError)
        assert str(err) == f"migration of klh-r-g refused: {message}"
    else:
        assert err is None


def test_set_conf_replaces_an_active_setting_and_keeps_comments(tmp_path: Path) -> None:
    conf = tmp_path / "libvirtd.conf"
    conf.write_text('#host_uuid = "commented"\nhost_uuid = "00000000-0000-0000-0000-000000000001"\nlisten_tls = 0\n')
    _set_conf(conf, "host_uuid", '"abc"', "p1")
    lines = conf.read_text().splitlines()
    assert [ln for ln in lines if ln.startswith("host_uuid")] == ['host_uuid = "abc"']
    assert '#host_uuid = "commented"' in lines and "listen_tls = 0" in lines


def test_reap_peers_removes_a_dead_harness_peer_and_keeps_a_live_ones(tmp_path: Path) -> None:
    dead_pid = int(Path("/proc/sys/kernel/pid_max").read_text()) + 1
    for name, pid in (("dead", dead_pid), ("live", os.getpid())):
        (tmp_path / name).mkdir()
        PeerState(run_id="r", name=name, host_uuid="u", harness_pid=pid).save(tmp_path / name)
    (tmp_path / "unmarked").mkdir()
    reaped = reap_peers(tmp_path)
    assert [(r.what, r.reason, r.errors) for r in reaped] == [
        (f"peer daemon {tmp_path / 'dead'}", f"harness pid {dead_pid} on {socket.gethostname()} is gone", [])]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["live", "unmarked"]
    assert [r.what for r in reap_peers(tmp_path, everything=True)] == []  # our own peer stays even with --all
    assert [r.what for r in reap_peers(tmp_path, run_id="r")] == [f"peer daemon {tmp_path / 'live'}"]


def test_a_workdir_too_deep_for_a_unix_socket_is_refused_before_anything_starts(tmp_path: Path) -> None:
    deep = tmp_path / ("d" * 100)
    with pytest.raises(HostError, match=r"too deep: its socket .* would exceed the 107-byte limit"):
        PeerDaemon(deep).start()
    assert not deep.exists()
