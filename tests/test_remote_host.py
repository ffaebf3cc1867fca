"""A guest on a host that shares nothing with this machine but an SSH port (scripts/sim-remote-host).

What is checked, each against the simulated lab host: the console arrives over libvirt's stream from
its first byte and keeps growing across a save and restore (a new QEMU process); the guest's SSH
forward is reached only through the host's SSH; kernel, initrd, fw_cfg blobs and the save image live in
the host's pool and are gone after the run's cleanup; a dead run's staged volumes are reaped; and the
faults a lab meets (unreachable host, wrong key, unknown host key, no libvirt, a full disk, a dropped
SSH link, a libvirtd restart) each end in an error that says which and what to do.
"""

from __future__ import annotations

import functools
import json
import os
import socket
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import libvirt
import pytest
from virt_support import obtain_mini_image

from harness.errors import HostError, SSHError, VirtError
from harness.guest.ssh import Session, generate_keypair
from harness.host.link import HostLink
from harness.images.artifact import FWCFG_AUTHORIZED_KEY, ImageArtifact
from harness.ssh_target import SshTarget
from harness.timeouts import Timeouts
from harness.virt import lifecycle
from harness.virt.connection import connect, connect_resilient
from harness.virt.launch import launch
from harness.virt.reaper import reap
from harness.virt.simhost import SimHost, start_sim_host, stop_run_sim_hosts
from harness.virt.spec import FwCfgEntry, GuestSpec
from harness.virt.storage import (
    POOL_NAME,
    create_overlay_volume,
    delete_volumes,
    ensure_pool,
    run_tags,
    run_volume_prefixes,
    stage_file,
    stage_image,
    tag_run,
)

pytestmark = pytest.mark.integration

RUN_ID = "20261208-000000-rh01"
TIMEOUTS = Timeouts()


@pytest.fixture(scope="module")
def sim() -> Iterator[SimHost]:
    host = start_sim_host(RUN_ID, "lab", timeouts=TIMEOUTS)
    try:
        yield host
    finally:
        assert stop_run_sim_hosts(RUN_ID) == []


@pytest.fixture(scope="module")
def link(sim: SimHost) -> Iterator[HostLink]:
    target = SshTarget.from_uri(sim.uri)
    assert target is not None
    hl = HostLink(target, TIMEOUTS)
    yield hl
    hl.close()


@pytest.fixture(scope="module")
def remote_conn(sim: SimHost) -> Iterator[Any]:
    conn = connect_resilient(sim.uri)
    yield conn
    conn.close()


def volumes(conn: Any) -> list[str]:
    try:
        pool = conn.storagePoolLookupByName(POOL_NAME)
    except libvirt.libvirtError:
        return []
    pool.refresh(0)
    return sorted(v.name() for v in pool.listAllVolumes(0))


