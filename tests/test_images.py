"""Tests for harness.images: cache keys, manifests, locking, recipes' pieces, and real boots.

Unit tests use a fake recipe and a temporary cache (no downloads, well under a second each).
Tests marked ``integration`` build the real ``mini`` image (downloading the kernel .deb once)
and boot it with plain QEMU under TCG.
"""

from __future__ import annotations

import gzip
import json
import lzma
import os
import shutil
import socket
import struct
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import ClassVar

import pytest

from harness import images, proc
from harness.errors import ImageError
from harness.images import cache, cloud, kernel
from harness.images import manifest as mf
from harness.images.artifact import FWCFG_AUTHORIZED_KEY, READY_MARKER, ImageArtifact
from harness.images.cpio import Archive
from harness.images.recipe import BuildResult, Option, Plan, Recipe
from harness.paths import cache_dir


@pytest.fixture(autouse=True)
def tmp_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> Path:
    """Unit tests get an empty cache; integration tests keep the real one (kernel .debs are reused)."""
    if request.node.get_closest_marker("integration"):
        return cache_dir()
    path = tmp_path / "cache"
    monkeypatch.setenv("KLHARNESS_CACHE", str(path))
    return path


class FakeRecipe(Recipe):
    """Builds two small files; counts its builds; ``version`` stands for a package version."""

    name = "fake"
    summary = "test double"
    options: ClassVar[Mapping[str, Option]] = {"colour": Option("a harmless option", "blue")}

    def __init__(self, version: str = "1.0", delay: float = 0.0) -> None:
        self.version = version
        self.delay = delay
        self.builds = 0

    def plan(self, options: Mapping[str, str]) -> Plan:
        opts = self.check_options(options)
        return Plan(self.name, opts, {"package": f"fake={self.version}", "colour": opts["colour"]})

    def build(self, plan: Plan, out: Path, work: Path) -> BuildResult:
        self.builds += 1
        time.sleep(self.delay)
        (out / "vmlinux").write_bytes(b"\x7fELF" + b"k" * 1000)
        (out / "initrd.cpio").write_bytes(b"i" * 500)
        return BuildResult(artifact={"kernel": "vmlinux", "initrd": "initrd.cpio", "cmdline": "console=ttyS0",
                                     "host_key": "ssh-ed25519 AAAAfake", "features": ["fwcfg"]},
                           kernel_version="9.9.9-fake")


def obtain(recipe: FakeRecipe, *, force: bool = False, **options: str) -> ImageArtifact:
    return cache.obtain(recipe, recipe.plan(options), force=force)


# --- cache keys -------------------------------------------------------------------------------

def test_key_is_stable_for_equal_inputs_and_moves_with_package_version_or_option() -> None:
    a, b = FakeRecipe("1.0"), FakeRecipe("1.0")
    assert a.plan({}).key == b.plan({}).key
    assert a.plan({}).key != FakeRecipe("1.1").plan({}).key
    assert a.plan({}).key != a.plan({"colour": "red"}).key


