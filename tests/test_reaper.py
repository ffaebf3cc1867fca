"""The reaper: which klh-* domains are garbage, and that it removes them with their files.

Unit tests run on libvirt's ``test:///default`` driver (no daemon); the
integration test kills nothing but forges a dead harness pid on a real
transient domain.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import socket
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import libvirt
import pytest
from virt_support import obtain_mini_image, runtime_root

from harness.commands import cleanup
from harness.virt.guest import WORKDIR_MARKER
from harness.virt.metadata import NS, RunMetadata, harness_alive, process_start
from harness.virt.reaper import reap

DEAD_PID = int(Path("/proc/sys/kernel/pid_max").read_text()) + 1  # can never be alive


def domain_xml(name: str, meta: RunMetadata | None) -> str:
    dom = ET.Element("domain", type="test")
    ET.SubElement(dom, "name").text = name
    ET.SubElement(dom, "memory").text = "65536"
    os_el = ET.SubElement(dom, "os")
    ET.SubElement(os_el, "type").text = "hvm"
    if meta is not None:
        ET.SubElement(dom, "metadata").append(meta.element())
    return ET.tostring(dom, encoding="unicode")


def workdir(root: Path, name: str, pid: int) -> Path:
    wd = root / name
    wd.mkdir(parents=True)
    (wd / "overlay.qcow2").write_bytes(b"x")
    (wd / WORKDIR_MARKER).write_text(json.dumps({"run_id": "r", "pid": pid, "pid_start": "",
                                                 "host": socket.gethostname()}))
    return wd


@pytest.fixture()
def conn() -> Iterator[Any]:
    libvirt.registerErrorHandler(lambda _c, _e: None, None)
    c = libvirt.open("test:///default")
    yield c
    for d in c.listAllDomains(0):
        if d.name() != "test":  # the driver's own domain; the state is shared per process
            persistent = d.isPersistent()
            if d.isActive():
                d.destroy()
            if persistent:
                d.undefine()
    c.close()


def meta(run_id: str, pid: int, *, host: str | None = None, pid_start: str | None = None,
         wd: Path | None = None, files: tuple[str, ...] = ()) -> RunMetadata:
    m = RunMetadata(run_id=run_id, guest="g", spec_key="k", harness_pid=pid, workdir=str(wd or ""), files=files)
    if host is not None:
        m = dataclasses.replace(m, host=host)
    if pid_start is not None:
        m = dataclasses.replace(m, pid_start=pid_start)
    return m


def names(conn: Any) -> set[str]:
    return {d.name() for d in conn.listAllDomains(0)}


def test_harness_alive_uses_pid_and_its_start_time() -> None:
    me = os.getpid()
    assert harness_alive(meta("r", me))
    assert not harness_alive(meta("r", DEAD_PID))
    assert not harness_alive(meta("r", me, pid_start="1"))  # a recycled pid
    assert harness_alive(meta("r", DEAD_PID, host="another-host"))  # not ours to judge
    assert process_start(me).isdigit()


def test_default_reaps_only_domains_of_dead_harnesses(conn: Any, tmp_path: Path) -> None:
    wd = workdir(tmp_path / "root", "klh-dead-g", DEAD_PID)
    stray = tmp_path / "console-in-temp.log"
    stray.write_text("boot\n")
    conn.createXML(domain_xml("klh-dead-g", meta("dead", DEAD_PID, wd=wd, files=(str(stray),))), 0)
    conn.defineXML(domain_xml("klh-dead-p", meta("dead", DEAD_PID)))  # persistent, shut off
    conn.createXML(domain_xml("klh-live-g", meta("live", os.getpid())), 0)
    conn.createXML(domain_xml("klh-away-g", meta("away", DEAD_PID, host="elsewhere")), 0)
    conn.createXML(domain_xml("klh-untagged", None), 0)
    conn.createXML(domain_xml("other-vm", meta("dead", DEAD_PID)), 0)

    reaped = reap(conn, workdir_root=tmp_path / "root")

    assert {r.what for r in reaped} == {"klh-dead-g", "klh-dead-p"}
    assert names(conn) >= {"klh-live-g", "klh-away-g", "klh-untagged", "other-vm"}
    assert not names(conn) & {"klh-dead-g", "klh-dead-p"}
    assert not wd.exists() and not stray.exists()
    by = {r.what: r for r in reaped}
    assert by["klh-dead-g"].actions[:1] == ["destroyed"] and by["klh-dead-p"].actions == ["undefined"]
    assert f"harness pid {DEAD_PID}" in by["klh-dead-g"].describe()


def test_run_id_reaps_that_run_even_while_alive(conn: Any, tmp_path: Path) -> None:
    conn.createXML(domain_xml("klh-r7-a", meta("r7", os.getpid())), 0)
    conn.createXML(domain_xml("klh-r7-b", None), 0)  # untagged but named for the run
    conn.createXML(domain_xml("klh-r8-a", meta("r8", DEAD_PID)), 0)
    reaped = reap(conn, run_id="r7", workdir_root=tmp_path)
    assert {r.what for r in reaped} == {"klh-r7-a", "klh-r7-b"}
    assert "klh-r8-a" in names(conn)


def test_all_reaps_every_klh_domain_and_nothing_else(conn: Any, tmp_path: Path) -> None:
    conn.createXML(domain_xml("klh-x-a", meta("x", os.getpid())), 0)
    conn.createXML(domain_xml("klh-untagged", None), 0)
    conn.createXML(domain_xml("other-vm", None), 0)
    reaped = reap(conn, everything=True, workdir_root=tmp_path)
    assert {r.what for r in reaped} == {"klh-x-a", "klh-untagged"}
    assert "other-vm" in names(conn)


def test_workdir_without_marker_is_never_deleted(conn: Any, tmp_path: Path) -> None:
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "data").write_text("keep")
    conn.createXML(domain_xml("klh-dead-g", meta("dead", DEAD_PID, wd=precious, files=(str(precious),))), 0)
    reap(conn, workdir_root=tmp_path / "root")
    assert (precious / "data").read_text() == "keep"


def test_orphan_workdirs_of_dead_runs_are_removed(tmp_path: Path, conn: Any) -> None:
    root = tmp_path / "root"
    dead = workdir(root, "klh-dead-g", DEAD_PID)
    live = workdir(root, "klh-live-g", os.getpid())
    reaped = reap(conn, workdir_root=root)
    assert [r.what for r in reaped] == [str(dead)] and not dead.exists() and live.exists()


def test_cleanup_command_prints_what_it_removed(conn: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("KLHARNESS_RUNTIME_DIR", str(tmp_path))
    conn.createXML(domain_xml("klh-dead-g", meta("dead", DEAD_PID)), 0)
    parser = argparse.ArgumentParser()
    cleanup.register(parser.add_subparsers())
    args = parser.parse_args(["cleanup", "--uri", "test:///default"])
    # test:///default is one shared in-process state, so the command's own connection sees the domain.
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert out.startswith("removed klh-dead-g (run dead, harness pid") and "destroyed" in out
    assert args.func(args) == 0
    assert capsys.readouterr().out == "nothing to clean up\n"


def test_cleanup_rejects_run_id_with_all() -> None:
    parser = argparse.ArgumentParser()
    cleanup.register(parser.add_subparsers())
    with pytest.raises(SystemExit):
        parser.parse_args(["cleanup", "--run-id", "r", "--all"])


@pytest.mark.integration
def test_reaper_removes_a_real_domain_tagged_with_a_dead_pid(real_conn: Any) -> None:
    from harness.virt.launch import launch
    from harness.virt.spec import GuestSpec

    mini_image = obtain_mini_image()
    guest = launch(real_conn, GuestSpec(name="reapme"), mini_image, run_id=f"reap{os.getpid()}", wait=False,
                   workdir_root=runtime_root())
    try:
        dom = real_conn.lookupByName(guest.name)
        forged = dataclasses.replace(guest.meta, harness_pid=DEAD_PID)
        el = forged.element()
        for node in el.iter():  # setMetadata wants the element without its namespace; it adds NS itself
            node.tag = node.tag.split("}", 1)[1]
        dom.setMetadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT, ET.tostring(el, encoding="unicode"),
                        "klh", NS, libvirt.VIR_DOMAIN_AFFECT_LIVE)
        assert RunMetadata.from_domain_xml(dom.XMLDesc(0)).harness_pid == DEAD_PID  # type: ignore[union-attr]
        assert guest.workdir.exists()

        reaped = reap(real_conn, workdir_root=runtime_root())

        assert [r.what for r in reaped if r.what == guest.name] == [guest.name]
        assert guest.state() == "gone"
        assert not guest.workdir.exists()
    finally:
        guest.teardown()


def test_cleanup_config_cleans_every_real_host_of_a_config(tmp_path: Path) -> None:
    cfg = tmp_path / "hosts.yaml"
    cfg.write_text("hosts:\n  - {name: lab1, uri: 'qemu+ssh://root@lab1/system'}\n  - {name: peer, uri: local-peer}\n"
                   "  - {name: sim, uri: sim-remote}\n  - {name: lab2, uri: 'qemu+libssh://root@lab2/system'}\n"
                   "guests:\n  - name: g\n")
    args = argparse.Namespace(config=str(cfg), uri=None)
    # this machine first (its reaper also stops the local peer and simulated hosts of dead runs), then each lab
    assert cleanup.uris(args) == ["qemu:///system", "qemu+ssh://root@lab1/system", "qemu+libssh://root@lab2/system"]
    assert cleanup.uris(argparse.Namespace(config=None, uri=None)) == ["qemu:///system"]