def test_a_guest_runs_there_with_its_console_streamed_and_ssh_through_the_host(
        sim: SimHost, link: HostLink, remote_conn: Any, tmp_path: Path) -> None:
    image = stage_image(remote_conn, obtain_mini_image())
    keys = generate_keypair(tmp_path / "ssh", "klh-remote-test")
    console = tmp_path / "console.log"
    spec = GuestSpec(name="remote1", vcpus=1, memory_mib=256)
    guest = launch(remote_conn, spec, image, run_id=RUN_ID, console_log=console, timeouts=TIMEOUTS,
                   fwcfg=[FwCfgEntry(FWCFG_AUTHORIZED_KEY, text=keys.public_line + "\n")],
                   stage=functools.partial(stage_file, remote_conn, mode=0o600))
    try:
        xml = guest.live_xml()
        assert "<log " not in xml, "a remote host's serial must not log to a path of ours"
        first = console.read_bytes()
        assert first.lstrip().startswith(b"Linux version") or b"Linux version" in first[:2000], first[:300]
        # This machine's loopback has nothing on the guest's port: the forward lives on the host's.
        with pytest.raises(OSError), socket.create_connection(("127.0.0.1", guest.ssh_port), timeout=2) as s:
            s.settimeout(2)
            assert not s.recv(4).startswith(b"SSH-")
        assert image.host_key is not None
        with Session.connect("127.0.0.1", guest.ssh_port, user="root", key=keys, host_key=image.host_key,
                             timeouts=TIMEOUTS, deadline=60.0, dial=link.dial) as session:
            assert session.run(["cat", "/proc/sys/kernel/hostname"], check=True).stdout.strip()
            # The link to the host drops under the guest's session: the session dies with it (an error
            # that says so, never a silent rerun), and the next connect opens the link once more.
            drops = link.reconnects
            link.session().close()
            with pytest.raises(SSHError, match="connection lost"):
                session.run(["true"])
        with Session.connect("127.0.0.1", guest.ssh_port, user="root", key=keys, host_key=image.host_key,
                             timeouts=TIMEOUTS, deadline=60.0, dial=link.dial) as session:
            assert session.run(["true"]).ok and link.reconnects == drops + 1
        staged = volumes(remote_conn)
        assert any(v.startswith(f"fw-{guest.name}-") for v in staged), staged
        # A new QEMU process: the console is attached again before the guest runs, and appends.
        before = console.stat().st_size
        saved = lifecycle.save(guest)
        assert str(saved).startswith("/var/lib/libvirt/images/klharness/save-"), saved
        lifecycle.restore(guest)
        with Session.connect("127.0.0.1", guest.ssh_port, user="root", key=keys, host_key=image.host_key,
                             timeouts=TIMEOUTS, deadline=60.0, dial=link.dial) as session:
            session.run("echo after-restore > /dev/console", check=True)
        guest.wait_for_console("after-restore", after=before, timeout=30, what="echo after restore")
        assert console.stat().st_size > before
        own = [v for v in volumes(remote_conn) if v.startswith(run_volume_prefixes(RUN_ID))]
        assert any(v.startswith("save-") for v in own) and any(v.startswith("fw-") for v in own), own
    finally:
        guest.teardown()
    assert guest.name not in [d.name() for d in remote_conn.listAllDomains(0)]
    # its own volumes (fw_cfg blobs, the save image) went with it; the image's boot files stay, for reuse
    assert not [v for v in volumes(remote_conn) if v.startswith(run_volume_prefixes(RUN_ID))]
    assert [v for v in volumes(remote_conn) if v.startswith("img-")]


def test_a_disk_image_is_staged_once_and_each_guest_gets_an_overlay_there(
        remote_conn: Any, tmp_path: Path) -> None:
    disk = tmp_path / "base.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(disk), "64M"], check=True, timeout=60)
    image = ImageArtifact(name="disktest", key="k" * 64, directory=tmp_path, disk=disk)
    staged = stage_image(remote_conn, image)
    assert staged.disk is not None and str(staged.disk).startswith("/var/lib/libvirt/images/klharness/img-")
    uploaded = remote_conn.storageVolLookupByPath(str(staged.disk)).key()
    first = ET.fromstring(remote_conn.storageVolLookupByPath(str(staged.disk)).XMLDesc(0)).findtext(
        "target/timestamps/mtime")
    remote_conn.storagePoolLookupByName(POOL_NAME).refresh(0)  # the pool now knows the base as qcow2
    assert stage_image(remote_conn, image).disk == staged.disk  # by content: the second run uploads nothing
    again = remote_conn.storageVolLookupByPath(str(staged.disk))
    assert again.key() == uploaded and ET.fromstring(again.XMLDesc(0)).findtext("target/timestamps/mtime") == first
    # an upload that was cut short leaves no marker: the next run uploads again instead of trusting it
    remote_conn.storagePoolLookupByName(POOL_NAME).storageVolLookupByName(f"{staged.disk.name}.staged").delete(0)
    stage_image(remote_conn, image)
    redone = remote_conn.storageVolLookupByPath(str(staged.disk))
    assert ET.fromstring(redone.XMLDesc(0)).findtext("target/timestamps/mtime") != first
    overlay = create_overlay_volume(remote_conn, staged.disk, f"ovl-klh-{RUN_ID}-g-overlay.qcow2")
    try:
        vol = remote_conn.storageVolLookupByPath(str(overlay))
        root = ET.fromstring(vol.XMLDesc(0))
        assert root.findtext("backingStore/path") == str(staged.disk)
        assert root.find("target/format") is not None and root.find("target/format").get("type") == "qcow2"
        assert int(root.findtext("capacity") or 0) == 64 << 20  # the base's virtual size, not its file size
    finally:
        delete_volumes(remote_conn, (*run_volume_prefixes(RUN_ID), "img-disktest-"))