def test_source_hashes_follow_file_content(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("harness.images.recipe.REPO_DIR", tmp_path)
    (tmp_path / "guest_images" / "fake").mkdir(parents=True)
    init = tmp_path / "guest_images" / "fake" / "init"
    init.write_text("#!/bin/sh\necho one\n")

    class Sourced(FakeRecipe):
        sources = ("guest_images/fake/*",)

    before = Sourced().source_hashes()
    init.write_text("#!/bin/sh\necho two\n")
    after = Sourced().source_hashes()
    assert list(before) == ["guest_images/fake/init"]
    assert before != after


def test_missing_recipe_source_file_names_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("harness.images.recipe.REPO_DIR", tmp_path)

    class Sourced(FakeRecipe):
        sources = ("guest_images/fake/init",)

    with pytest.raises(ImageError, match=r"recipe file .*guest_images/fake/init not found"):
        Sourced().source_hashes()


# --- build, reuse, verification ----------------------------------------------------------------

def test_second_use_reuses_the_build_and_force_rebuilds() -> None:
    recipe = FakeRecipe()
    first = obtain(recipe)
    second = obtain(recipe)
    assert recipe.builds == 1
    assert first == second
    assert first.kernel == first.directory / "vmlinux" and first.kernel.read_bytes().startswith(b"\x7fELF")
    assert first.host_key == "ssh-ed25519 AAAAfake" and first.features == frozenset({"fwcfg"})
    obtain(recipe, force=True)
    assert recipe.builds == 2
    assert [e.directory for e in cache.entries()] == [first.directory]  # replaced, not duplicated


def test_changed_input_builds_a_new_entry() -> None:
    old = obtain(FakeRecipe("1.0"))
    new = obtain(FakeRecipe("2.0"))
    assert old.directory != new.directory
    assert {e.directory for e in cache.entries()} == {old.directory, new.directory}


def test_manifest_lists_every_file_with_sha256_and_size() -> None:
    art = obtain(FakeRecipe())
    data = json.loads((art.directory / "manifest.json").read_text())
    assert set(data["files"]) == {"vmlinux", "initrd.cpio"}
    assert data["files"]["initrd.cpio"]["size"] == 500
    assert data["files"]["initrd.cpio"]["sha256"] == mf.sha256_file(art.directory / "initrd.cpio")
    assert data["kernel_version"] == "9.9.9-fake" and data["build_seconds"] >= 0
    assert art.size_bytes == 1004 + 500


def test_corrupt_cached_file_is_an_error_naming_file_and_fix() -> None:
    recipe = FakeRecipe()
    art = obtain(recipe)
    target = art.directory / "initrd.cpio"
    st = target.stat()
    target.write_bytes(b"X" * 500)  # same size, different content
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))  # even with the old mtime
    with pytest.raises(ImageError) as err:
        obtain(recipe)
    message = str(err.value)
    assert str(target) in message and "SHA256" in message
    assert f"klharness image rm {art.directory.name}" in message
    assert recipe.builds == 1  # never silently rebuilt


def test_truncated_cached_file_is_reported_with_sizes() -> None:
    art = obtain(FakeRecipe())
    (art.directory / "vmlinux").write_bytes(b"\x7fELF")
    with pytest.raises(ImageError, match=r"vmlinux is 4 bytes, the manifest says 1004"):
        obtain(FakeRecipe())


def test_big_images_are_checked_by_mtime_on_use_and_by_sha256_on_verify(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cache, "FULL_VERIFY_LIMIT", 10)
    art = obtain(FakeRecipe())
    target = art.directory / "initrd.cpio"
    st = target.stat()
    target.write_bytes(b"Y" * 500)
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))
    obtain(FakeRecipe())  # size + mtime unchanged: the quick check cannot see it
    with pytest.raises(ImageError, match=r"initrd.cpio has SHA256"):
        cache.verify_entry(cache.entries()[0], full=True)
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    with pytest.raises(ImageError, match=r"initrd.cpio was modified after the build"):
        obtain(FakeRecipe())


def test_missing_manifest_is_reported_with_the_fix() -> None:
    art = obtain(FakeRecipe())
    (art.directory / "manifest.json").unlink()
    with pytest.raises(ImageError, match=r"manifest.json is missing.*klharness image rm fake-"):
        obtain(FakeRecipe())


def test_failed_build_leaves_nothing_behind() -> None:
    class Broken(FakeRecipe):
        def build(self, plan: Plan, out: Path, work: Path) -> BuildResult:
            (out / "half").write_text("x")
            raise ImageError("kernel package lacks CONFIG_PVH")

    with pytest.raises(ImageError, match="CONFIG_PVH"):
        obtain(Broken())
    assert [p.name for p in cache.images_root().iterdir() if p.name != ".locks"] == []


# --- locking -----------------------------------------------------------------------------------

