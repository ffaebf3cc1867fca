"""The ring-0 helper klhelper: its source tree, its build rules, and — in a real guest without Key
Locker — that it builds against the guest's kernel headers and refuses to load with the
KL-not-enumerated message."""

from __future__ import annotations

import platform
import re
import shutil
import tarfile
from collections.abc import Iterator
from io import BytesIO
from pathlib import Path
from typing import Any

import pytest

from harness import proc
from harness.errors import GuestError
from harness.guest import klhelper
from harness.guest.ssh import RemoteResult

MAIN = klhelper.SOURCE_DIR / "klhelper_main.c"
INSN = klhelper.SOURCE_DIR / "klhelper_insn.c"


# -- the source tree (fast) ----------------------------------------------------------------------------

def test_the_source_tree_is_complete_and_ships_without_build_products() -> None:
    assert klhelper.missing_sources() == []
    with tarfile.open(fileobj=BytesIO(klhelper.source_archive()), mode="r:gz") as tar:
        assert sorted(tar.getnames()) == sorted(klhelper.SOURCES)
        assert all(m.uid == 0 and m.isfile() for m in tar.getmembers())


def test_the_refusal_text_python_looks_for_is_the_one_the_module_prints() -> None:
    text = MAIN.read_text()
    assert f'pr_info("{klhelper.NOT_ENUMERATED}; not loading\\n");' in text
    assert klhelper.KERNEL_USES_KL in text
    assert re.search(r"return -ENODEV;", text) and re.search(r"return -EBUSY;", text)


def test_loadiwkey_is_the_linux_encoding_and_the_msrs_are_those_of_keylocker_md() -> None:
    insn = INSN.read_text()
    # KEYLOCKER.md §3: F3 0F 38 DC /r, ModRM d1 = XMM1 EncKey[127:0], XMM2 EncKey[255:128].
    assert '".byte 0xf3,0x0f,0x38,0xdc,0xd1"' in insn
    assert insn.count("_ASM_EXTABLE(1b, 2b)") == 2  # CR4 write and LOADIWKEY both fault-safe
    main = MAIN.read_text()
    for name, number in (("COPY_LOCAL_TO_PLATFORM", "0xd91"), ("COPY_PLATFORM_TO_LOCAL", "0xd92"),
                         ("COPY_STATUS", "0x990"), ("IWKEYBACKUP_STATUS", "0x991")):
        assert re.search(rf"#define MSR_KLH_{name} {number}\b", main), name
    assert 'MODULE_LICENSE("GPL")' in main  # kernel_fpu_begin and cr4_read_shadow are GPL-only


def test_only_the_opcode_object_skips_objtool() -> None:
    mk = (klhelper.SOURCE_DIR / "Makefile").read_text()
    assert "klhelper-y := klhelper_main.o klhelper_insn.o" in mk
    assert re.findall(r"OBJECT_FILES_NON_STANDARD\S*", mk) == ["OBJECT_FILES_NON_STANDARD_klhelper_insn.o"]
    assert "asm volatile" not in MAIN.read_text()  # every instruction objtool cannot decode is in _insn.c


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_without_headers_stops_with_the_package_to_install(tmp_path: Path) -> None:
    res = proc.run(["make", "-C", str(klhelper.SOURCE_DIR), f"KDIR={tmp_path}/nowhere", "KVER=9.9.9-test"],
                   timeout=60, check=False)
    assert res.returncode == 2
    assert f"klhelper: no kernel headers at {tmp_path}/nowhere (install linux-headers-9.9.9-test" in res.stderr


def test_builds_against_this_hosts_kernel_headers(tmp_path: Path) -> None:
    build = Path("/lib/modules") / platform.release() / "build"
    if not (build / "Makefile").exists():
        pytest.skip(f"no kernel headers for the host kernel {platform.release()} ({build} missing); the build is "
                    "checked in the debian guest by test_builds_in_the_debian_guest_and_refuses_without_kl")
    src = tmp_path / "klhelper"
    shutil.copytree(klhelper.SOURCE_DIR, src)
    res = proc.run(["make", "-C", str(src)], timeout=600, check=False)
    assert res.ok, res.describe()
    assert (src / "klhelper.ko").exists()