def test_the_reaper_removes_a_dead_runs_staged_volumes_only(remote_conn: Any, tmp_path: Path) -> None:
    blob = tmp_path / "blob"
    blob.write_bytes(b"secret")
    dead, live = "20261208-000000-dead", "20261208-000000-live"
    tag_run(remote_conn, dead, {"run_id": dead, "pid": 2**22 - 3, "pid_start": "1", "host": socket.gethostname()},
            tmp_path)
    tag_run(remote_conn, live, {"run_id": live, "pid": 1, "pid_start": "x", "host": "another-machine"}, tmp_path)
    stage_file(remote_conn, blob, f"fw-klh-{dead}-g-klemu.conf", mode=0o600)
    stage_file(remote_conn, blob, f"fw-klh-{live}-g-klemu.conf", mode=0o600)
    assert {dead, live} <= set(run_tags(remote_conn))
    try:
        reaped = reap(remote_conn, local=False)
        assert [r.run_id for r in reaped if r.what.startswith("staged")] == [dead]
        left = volumes(remote_conn)
        assert not [v for v in left if dead in v] and f"fw-klh-{live}-g-klemu.conf" in left
    finally:
        delete_volumes(remote_conn, run_volume_prefixes(live) + run_volume_prefixes(dead))


def test_ssh_link_faults_say_which(sim: SimHost, tmp_path: Path) -> None:
    target = SshTarget.from_uri(sim.uri)
    assert target is not None
    with socket.socket() as s:  # a port with nothing behind it
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    with pytest.raises(HostError, match="unreachable over SSH"):
        HostLink(replace(target, port=closed), TIMEOUTS).session()
    other = generate_keypair(tmp_path / "other", "not-authorized")
    with pytest.raises(HostError, match="was refused"):
        HostLink(replace(target, keyfile=other.private_path), TIMEOUTS).session()
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    with pytest.raises(HostError, match=r"not in .*never accepts an unknown host key"):
        HostLink(replace(target, known_hosts=empty), TIMEOUTS).session()
    wrong = tmp_path / "wrong_known_hosts"
    wrong.write_text(f"[127.0.0.1]:{sim.port} {other.public_line}\n")
    with pytest.raises(HostError, match="host key mismatch"):
        HostLink(replace(target, known_hosts=wrong), TIMEOUTS).session()


def test_a_dropped_link_reconnects_once(link: HostLink) -> None:
    before = link.reconnects
    link.session().close()  # the connection drops under the harness
    assert link.run(["true"], check=True).ok
    assert link.reconnects == before + 1
    assert link.run(["true"], check=True).ok and link.reconnects == before + 1  # a live link is reused


def test_a_full_host_disk_is_named(sim: SimHost, link: HostLink, remote_conn: Any, tmp_path: Path) -> None:
    blob = tmp_path / "big"
    blob.write_bytes(b"\0" * (2 << 20))
    ensure_pool(remote_conn)
    # its disk: what is used now plus 1 MiB (a tmpfs cannot shrink below what it holds)
    link.run("used=$(df --output=used -k /var/lib/libvirt | tail -1); "
             "mount -o remount,size=$((used + 1024))k /var/lib/libvirt", check=True)
    try:
        with pytest.raises(VirtError, match=r"uploading .*big.* No space left|uploading .*big.*space"):
            stage_file(remote_conn, blob, "fw-klh-probe-b", mode=0o600)
    finally:
        link.run("mount -o remount,size=50% /var/lib/libvirt", check=True)
        delete_volumes(remote_conn, "fw-klh-probe-")