def test_two_concurrent_builders_build_once_and_share_the_result() -> None:
    recipe = FakeRecipe(delay=0.5)
    results: list[ImageArtifact] = []
    threads = [threading.Thread(target=lambda: results.append(obtain(recipe))) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert recipe.builds == 1
    assert len(results) == 2 and results[0].directory == results[1].directory


def test_lock_wait_times_out_with_the_holder_named() -> None:
    directory = cache.entry_dir("fake", "0" * 64)
    expected = rf"pid {os.getpid()} .*{directory.name}"
    with (cache.entry_lock(directory), pytest.raises(ImageError, match=expected),
          cache.entry_lock(directory, timeout=0.3)):
        pass


# --- public API: names, options, removal --------------------------------------------------------

def test_unknown_image_name_lists_the_known_ones() -> None:
    with pytest.raises(ImageError, match=r"unknown image 'minii'; known images: cloud, debian, mini"):
        images.build_image("minii")


def test_unknown_option_suggests_the_close_one() -> None:
    with pytest.raises(ImageError, match=r"unknown option 'colur'; did you mean 'colour'\?"):
        FakeRecipe().plan({"colur": "red"})


def test_remove_by_name_and_unknown_target() -> None:
    art = obtain(FakeRecipe())
    with pytest.raises(ImageError, match=r"no cached image matches 'nothing'.*cached: fake-"):
        images.remove_image("nothing")
    assert images.remove_image(art.directory.name) == [art.directory]
    assert not art.directory.exists()


def test_failed_package_download_names_the_package_and_the_command_to_try() -> None:
    from harness.images import debs

    if shutil.which("apt-get") is None:
        pytest.skip("apt-get not installed")
    missing = debs.Package("busybox-static", "0.0-klh-nonexistent", "0" * 64, 0)
    with pytest.raises(ImageError, match=r"downloading package busybox-static=0.0-klh-nonexistent failed; try by hand: "
                                         r"`cd /tmp && apt-get download busybox-static=0.0-klh-nonexistent`"):
        debs.fetch(missing)


def test_unknown_package_says_to_update_the_index() -> None:

    if shutil.which("apt-cache") is None:
        pytest.skip("apt-cache not installed")
    with pytest.raises(ImageError, match=r"package 'linux-image-klh-nonexistent' is not in the apt index; run "
                                         r"`apt-get update`"):
        images.build_image("mini", options={"kernel": "debian", "kernel_package": "linux-image-klh-nonexistent"})


def test_cli_image_build_rejects_unknown_name_as_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    from harness.cli import EXIT_USAGE, main

    assert main(["image", "build", "nope"]) == EXIT_USAGE
    assert "unknown image 'nope'; known images: cloud" in capsys.readouterr().err


# --- pieces of the mini recipe -----------------------------------------------------------------

def test_cpio_archive_is_reproducible_and_readable_by_cpio(tmp_path: Path) -> None:
    def make() -> bytes:
        a = Archive()
        a.chardev("dev/console", 5, 1)
        a.file("etc/klh/modules", b"/lib/modules/x.ko\n")
        a.symlink("bin/sh", "/bin/busybox")
        a.dir("tmp", 0o1777)
        out = tmp_path / "a.cpio"
        with out.open("wb") as f:
            a.write(f)
        return out.read_bytes()

    assert make() == make()
    if shutil.which("cpio") is None:
        pytest.skip("cpio not installed (scripts/setup-host installs it)")
    listing = proc.run(["cpio", "-itv"], input_bytes=make(), timeout=10).stdout
    assert "crw-------" in listing and "dev/console" in listing
    assert "bin/sh -> /bin/busybox" in listing
    assert "drwxrwxrwt" in listing


def test_cpio_refuses_the_same_file_twice() -> None:
    a = Archive()
    a.file("etc/passwd", b"x")
    with pytest.raises(ImageError, match=r"'etc/passwd' added twice"):
        a.file("/etc/passwd", b"y")


MODULES_DEP = """\
kernel/drivers/net/virtio_net.ko.xz: kernel/drivers/net/net_failover.ko.xz kernel/net/core/failover.ko.xz
kernel/drivers/net/net_failover.ko.xz: kernel/net/core/failover.ko.xz
kernel/net/core/failover.ko.xz:
kernel/drivers/char/hw_random/virtio-rng.ko.xz:
"""


def test_module_load_order_puts_dependencies_first_and_skips_builtins() -> None:
    deps = kernel.parse_modules_dep(MODULES_DEP)
    order = kernel.load_order(deps, ["virtio_pci", "virtio_net", "virtio-rng"], ["kernel/drivers/virtio/virtio_pci.ko"])
    assert order == ["kernel/net/core/failover.ko.xz", "kernel/drivers/net/net_failover.ko.xz",
                     "kernel/drivers/net/virtio_net.ko.xz", "kernel/drivers/char/hw_random/virtio-rng.ko.xz"]


def test_unknown_module_is_named() -> None:
    with pytest.raises(ImageError, match=r"kernel module 'qemu_fw_cfg' is neither in modules.dep nor built in"):
        kernel.load_order(kernel.parse_modules_dep(MODULES_DEP), ["qemu_fw_cfg"])


def test_kernel_config_check_names_missing_options(tmp_path: Path) -> None:
    config = {"CONFIG_PVH": "y", "CONFIG_VIRTIO_NET": "m"}
    kernel.check_config(config, {"CONFIG_PVH": "y", "CONFIG_VIRTIO_NET": "ym"}, source=tmp_path / "config")
    with pytest.raises(ImageError, match=r"CONFIG_FW_CFG_SYSFS \(need y or m, have unset\)"):
        kernel.check_config(config, {"CONFIG_FW_CFG_SYSFS": "ym"}, source=tmp_path / "config")


def fake_bzimage(path: Path, payload: bytes, uncompressed_size: int) -> None:
    """A minimal bzImage: setup header with 'HdrS', setup_sects=1, payload offset/length."""
    setup = bytearray(1024)  # (setup_sects + 1) * 512
    setup[0x1F1] = 1
    setup[0x202:0x206] = b"HdrS"
    body = payload + struct.pack("<I", uncompressed_size)
    struct.pack_into("<II", setup, 0x248, 16, len(body))
    path.write_bytes(bytes(setup) + b"\0" * 16 + body)


@pytest.mark.parametrize("compress", [gzip.compress, lzma.compress], ids=["gzip", "xz"])
def test_vmlinux_is_cut_out_of_the_bzimage_payload(tmp_path: Path, compress: object) -> None:
    elf = b"\x7fELF" + os.urandom(4000)
    fake_bzimage(tmp_path / "vmlinuz", compress(elf), len(elf))  # type: ignore[operator]
    kernel.extract_vmlinux(tmp_path / "vmlinuz", tmp_path / "vmlinux")
    assert (tmp_path / "vmlinux").read_bytes() == elf


def test_vmlinux_extraction_checks_the_size_word_and_the_header(tmp_path: Path) -> None:
    elf = b"\x7fELF" + b"a" * 100
    fake_bzimage(tmp_path / "vmlinuz", gzip.compress(elf), len(elf) + 1)
    with pytest.raises(ImageError, match=r"decompressed kernel is 104 bytes, header says 105"):
        kernel.extract_vmlinux(tmp_path / "vmlinuz", tmp_path / "vmlinux")
    (tmp_path / "notakernel").write_bytes(b"\0" * 4096)
    with pytest.raises(ImageError, match=r"notakernel: not a bzImage"):
        kernel.extract_vmlinux(tmp_path / "notakernel", tmp_path / "vmlinux")


# --- cloud: seed ISO ---------------------------------------------------------------------------

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE1kJmUcjpgDkzOSHbsp6kvP3xN1nOqS/2Ql2wCdWoTM klh-test"


def test_cloud_user_data_installs_the_key_for_root_without_passwords() -> None:
    doc = cloud.user_data(authorized_keys=[KEY], user="root")
    assert doc["users"] == [{"name": "root", "ssh_authorized_keys": [KEY]}]
    assert doc["disable_root"] is False and doc["ssh_pwauth"] is False


def test_cloud_requires_base_and_key() -> None:
    with pytest.raises(ImageError, match=r"option 'base' is required"):
        images.build_image("cloud", options={"authorized_key": KEY})
    with pytest.raises(ImageError, match=r"base image /nonexistent/x.qcow2: No such file"):
        images.build_image("cloud", options={"base": "/nonexistent/x.qcow2", "authorized_key": KEY})
    with pytest.raises(ImageError, match=r"is not an OpenSSH public key line"):
        images.build_image("cloud", options={"base": "/dev/null", "authorized_key": "hello"})


def isoinfo_read(iso: Path, name: str) -> str:
    return proc.run(["isoinfo", "-R", "-i", str(iso), "-x", f"/{name}"], timeout=30).stdout


def test_cloud_seed_iso_carries_cidata_and_yaml_documents(tmp_path: Path) -> None:
    import yaml

    for tool in ("qemu-img", "genisoimage", "isoinfo"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} not installed (scripts/setup-host installs it)")
    base = tmp_path / "base.qcow2"
    proc.run(["qemu-img", "create", "-q", "-f", "qcow2", str(base), "64M"], timeout=30)
    art = images.build_image("cloud", options={"base": str(base), "authorized_key": KEY})
    assert art.disk == base and art.host_key is None and art.seed_iso is not None
    assert "Volume id: cidata" in proc.run(["isoinfo", "-d", "-i", str(art.seed_iso)], timeout=30).stdout
    user_data = isoinfo_read(art.seed_iso, "user-data")
    assert user_data.startswith("#cloud-config\n")
    assert yaml.safe_load(user_data)["users"][0]["ssh_authorized_keys"] == [KEY]
    meta = yaml.safe_load(isoinfo_read(art.seed_iso, "meta-data"))
    assert meta["local-hostname"] == "klh-cloud" and meta["instance-id"].startswith("klh-")
    # The user's base image is guarded by size + mtime: a write into it is caught on use.
    with base.open("ab") as f:
        f.write(b"\0" * 512)
    with pytest.raises(ImageError, match=r"base.qcow2 is \d+ bytes, the manifest says \d+"):
        images.build_image("cloud", options={"base": str(base), "authorized_key": KEY})


# --- integration: the real mini image under QEMU -----------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def greeting(port: int) -> bytes:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
            s.settimeout(1)
            return s.recv(64)
    except OSError:
        return b""


class Guest:
    def __init__(self, art: ImageArtifact, tmp: Path, authorized_key: str) -> None:
        self.port = free_port()
        self.console = tmp / "console.log"
        keyfile = tmp / "authorized_key"
        keyfile.write_text(authorized_key + "\n")
        assert art.kernel and art.initrd
        self.argv = ["qemu-system-x86_64", "-accel", "tcg", "-M", "pc", "-cpu", "qemu64", "-m", "512",
                     "-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
                     "-serial", f"file:{self.console}", "-kernel", str(art.kernel), "-initrd", str(art.initrd),
                     "-append", f"{art.cmdline} klh.net=static",
                     "-fw_cfg", f"name={FWCFG_AUTHORIZED_KEY},file={keyfile}",
                     "-netdev", f"user,id=n0,hostfwd=tcp:127.0.0.1:{self.port}-:22",
                     "-device", "virtio-net-pci,netdev=n0",
                     "-object", "rng-random,id=rng0,filename=/dev/urandom", "-device", "virtio-rng-pci,rng=rng0",
                     "-monitor", f"unix:{tmp / 'monitor.sock'},server,nowait"]
        if art.disk is not None:  # the base is never written: boot an overlay
            overlay = tmp / "overlay.qcow2"
            proc.run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", str(art.disk), str(overlay)],
                     timeout=60)
            self.argv += ["-drive", f"file={overlay},if=virtio,format=qcow2"]
        self.monitor = tmp / "monitor.sock"
        self.qemu = proc.Background(self.argv, stdout_path=tmp / "qemu.log")

    def text(self) -> str:
        return self.console.read_text(errors="replace") if self.console.exists() else ""

    def wait_ssh(self, timeout: float = 90.0) -> bytes:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.qemu.proc is not None and self.qemu.proc.poll() is None, f"QEMU died:\n{self.text()}"
            if READY_MARKER in self.text():
                got = greeting(self.port)
                if got.startswith(b"SSH-"):
                    return got
            time.sleep(0.05)
        raise AssertionError(f"no SSH greeting within {timeout}s; console:\n{self.text()[-3000:]}")

    def monitor_command(self, command: str) -> None:
        with socket.socket(socket.AF_UNIX) as s:
            s.connect(str(self.monitor))
            s.recv(4096)
            s.sendall(command.encode() + b"\n")
            time.sleep(0.2)


