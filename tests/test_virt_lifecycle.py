"""Real guests through the real daemon: boot, lifecycle steps, and the errors bad inputs must give.

Marker ``integration``: needs libvirtd (``scripts/start-libvirt``), QEMU and the
mini image.  Under TCG each boot takes ~5-10 s.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import libvirt
import libvirt_qemu
import paramiko
import pytest
from virt_support import (
    SshKey,
    bookworm_kernel_package,
    obtain_mini_image,
    runtime_root,
    ssh,
    ssh_background,
    wait_ssh_banner,
)

from harness.errors import CapabilityError, HostError, VirtError
from harness.images.artifact import ImageArtifact
from harness.virt import launch as launch_mod
from harness.virt import lifecycle
from harness.virt.connection import connect
from harness.virt.guest import Guest
from harness.virt.launch import launch
from harness.virt.metadata import RunMetadata
from harness.virt.registry import RunGuests
from harness.virt.spec import FwCfgEntry, GuestSpec, KlExposure

pytestmark = pytest.mark.integration
RUN = f"t{os.getpid()}"


@pytest.fixture(scope="module")
def ssh_key() -> SshKey:
    return SshKey(paramiko.RSAKey.generate(2048))


@pytest.fixture()
def run_guests() -> Iterator[RunGuests]:
    with RunGuests(RUN, handle_signals=False) as reg:
        yield reg


def start(conn: Any, image: ImageArtifact, reg: RunGuests, key: SshKey | None = None, **spec: Any) -> Guest:
    spec.setdefault("name", "g")
    spec.setdefault("extra_cmdline", "klh.net=static")
    return launch(conn, GuestSpec(**spec), image, run_id=RUN, registry=reg, workdir_root=runtime_root(),
                  fwcfg=[key.fwcfg] if key else ())


def qom_get(guest: Guest, path: str, prop: str) -> Any:
    cmd = json.dumps({"execute": "qom-get", "arguments": {"path": path, "property": prop}})
    return json.loads(libvirt_qemu.qemuMonitorCommand(guest.domain(), cmd, 0))["return"]


def boots(guest: Guest) -> int:
    return guest.console.read().count(b"klh: init ")


def test_boot_reaches_ssh_ready_with_console_from_the_first_byte(real_conn: Any, mini_image: ImageArtifact,
                                                                 run_guests: RunGuests, ssh_key: SshKey) -> None:
    g = start(real_conn, mini_image, run_guests, ssh_key, name="boot")
    text = g.console.read().decode(errors="replace")
    assert "klh: ssh ready" in text and text.index("klh: init") < text.index("klh: ssh ready")
    assert g.accel.accel == "tcg" or "kvm_intel" in g.accel.reason or "kvm_amd" in g.accel.reason
    assert {"create", "console_first_byte", "boot"} <= set(g.timings)
    meta = RunMetadata.from_domain_xml(g.live_xml())
    assert meta is not None and meta.run_id == RUN and meta.harness_pid == os.getpid()
    assert meta.accel == g.accel.accel and meta.workdir == str(g.workdir)
    assert ssh(g, ssh_key, "echo hi") == "hi\n"
    assert "opt/klharness" not in g.live_xml() or "file=" in g.live_xml()
    g.teardown()
    run_guests.discard(g)
    assert g.state() == "gone" and not g.workdir.exists()


def test_save_and_restore_on_a_new_port_keeps_the_boot(real_conn: Any, mini_image: ImageArtifact,
                                                       run_guests: RunGuests, ssh_key: SshKey) -> None:
    g = start(real_conn, mini_image, run_guests, ssh_key, name="saver")
    boot_id = ssh(g, ssh_key, "cat /proc/sys/kernel/random/boot_id")
    old_port = g.ssh_port
    path = lifecycle.save(g)
    assert path.is_file() and g.state() == "gone"
    lifecycle.restore(g, new_port=True, fwcfg=[ssh_key.fwcfg, FwCfgEntry("opt/klharness/extra", text="new")])
    assert g.state() == "running" and g.ssh_port != old_port
    assert f"hostfwd=tcp:127.0.0.1:{g.ssh_port}-:22" in g.live_xml()
    assert str(g.workdir / "fwcfg-1-1") in g.live_xml() and "opt/klharness/extra" in g.live_xml()
    assert ssh(g, ssh_key, "cat /proc/sys/kernel/random/boot_id") == boot_id
    assert boots(g) == 1 and b"klh: ssh ready" in g.console.read()  # the log was appended to, not cut
    print("timings", g.timings)


def test_acpi_reboot_is_a_new_boot(real_conn: Any, mini_image: ImageArtifact, run_guests: RunGuests,
                                   ssh_key: SshKey) -> None:
    g = start(real_conn, mini_image, run_guests, ssh_key, name="reboot")
    before = ssh(g, ssh_key, "cat /proc/sys/kernel/random/boot_id")
    lifecycle.reboot(g)
    assert boots(g) == 2
    assert ssh(g, ssh_key, "cat /proc/sys/kernel/random/boot_id") != before
    lifecycle.reset(g)
    assert boots(g) == 3


def test_vcpu_hotplug_is_add_only(real_conn: Any, run_guests: RunGuests, ssh_key: SshKey) -> None:
    # A 6.1 guest kernel: 6.12 ("CPU topo: ... plus 0 hotplug CPUs") ignores the disabled MADT
    # entries QEMU 7.2 lists for hot-pluggable vCPUs, so the CPU never appears in the guest.
    image = obtain_mini_image({"kernel": "debian", "kernel_package": bookworm_kernel_package()})
    g = start(real_conn, image, run_guests, ssh_key, name="hotplug", vcpus=1, max_vcpus=2)
    assert lifecycle.vcpu_count(g) == 1
    lifecycle.add_vcpus(g, 2)
    assert lifecycle.vcpu_count(g) == 2
    deadline = time.monotonic() + 10
    while ssh(g, ssh_key, "cat /sys/devices/system/cpu/present").strip() != "0-1":
        assert time.monotonic() < deadline, "the hot-plugged vCPU never appeared in the guest"
        time.sleep(0.5)
    with pytest.raises(VirtError, match="vCPU hot-unplug is not supported"):
        lifecycle.add_vcpus(g, 1)
    with pytest.raises(VirtError, match="exceed max_vcpus 2"):
        lifecycle.add_vcpus(g, 3)


def test_aes_disabled_by_feature_policy_reaches_qemu_and_the_guest(real_conn: Any, mini_image: ImageArtifact,
                                                                  run_guests: RunGuests, ssh_key: SshKey) -> None:
    g = start(real_conn, mini_image, run_guests, ssh_key, name="noaes", cpu_features=(("aes", "disable"),),
              kl=KlExposure(leaf19_present_zero=True))
    qemu_log = Path(f"/var/log/libvirt/qemu/{g.name}.log").read_text()
    assert "-cpu max,aes=off" in qemu_log and "-global x86_64-cpu.min-level=0x19" in qemu_log
    assert qom_get(g, "/machine/unattached/device[0]", "aes") is False
    assert qom_get(g, "/machine/unattached/device[0]", "level") == 0x19
    cpuinfo = ssh(g, ssh_key, "cat /proc/cpuinfo")
    assert " aes " not in cpuinfo and "cpuid level\t: 25" in cpuinfo


def test_managed_save_and_start_of_a_persistent_guest(real_conn: Any, mini_image: ImageArtifact,
                                                      run_guests: RunGuests) -> None:
    g = start(real_conn, mini_image, run_guests, name="managed", persistent=True)
    lifecycle.managed_save(g)
    assert g.state() == "shutoff" and lifecycle.has_managed_save(g)
    lifecycle.start(g)
    assert g.state() == "running" and not lifecycle.has_managed_save(g)
    wait_ssh_banner(g.ssh_port)
    assert boots(g) == 1
    g.teardown()
    run_guests.discard(g)
    with pytest.raises(libvirt.libvirtError):
        real_conn.lookupByName(g.name)  # undefined, managed-save image included


def test_acpi_shutdown_is_graceful(real_conn: Any, mini_image: ImageArtifact, run_guests: RunGuests) -> None:
    g = start(real_conn, mini_image, run_guests, name="shutdown")
    assert lifecycle.shutdown(g) is True
    assert g.state() == "gone"


def test_suspend_to_ram_and_wake(real_conn: Any, mini_image: ImageArtifact, run_guests: RunGuests,
                                 ssh_key: SshKey) -> None:
    g = start(real_conn, mini_image, run_guests, ssh_key, name="s3", suspend_to_mem=True)
    assert g.live_xml().count("bzImage") == 1  # S3 needs the bzImage boot path
    boot_id = ssh(g, ssh_key, "cat /proc/sys/kernel/random/boot_id")
    ssh_background(g, ssh_key, "sleep 0.5; echo mem > /sys/power/state")
    deadline = time.monotonic() + 30
    while g.state() != "pmsuspended":
        assert time.monotonic() < deadline, f"guest never suspended (state {g.state()})"
        time.sleep(0.2)
    lifecycle.pm_wakeup(g)
    assert ssh(g, ssh_key, "cat /proc/sys/kernel/random/boot_id") == boot_id


def test_freeze_and_wake_by_key(real_conn: Any, run_guests: RunGuests, ssh_key: SshKey) -> None:
    # Debian's kernel: the wake key comes through the i8042 keyboard, which our own guest kernel
    # (only what the catalogue needs; no cell freezes) leaves out.
    image = obtain_mini_image({"kernel": "debian"})
    g = start(real_conn, image, run_guests, ssh_key, name="freeze")
    ssh(g, ssh_key, "echo enabled > /sys/devices/platform/i8042/serio0/power/wakeup")
    mark = g.console.mark()
    ssh_background(g, ssh_key, "sleep 0.5; echo freeze > /sys/power/state; echo klh: thawed > /dev/console")
    time.sleep(3)
    assert b"klh: thawed" not in g.console.read(mark)
    lifecycle.wake_from_freeze(g)
    g.wait_for_console("klh: thawed", after=mark, timeout=30, what="wake from freeze")


# -- bad inputs -------------------------------------------------------------------------------------


def test_daemon_down_names_the_start_script() -> None:
    with pytest.raises(HostError, match=r"cannot connect to libvirt at .*nonexistent.*scripts/start-libvirt"):
        connect("qemu+unix:///system?socket=/nonexistent/libvirt-sock")


def test_unknown_cpu_feature_is_a_capability_error_and_leaves_nothing(real_conn: Any, mini_image: ImageArtifact,
                                                                     run_guests: RunGuests) -> None:
    with pytest.raises(CapabilityError, match="libvirt/QEMU on this host have no CPU feature named 'keylocker'"):
        start(real_conn, mini_image, run_guests, name="nativekl", kl_backend="native", kl=KlExposure(enabled=True))
    assert not (runtime_root() / f"klh-{RUN}-nativekl").exists()
    with pytest.raises(libvirt.libvirtError):
        real_conn.lookupByName(f"klh-{RUN}-nativekl")


def test_unknown_feature_on_a_persistent_guest_is_not_left_defined(real_conn: Any, mini_image: ImageArtifact,
                                                                   run_guests: RunGuests) -> None:
    with pytest.raises(CapabilityError, match="no CPU feature named 'keylocker'"):
        start(real_conn, mini_image, run_guests, name="nativep", persistent=True, kl_backend="native",
              kl=KlExposure(enabled=True))
    with pytest.raises(libvirt.libvirtError):
        real_conn.lookupByName(f"klh-{RUN}-nativep")


def test_unknown_qemu_cpu_property_is_a_capability_error(real_conn: Any, mini_image: ImageArtifact,
                                                         run_guests: RunGuests) -> None:
    with pytest.raises(CapabilityError, match=r"QEMU on this host has no CPU property 'max-x86_64-cpu\.kl'"):
        start(real_conn, mini_image, run_guests, name="klprop", extra_qemu_cpu_args=("kl=on",))


def test_pinned_port_already_taken_is_a_host_error(real_conn: Any, mini_image: ImageArtifact,
                                                   run_guests: RunGuests) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(HostError, match=f"port 127.0.0.1:{port} for the SSH forward of .* is already in use"):
            launch(real_conn, GuestSpec(name="pinned"), mini_image, run_id=RUN, registry=run_guests,
                   workdir_root=runtime_root(), ssh_port=port, wait=False)


def test_lost_port_race_is_retried_with_another_port(real_conn: Any, mini_image: ImageArtifact,
                                                     run_guests: RunGuests, monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        ports = iter([port])
        real = launch_mod.free_loopback_port
        monkeypatch.setattr(launch_mod, "free_loopback_port", lambda: next(ports, None) or real())
        g = launch(real_conn, GuestSpec(name="race"), mini_image, run_id=RUN, registry=run_guests,
                   workdir_root=runtime_root(), wait=False)
        assert g.ssh_port != port and g.state() == "running"


def test_suspend_to_mem_without_a_bzimage_is_a_capability_error(real_conn: Any, mini_image: ImageArtifact,
                                                                run_guests: RunGuests) -> None:
    pvh_only = dataclasses.replace(mini_image, kernel_bzimage=None)
    with pytest.raises(CapabilityError, match="never resumes from S3"):
        start(real_conn, pvh_only, run_guests, name="s3pvh", suspend_to_mem=True)


def test_no_boot_progress_times_out_with_console_tail_and_cause(real_conn: Any, mini_image: ImageArtifact,
                                                               run_guests: RunGuests) -> None:
    from harness.errors import GuestError
    from harness.timeouts import Timeouts

    # 50 ms: less than QEMU itself takes to start on any machine, so no guest can make it (a 1 s budget
    # stopped being enough to fail once the mini image booted its own kernel: ~1.1 s to the marker).
    with pytest.raises(GuestError) as exc:
        launch(real_conn, GuestSpec(name="slow", extra_cmdline="klh.net=static"), mini_image, run_id=RUN,
               registry=run_guests, workdir_root=runtime_root(), timeouts=Timeouts(boot=0.05))
    msg = str(exc.value)
    assert "waiting for 'klh: ssh ready' on the console (guest klh-" in msg
    assert "likely cause: the guest runs under TCG" in msg and "console log" in msg


def test_sigterm_to_a_run_tears_its_guests_down(mini_image: ImageArtifact, real_conn: Any) -> None:
    script = textwrap.dedent(f"""
        import dataclasses, sys, time
        from pathlib import Path
        from harness.images.artifact import ImageArtifact
        from harness.virt.connection import connect
        from harness.virt.launch import launch
        from harness.virt.registry import RunGuests
        from harness.virt.spec import GuestSpec
        img = ImageArtifact(name="mini", key="k", directory=Path({str(mini_image.directory)!r}),
                            kernel=Path({str(mini_image.kernel)!r}), initrd=Path({str(mini_image.initrd)!r}),
                            cmdline={mini_image.cmdline!r}, ready_marker="klh: ssh ready")
        with RunGuests("sig{os.getpid()}") as reg:
            g = launch(connect(), GuestSpec(name="victim"), img, run_id="sig{os.getpid()}", registry=reg,
                       workdir_root=Path({str(runtime_root())!r}), wait=False)
            print(g.name, flush=True)
            time.sleep(120)
    """)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=env, text=True)
    try:
        assert proc.stdout is not None
        name = proc.stdout.readline().strip()
        assert name == f"klh-sig{os.getpid()}-victim", proc.stderr.read() if proc.stderr else ""
        assert real_conn.lookupByName(name).isActive()
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode != 0
    with pytest.raises(libvirt.libvirtError):
        real_conn.lookupByName(name)
    assert not (runtime_root() / name).exists()