def test_no_libvirt_then_a_restart(sim: SimHost, link: HostLink) -> None:
    conn = connect_resilient(sim.uri, reconnect_timeout=30)
    try:
        # Its own pid file (its /run is its own); never pkill: the simulated host shares this machine's pids.
        link.run("pid=$(cat /run/libvirtd.pid); kill $pid; "
                 "for i in $(seq 50); do kill -0 $pid 2>/dev/null || break; sleep 0.1; done", check=True)
        with pytest.raises(HostError, match=r"cannot connect to libvirt at qemu\+libssh"):
            connect(sim.uri, timeout=20)
        link.run("libvirtd -d", check=True)
        assert conn.getHostname() == sim.name  # the old connection came back by itself
        here = connect("qemu:///system", timeout=20)  # and this machine's daemon was never touched
        assert here.getHostname() == socket.gethostname()
        here.close()
    finally:
        link.run("kill -0 $(cat /run/libvirtd.pid 2>/dev/null) 2>/dev/null || libvirtd -d", check=True)
        conn.close()


def test_a_run_over_a_remote_host_leaves_nothing_on_either_host(sim: SimHost, remote_conn: Any,
                                                                tmp_path: Path) -> None:
    """``klharness run`` with the simulated host given by its URI, as a lab host is: it outlives the run, so
    what the run left there can be looked at."""
    cfg = tmp_path / "remote.yaml"
    cfg.write_text(f"""run: {{kl_backend: emulated, profile: emulated, parallel: 2, keep: all}}
hosts:
  - {{name: here, uri: "qemu:///system"}}
  - {{name: lab, uri: "{sim.uri}"}}
guests:
  - {{name: kl-full, image: mini, kl: {{enabled: true}}}}
  - {{name: kl-off, image: mini, kl: {{enabled: false}}}}
lifecycle: [save-restore]
""")
    results = tmp_path / "results"
    res = subprocess.run([sys.executable, "-m", "harness.cli", "run", str(cfg), "--results", str(results), "-q"],
                         capture_output=True, text=True, timeout=900, check=False)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    record = json.loads(next(results.glob("*/record.json")).read_text())
    run_id = record["run_id"]
    assert set(record["placement"].values()) == {"here", "lab"}, record["placement"]
    remote_guest = next(g for g, h in record["placement"].items() if h == "lab")
    console = next(results.glob(f"*/guests/{remote_guest}/console.log")).read_text(errors="replace")
    assert "Linux version" in console.splitlines()[0], console[:200]  # from its first line on
    assert not record.get("teardown_errors"), record.get("teardown_errors")
    assert not [d.name() for d in remote_conn.listAllDomains(0) if run_id in d.name()]
    assert not [v for v in volumes(remote_conn) if run_id in v], volumes(remote_conn)
    here = connect("qemu:///system", timeout=20)
    try:
        assert not [d.name() for d in here.listAllDomains(0) if run_id in d.name()]
    finally:
        here.close()


@pytest.mark.slow
@pytest.mark.skipif(os.environ.get("KLHARNESS_TEST_DEBIAN") != "1",
                    reason="builds the debian image (about a minute); set KLHARNESS_TEST_DEBIAN=1")
def test_a_disk_guest_boots_there_from_an_overlay_in_the_hosts_pool(link: HostLink, remote_conn: Any,
                                                                     tmp_path: Path) -> None:
    from harness.images import build_image

    image = stage_image(remote_conn, build_image("debian"))
    assert image.disk is not None and image.host_key is not None
    keys = generate_keypair(tmp_path / "ssh", "klh-remote-disk")
    guest = launch(remote_conn, GuestSpec(name="remote-disk", image="debian", memory_mib=512), image,
                   run_id=RUN_ID, console_log=tmp_path / "console.log", timeouts=TIMEOUTS,
                   fwcfg=[FwCfgEntry(FWCFG_AUTHORIZED_KEY, text=keys.public_line + "\n")],
                   stage=functools.partial(stage_file, remote_conn, mode=0o600))
    try:
        overlay = guest.runtime.overlay
        assert overlay is not None and str(overlay).startswith("/var/lib/libvirt/images/klharness/ovl-")
        with Session.connect("127.0.0.1", guest.ssh_port, user=image.ssh_user, key=keys, host_key=image.host_key,
                             timeouts=TIMEOUTS, deadline=180.0, dial=link.dial) as session:
            assert session.run(["test", "-b", "/dev/vda"], check=True).ok
    finally:
        guest.teardown()
    assert not [v for v in volumes(remote_conn) if v.startswith(f"ovl-{guest.name}-")]