# -- in a real guest (integration) ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def debian_guest(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """One debian guest (gcc, make, headers of its own kernel), plain TCG CPU: no Key Locker."""
    from harness import cbuild
    from harness.config.model import Config, GuestConfig, RunSettings
    from harness.errors import HostError
    from harness.guest.probeguest import RunContext, boot
    from harness.guest.ssh import generate_keypair
    from harness.images import build_image
    from harness.kl.emuconfig import private_runtime_dir
    from harness.plan.matrix import plan_guest
    from harness.results.record import new_run_id
    from harness.timeouts import Timeouts
    from harness.virt.accel import choose_accel
    from harness.virt.connection import connect
    from harness.virt.registry import RunGuests

    guest = GuestConfig(name="klhelper", image="debian", memory_mib=1024)
    config = Config("tests/test_klhelper.py", RunSettings(kl_backend="emulated"), (guest,))
    image = build_image("debian")
    try:
        conn = connect("qemu:///system")
    except HostError as err:
        pytest.fail(f"integration tests need the libvirt daemon: {err}")
    run_id = new_run_id()
    keys = private_runtime_dir(run_id)
    ctx_dir = tmp_path_factory.mktemp("klhelper")
    with RunGuests(run_id, keep_console=True) as registry:
        ctx = RunContext(run_id, conn, generate_keypair(keys / "ssh", f"klharness-{run_id}"),
                         Timeouts(boot=300.0, exec=120.0), registry, cbuild.build("klprobe"),
                         choose_accel("auto"), ctx_dir)
        pg = boot(ctx, plan_guest(guest, config), image)
        try:
            yield pg
        finally:
            pg.teardown(keep=False)
            shutil.rmtree(keys, ignore_errors=True)
            conn.close()


@pytest.mark.integration
@pytest.mark.slow
def test_builds_in_the_debian_guest_and_refuses_without_kl(debian_guest: Any) -> None:
    cpuid = debian_guest.probe("cpuid").document.hardware_cpu
    assert not cpuid.kl.kl, "this test needs a guest CPU without Key Locker (TCG -cpu max has none)"
    session = debian_guest.connect()
    took = klhelper.build(session)
    ko = session.run(["modinfo", "-F", "vermagic", f"{klhelper.REMOTE_DIR}/klhelper.ko"], timeout=60, check=True)
    release = session.run(["uname", "-r"], timeout=30, check=True).text().strip()
    assert ko.text().split()[0] == release, "the module must be built for the guest's running kernel"

    result = klhelper.load(session, build_seconds=took)
    assert not result.loaded, result.describe()
    assert "No such device" in result.insmod_output, result.describe()  # -ENODEV
    assert result.refused_not_enumerated, result.describe()
    assert f"klhelper: {klhelper.NOT_ENUMERATED}; not loading" in result.kernel_log
    assert session.run(["test", "-e", "/sys/module/klhelper"], timeout=30).returncode != 0
    print(result.describe(), f"(build {took:.0f}s)")


class StatusOnly:
    def __init__(self, text: str) -> None:
        self.text_ = text

    def run(self, argv: Any, *, timeout: float | None = None, stdin: bytes | None = None, check: bool = False) -> Any:
        class R:
            def text(inner) -> str:
                return self.text_
        return R()

    def upload(self, data: bytes, remote_path: str, *, mode: int = 0o755) -> None:
        raise AssertionError("no upload")


def test_timings_read_the_backup_and_every_restore_from_status() -> None:
    status = ("cpuid.19: eax=0x7 ebx=0x15 ecx=0x0\nbackup: ok=1 fault=0 cpu=0 cycles=201953 polls=1 "
              "status_before=0x0 status=0x1 copy_status=0x1 (at load)\nrestore: none\nevents:\n"
              "online cpu2: restore ok=1 fault=0 cycles=30144 polls=1 status=0x1\n"
              "resume cpu0: IWKey not restored (restore=0)\n")
    got = klhelper.timings(StatusOnly(status))
    assert got["backup_cycles"] == 201953 and got["backup_ok"] is True
    assert got["restores"] == [{"when": "online", "cpu": "cpu2", "ok": True, "cycles": 30144}]
    assert got["events"] == ["online cpu2: restore ok=1 fault=0 cycles=30144 polls=1 status=0x1",
                             "resume cpu0: IWKey not restored (restore=0)"]


def test_the_source_archive_is_the_same_bytes_every_time() -> None:
    # It keys the cache of the module built on the host: a timestamp in it rebuilt the module per boot.
    assert klhelper.source_archive() == klhelper.source_archive()


class NoDebugfs:
    """A guest whose kernel has no debugfs: `uname -r` answers, the mount fails as mount(8) does."""

    def run(self, argv: Any, *, timeout: float | None = None, stdin: bytes | None = None, check: bool = False) -> Any:
        command = argv if isinstance(argv, str) else " ".join(argv)
        if command.startswith("uname"):
            return RemoteResult(command, 0, b"6.1.192-tiny\n", b"", 0.01)
        if "mount -t debugfs" in command:
            return RemoteResult(command, 32, b"mount: mounting none on /sys/kernel/debug failed: No such device\n",
                                b"", 0.01)
        raise AssertionError(f"nothing else may run once the mount failed: {command}")

    def upload(self, data: bytes, remote_path: str, *, mode: int = 0o755) -> None:
        raise AssertionError("no upload expected")


def test_a_guest_kernel_without_debugfs_is_named_before_insmod() -> None:
    with pytest.raises(GuestError, match=r"guest kernel 6.1.192-tiny cannot mount it \(mount: mounting none on "
                                         r"/sys/kernel/debug failed: No such device\): boot a kernel built with "
                                         r"CONFIG_DEBUG_FS"):
        klhelper.load(NoDebugfs())