@pytest.fixture(scope="module", params=["klh", "debian"])
def mini(request: pytest.FixtureRequest) -> ImageArtifact:
    """Both kernels of the mini image: our own build (the default) and Debian's package."""
    for tool in ("qemu-system-x86_64", "apt-get", "busybox", "dropbear"):
        if shutil.which(tool) is None and not Path("/usr/sbin", tool).exists():
            pytest.fail(f"{tool} is missing: run scripts/setup-host")
    return images.build_image("mini", options={"kernel": request.param})


@pytest.fixture
def guest(mini: ImageArtifact, tmp_path: Path) -> Iterator[Guest]:
    g = Guest(mini, tmp_path, KEY)
    with g.qemu:
        yield g


@pytest.mark.integration
def test_mini_boots_to_an_ssh_greeting(mini: ImageArtifact, guest: Guest) -> None:
    start = time.monotonic()
    banner = guest.wait_ssh()
    assert banner.startswith(b"SSH-2.0-dropbear")
    text = guest.text()
    assert "klh: init" in text and READY_MARKER in text
    assert "warning" not in text.split(READY_MARKER)[0].lower().split("klh: init", 1)[1], text
    assert mini.kernel and mini.kernel.read_bytes()[:4] == b"\x7fELF"
    assert mini.host_key and mini.host_key.startswith("ssh-ed25519 ")
    print(f"boot to SSH greeting: {time.monotonic() - start:.1f}s")


