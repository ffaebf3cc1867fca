"""libvirt's capability cache: the /dev/kvm cause, the two-call measurement, and the loop for real.

The integration test makes /dev/kvm root-only again (as a fresh machine has it), checks that the
harness names the cause instead of timing out, lets ``scripts/start-libvirt`` repair it, and puts
the device back as it found it.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from harness.errors import HostError, VirtError
from harness.virt import capcache
from harness.virt.bounded import bounded

REPO = Path(__file__).resolve().parent.parent
QEMU_UID, QEMU_GID = 64242, 64243  # a user and group nobody on the machine has


def me_as_qemu() -> tuple[str, int, set[int]]:
    return ("qemu-test", QEMU_UID, {QEMU_GID})


def fake_device(tmp_path: Path, mode: int, *, group_of_qemu: bool) -> Path:
    """A file standing in for /dev/kvm: owned by us, in QEMU's group when asked (needs root)."""
    dev = tmp_path / "kvm"
    dev.write_text("")
    dev.chmod(mode)
    if group_of_qemu:
        if os.getuid() != 0:
            pytest.skip("giving the file QEMU's group needs root")
        os.chown(dev, -1, QEMU_GID)
    return dev


def test_root_only_dev_kvm_is_the_cause_with_owner_mode_and_fix(tmp_path: Path) -> None:
    dev = fake_device(tmp_path, 0o600, group_of_qemu=False)
    cause = capcache.dev_kvm_cause(dev, identity=me_as_qemu)
    assert cause is not None
    assert f"{dev} is " in cause.what and "-rw-------" in cause.what
    assert "QEMU's user qemu-test cannot open it" in cause.what and "re-probes QEMU on every call" in cause.what
    assert cause.fix.startswith("run scripts/start-libvirt") and "chmod 0660 /dev/kvm" in cause.fix


def test_dev_kvm_open_to_the_qemu_group_or_everyone_is_no_cause(tmp_path: Path) -> None:
    assert capcache.dev_kvm_cause(fake_device(tmp_path, 0o666, group_of_qemu=False), identity=me_as_qemu) is None
    group = tmp_path / "g"
    group.mkdir()
    assert capcache.dev_kvm_cause(fake_device(group, 0o660, group_of_qemu=True), identity=me_as_qemu) is None
    readonly = tmp_path / "r"
    readonly.mkdir()
    assert capcache.dev_kvm_cause(fake_device(readonly, 0o640, group_of_qemu=True), identity=me_as_qemu) is not None


def test_no_dev_kvm_or_no_qemu_user_is_no_cause(tmp_path: Path) -> None:
    assert capcache.dev_kvm_cause(tmp_path / "absent", identity=me_as_qemu) is None
    assert capcache.dev_kvm_cause(fake_device(tmp_path, 0o600, group_of_qemu=False), identity=lambda: None) is None


class Clock:
    """Each call of the measured function advances time by the next scripted duration."""

    def __init__(self, durations: list[float]) -> None:
        self.durations = list(durations)
        self.now = 0.0
        self.calls = 0

    def __call__(self) -> float:
        return self.now

    def call(self) -> None:
        self.calls += 1
        self.now += self.durations.pop(0)


@pytest.mark.parametrize(("durations", "stable", "calls"), [
    ([0.01, 0.01], True, 2),
    ([4.0, 0.01, 0.01], True, 3),   # the one probe after a daemon start
    ([4.0, 4.1], False, 2),         # the loop
    ([0.01, 4.0, 4.0], False, 3),
    ([0.01, 4.0, 0.02], True, 3),   # one re-probe (QEMU upgraded), then cached
])
def test_two_consecutive_fast_calls_make_a_stable_cache(durations: list[float], stable: bool, calls: int,
                                                        tmp_path: Path) -> None:
    clock = Clock(durations)
    check = capcache.measure(clock.call, local=False, clock=clock)
    assert (check.stable, clock.calls, len(check.durations)) == (stable, calls, calls)
    assert check.describe().startswith("stable: domcapabilities" if stable else "re-probed on every call")