@pytest.mark.integration
def test_mini_pins_host_key_installs_fwcfg_key_runs_static_binary_and_powers_off(
        mini: ImageArtifact, tmp_path: Path) -> None:
    for tool in ("ssh", "ssh-keygen", "cc"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} not installed")
    proc.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "id")], timeout=30)
    (tmp_path / "hello.c").write_text('#include <stdio.h>\nint main(void){puts("static ok");return 0;}\n')
    built = proc.run(["cc", "-static", "-o", str(tmp_path / "hello"), str(tmp_path / "hello.c")], timeout=60,
                     check=False)
    if not built.ok:
        pytest.skip(f"no static libc on this host: {built.describe()}")
    assert mini.host_key
    (tmp_path / "known_hosts").write_text(f"[127.0.0.1]:PORT {mini.host_key}\n")
    g = Guest(mini, tmp_path, (tmp_path / "id.pub").read_text().strip())
    known = tmp_path / "known_hosts"
    known.write_text(f"[127.0.0.1]:{g.port} {mini.host_key}\n")
    ssh = ["ssh", "-p", str(g.port), "-i", str(tmp_path / "id"), "-o", "BatchMode=yes",
           "-o", "StrictHostKeyChecking=yes", "-o", f"UserKnownHostsFile={known}", "-o", "LogLevel=ERROR",
           "root@127.0.0.1"]
    with g.qemu:
        g.wait_ssh()
        upload = proc.run([*ssh, "cat > /tmp/hello && chmod +x /tmp/hello && /tmp/hello"],
                          input_bytes=(tmp_path / "hello").read_bytes(), timeout=60, check=False)
        assert upload.ok and upload.stdout.strip() == "static ok", upload.describe()
        fwcfg = proc.run([*ssh, f"cat /sys/firmware/qemu_fw_cfg/by_name/{FWCFG_AUTHORIZED_KEY}/raw"],
                         timeout=30, check=False)
        assert fwcfg.stdout.strip() == (tmp_path / "id.pub").read_text().strip()
        release = proc.run([*ssh, "uname -r"], timeout=30, check=False).stdout.strip()
        assert release == mini.kernel_version  # the kernel the image says it boots is the one that runs
        assert mini.kernel_origin.startswith("klharness: " if release.endswith("-klh") else "Debian: ")
        g.monitor_command("system_powerdown")  # what `virsh shutdown` does
        assert g.qemu.proc is not None
        assert g.qemu.proc.wait(timeout=30) == 0
        assert "klh: power button: powering off" in g.text()


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.skipif(os.environ.get("KLHARNESS_TEST_DEBIAN") != "1",
                    reason="builds the debian image (about a minute); set KLHARNESS_TEST_DEBIAN=1")
def test_debian_boots_from_an_overlay_and_leaves_its_base_untouched(tmp_path: Path) -> None:
    art = images.build_image("debian")
    assert art.disk and art.disk.suffix == ".qcow2" and art.host_key
    g = Guest(art, tmp_path, KEY)
    with g.qemu:
        assert g.wait_ssh(timeout=180).startswith(b"SSH-2.0-OpenSSH")
    assert "klh: warning" not in g.text()
    images.build_image("debian")  # reuse verifies the base by size and mtime