def test_an_unstable_local_cache_names_this_hosts_cause_and_a_remote_one_how_to_look(tmp_path: Path) -> None:
    dev = fake_device(tmp_path, 0o600, group_of_qemu=False)
    clock = Clock([4.0, 4.0])
    local = capcache.measure(clock.call, local=True, clock=clock, dev_kvm=dev)
    assert not local.stable
    assert [c.what for c in local.causes] == [c.what for c in capcache.known_causes(dev)] != []
    clock = Clock([4.0, 4.0])
    remote = capcache.measure(clock.call, local=False, clock=clock, dev_kvm=dev)
    assert remote.causes == () and "no known cause applies here; see why with: virt-admin" in remote.describe()
    assert remote.to_dict()["durations"] == [4.0, 4.0] and remote.to_dict()["stable"] is False


def test_a_libvirt_timeout_names_the_known_cause_that_applies(monkeypatch: pytest.MonkeyPatch) -> None:
    cause = capcache.Cause("/dev/kvm is root:root crw-------", "run scripts/start-libvirt")
    monkeypatch.setattr(capcache, "known_causes", lambda dev_kvm=capcache.DEV_KVM: [cause])
    with pytest.raises(VirtError) as err:
        bounded(lambda: __import__("time").sleep(2), timeout=0.05, what="creating klh-x")
    assert str(err.value) == ("creating klh-x did not finish within 0s (libvirt call abandoned); known cause on this "
                              "machine: /dev/kvm is root:root crw------- (fix: run scripts/start-libvirt)")
    monkeypatch.setattr(capcache, "known_causes", lambda dev_kvm=capcache.DEV_KVM: [])
    with pytest.raises(VirtError, match=r"abandoned\)$"):
        bounded(lambda: __import__("time").sleep(2), timeout=0.05, what="creating klh-x")


# -- for real: the loop, the harness's error, the repair ------------------------------------------------

@pytest.fixture()
def root_only_dev_kvm() -> Iterator[Path]:
    """/dev/kvm made root:root 0600 (a fresh machine), put back as it was afterwards."""
    dev = capcache.DEV_KVM
    if not dev.exists():
        pytest.skip("this host has no /dev/kvm: the loop cannot happen here")
    if os.getuid() != 0:
        pytest.skip("changing /dev/kvm needs root")
    st = dev.stat()
    os.chown(dev, 0, 0)
    dev.chmod(0o600)
    try:
        yield dev
    finally:
        os.chown(dev, st.st_uid, st.st_gid)
        dev.chmod(st.st_mode & 0o7777)


@pytest.mark.integration
@pytest.mark.slow
def test_root_only_dev_kvm_is_detected_reported_and_repaired(root_only_dev_kvm: Path, real_conn: Any) -> None:
    # The loop, as libvirt shows it, and the harness's error instead of a creation timeout.
    with pytest.raises(HostError) as err:
        capcache.require_stable(real_conn, local=True, uri="qemu:///system")
    msg = str(err.value)
    assert msg.startswith("libvirt at qemu:///system re-probed on every call: domcapabilities ")
    assert f"{root_only_dev_kvm} is root:root crw-------" in msg and "run scripts/start-libvirt" in msg
    assert msg.endswith("so the run stops here")

    # The set-up step repairs it (one line saying so) and then checks the cache itself.
    out = subprocess.run(["bash", str(REPO / "scripts/start-libvirt")], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert f"start-libvirt: {root_only_dev_kvm} was root:root crw-------; set root:kvm 0660 as Debian's udev rule " \
           "would, so libvirt-qemu can open it" in lines
    assert any(ln.startswith("start-libvirt: QEMU capabilities stay cached (domcapabilities ") for ln in lines)
    st = root_only_dev_kvm.stat()
    assert (st.st_mode & 0o777, __import__("grp").getgrgid(st.st_gid).gr_name) == (0o660, "kvm")
    check = capcache.require_stable(real_conn, local=True, uri="qemu:///system")
    assert check.stable and all(d < capcache.FAST_CALL for d in check.durations[-2:])
