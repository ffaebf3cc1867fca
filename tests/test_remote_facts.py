"""Host facts read on a remote host over its SSH link (harness.host.remote_facts): the same facts, in the same
shape, as host-check reads here; every command that fails gives its fact a reason, never an exception.

Three kinds of far host: a made-up lab host whose files are canned answers, this machine reached through a
shell without SSH (so the remote reader can be compared with the local one on the same files), and, in the
integration test, the simulated remote host of scripts/sim-remote-host over a real SSH link."""

from __future__ import annotations

import gzip
import os
import platform
import shlex
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from harness import cbuild
from harness.commands import hostcheck as hostcheck_command
from harness.errors import BuildError, SSHError
from harness.guest.ssh import RemoteResult
from harness.host import check as hostcheck
from harness.host import factparse, remote_facts
from harness.host import facts as hostfacts
from harness.host.verdict import render_text
from harness.proc import CommandResult
from harness.ssh_target import SshTarget

NAMES = hostcheck.feature_names("keylocker")
LAB = SshTarget("qemu+ssh://root@lab1/system", "root", "lab1", 22, None, Path("/nonexistent/known_hosts"))
Section = tuple[str, str, int]  # stdout, stderr, exit status


# -- far hosts -----------------------------------------------------------------------------------------------

def result(argv: list[str] | str, returncode: int, stdout: bytes | str = b"", stderr: bytes | str = b"",
           *, timed_out: bool = False) -> RemoteResult:
    out = stdout.encode() if isinstance(stdout, str) else stdout
    err = stderr.encode() if isinstance(stderr, str) else stderr
    return RemoteResult(argv if isinstance(argv, str) else shlex.join(argv), returncode, out, err, 0.01, timed_out)


def render(marker: str, sections: dict[str, Section]) -> str:
    """What the facts script prints for these sections (its format: begin, stdout, err, stderr, end RC)."""
    return "".join(f"{marker} begin {n}\n{out}\n{marker} err {n}\n{err}\n{marker} end {n} {rc}\n"
                   for n, (out, err, rc) in sections.items())


def script_marker(script: bytes) -> str:
    first = script.decode().splitlines()[0]
    assert first.startswith("M=")
    return shlex.split(first[2:])[0]


class CannedLink:
    """A link whose facts script answers with canned sections and whose probe command with ``probe``."""

    def __init__(self, sections: dict[str, Section],
                 probe: Callable[[list[str], bytes], RemoteResult] | None = None) -> None:
        self.target = LAB
        self.sections = sections
        self.probe = probe or (lambda argv, _stdin: result(argv, 126, stderr="sh: 5: /tmp/x/klprobe: Permission "
                                                                               "denied"))
        self.calls: list[tuple[list[str] | str, float | None]] = []

    def run(self, argv: list[str] | str, *, timeout: float | None = None, check: bool = False,
            stdin: bytes | None = None) -> RemoteResult:
        self.calls.append((argv, timeout))
        assert timeout is not None, "every remote command is bounded"
        if argv == ["sh", "-s"]:
            assert stdin is not None
            return result(argv, 0, render(script_marker(stdin), self.sections))
        assert isinstance(argv, list) and argv[:2] == ["sh", "-c"], argv
        return self.probe(argv, stdin or b"")


class DroppedLink:
    """A link whose host went away: every command raises what Session.run raises then."""

    target = LAB
    calls = 0

    def run(self, argv: list[str] | str, *, timeout: float | None = None, check: bool = False,
            stdin: bytes | None = None) -> RemoteResult:
        self.calls += 1
        raise SSHError(f"{LAB.where}: connection lost while running `{argv}` after 0.0s: EOFError (not retried)")


class ShellLink:
    """This machine as a far host: each command runs in a local shell, as sshd would run it there."""

    def __init__(self, tmpdir: Path) -> None:
        self.target = LAB
        self.env = {**os.environ, "TMPDIR": str(tmpdir)}

    def run(self, argv: list[str] | str, *, timeout: float | None = None, check: bool = False,
            stdin: bytes | None = None) -> RemoteResult:
        command = argv if isinstance(argv, list) else ["sh", "-c", argv]
        done = subprocess.run(command, input=stdin or b"", capture_output=True, timeout=timeout, env=self.env,
                              check=False)
        return result(argv, done.returncode, done.stdout, done.stderr)


def probe_output() -> bytes:
    """What klprobe cpuid prints here: a real probe document (the canned hosts' CPUID)."""
    return subprocess.run([str(cbuild.build("klprobe")), "cpuid", "--backend", "native"], capture_output=True,
                          check=True, timeout=60).stdout


# -- a made-up Tiger Lake lab host ----------------------------------------------------------------------------

CPUINFO = ("processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: 11th Gen Intel(R) Core(TM) i7-1185G7\n"
           "microcode\t: 0xa4\nflags\t\t: fpu aes cpuid_fault\n\nprocessor\t: 1\nvendor_id\t: Other\n")
CONFIG = "CONFIG_X86_KEYLOCKER=y\n# CONFIG_CRYPTO_AES_KL is not set\n"
CRYPTO = ("name         : xts(aes)\ndriver       : xts-aes-aeskl\nmodule       : aeskl_intel\n\n"
          "name         : xts(aes)\ndriver       : xts-aes-aesni\nmodule       : aesni_intel\n")
MODULES = "kvm_intel 376832 0 - Live 0x0000000000000000\nkvm 1138688 1 kvm_intel, Live 0x0000000000000000\n"
DMESG = "[0.1] x86/keylocker: Enabled\n[9.0] klhelper: loading out-of-tree module taints kernel.\n"
QEMU_HELP = "Available CPUs:\nx86 max\n\nRecognized CPUID flags:\n  aes keylocker pcid\n"
RELEASE = "6.1.0-lab"


def lab_sections(**changes: Section) -> dict[str, Section]:
    sections: dict[str, Section] = {
        "machine": ("x86_64\n", "", 0), "hostname": ("tgl1\n", "", 0), "release": (RELEASE + "\n", "", 0),
        "cpuinfo": (CPUINFO, "", 0), "proc_modules": (MODULES, "", 0), "crypto": (CRYPTO, "", 0),
        "modules_disabled": ("0\n", "", 0), "gds": ("Mitigation: Microcode (locked)\n", "", 0),
        "rfds": ("", "cat: /sys/devices/system/cpu/vulnerabilities/reg_file_data_sampling: No such file or "
                     "directory", 1),
        "modules_disabled_exists": ("", "", 0), "klhelper": ("", "", 1), "dev_kvm": ("", "", 0),
        "sys_module": ("kvm\nkvm_intel\n", "", 0), "headers": ("", "", 0), "config_boot": (CONFIG, "", 0),
        "dmesg": (DMESG, "", 0), "qemu_binary": ("/usr/bin/qemu-system-x86_64", "", 0),
        "qemu_version": ("QEMU emulator version 8.2.0 (kl)\nCopyright (c) 2003-2023\n", "", 0),
        "qemu_help": (QEMU_HELP, "", 0),
    }
    sections.update(changes)
    return {k: v for k, v in sections.items() if v[2] >= 0}  # exit status -1: the section is not printed


def lab_probe(argv: list[str], stdin: bytes) -> RemoteResult:
    assert stdin == cbuild.build("klprobe").read_bytes(), "the run's probe is what travels to the host"
    return result(argv, 0, probe_output())


def test_a_lab_hosts_files_become_the_facts_the_local_readers_make_of_the_same_text(tmp_path: Path) -> None:
    link = CannedLink(lab_sections(), lab_probe)
    host = remote_facts.read_remote_host(link, NAMES, qemu_binary="/usr/bin/qemu-system-x86_64")
    facts = host.facts
    assert host.hostname == "tgl1" and host.where == LAB.where
    assert len(link.calls) == 2, "one facts script and one probe command"

    # the same text on local files, read by check.py's local readers: the same facts
    (tmp_path / "cpuinfo").write_text(CPUINFO)
    (tmp_path / "boot").mkdir()
    (tmp_path / "boot" / f"config-{RELEASE}").write_text(CONFIG)
    (tmp_path / "crypto").write_text(CRYPTO)
    proc_dir = tmp_path / "proc"
    (proc_dir / "sys" / "kernel").mkdir(parents=True)
    (proc_dir / "modules").write_text(MODULES)
    (proc_dir / "sys" / "kernel" / "modules_disabled").write_text("0\n")
    (tmp_path / "lib" / RELEASE / "build").mkdir(parents=True)
    (tmp_path / "lib" / RELEASE / "build" / "Makefile").write_text("")
    (tmp_path / "vuln").mkdir()
    (tmp_path / "vuln" / "gather_data_sampling").write_text("Mitigation: Microcode (locked)\n")

    def dmesg(argv: list[str]) -> CommandResult:
        return CommandResult(tuple(argv), 0, DMESG, "", 0.01)

    local_config = hostcheck.kernel_config(RELEASE, boot=tmp_path / "boot", proc_config=tmp_path / "none.gz")
    assert facts["kernel"]["config"] == {**local_config, "source": f"/boot/config-{RELEASE}"}
    local_modules = hostcheck.module_support(RELEASE, proc_dir=proc_dir, lib_modules=tmp_path / "lib")
    assert facts["kernel"]["modules"] == {
        **local_modules, "headers": f"/lib/modules/{RELEASE}/build", "headers_path": f"/lib/modules/{RELEASE}/build"}
    assert facts["kernel"]["release"] == RELEASE
    assert facts["cpu"] == factparse.cpu_summary(hostfacts.cpu_model(tmp_path / "cpuinfo"))
    assert facts["crypto"] == hostcheck.crypto_kl_drivers(tmp_path / "crypto")
    assert facts["kernel_log"] == hostcheck.kernel_log(dmesg)
    assert facts["mitigations"] == hostcheck.mitigations(tmp_path / "vuln")
    dev_kvm = tmp_path / "kvm"
    dev_kvm.write_text("")
    local_kvm = hostcheck.kvm_facts({"kvm", "kvm_intel"}, dev_kvm=dev_kvm)
    assert {k: v for k, v in facts["kvm"].items() if k not in ("reason", "supported_cpuid")} == \
        {k: v for k, v in local_kvm.items() if k not in ("reason", "supported_cpuid")}
    assert facts["kvm"]["reason"] == local_kvm["reason"].replace(str(dev_kvm), "/dev/kvm")
    assert facts["kvm"]["supported_cpuid"]["ok"] is False
    assert "KVM_GET_SUPPORTED_CPUID is an ioctl on /dev/kvm: not read over SSH from root@lab1:22" \
        in facts["kvm"]["supported_cpuid"]["error"]
    flags = hostcheck.parse_cpu_flags(QEMU_HELP)
    assert facts["qemu"] == {"ok": True, "binary": "/usr/bin/qemu-system-x86_64", "version": "8.2.0 (kl)",
                             "cpu_flags": len(flags), "kl_names": sorted(set(NAMES) & flags), "looked_for": list(NAMES)}
    assert facts["klhelper_loaded"] is False
    assert facts["cpuid"] == factparse.cpuid_from_probe(probe_output(), "klprobe cpuid")
    assert facts["cpuid_faulting"]["supported"] is facts["cpu"]["flags_cpuid_fault"] is True
    assert "not probed on root@lab1:22" in facts["cpuid_faulting"]["how"]
    assert facts["vmm"]["qemu-kl"]["built"] is False


def test_the_facts_script_asks_for_the_libvirt_emulator_and_bounds_its_slow_commands() -> None:
    script = remote_facts.facts_script("@@m", "/opt/qemu kl/bin/qemu-system-x86_64", 30)
    assert "Q='/opt/qemu kl/bin/qemu-system-x86_64'" in script
    assert 's qemu_help b "$Q" -cpu help' in script and "s config_proc b zcat /proc/config.gz" in script
    assert "timeout \"$T\"" in script and "T=30" in script
    assert "Q=$(command -v qemu-system-x86_64)" in remote_facts.facts_script("@@m", None, 30)


# -- this machine through a plain shell: the remote reader agrees with the local one -----------------------------

def test_this_machine_read_as_a_far_host_has_the_local_facts(tmp_path: Path) -> None:
    """Same files, two readers: everything equal but what a shell cannot ask (the KVM ioctl, arch_prctl) and
    qemu-kl (klharness's own build here, never on a lab host); the probe's directory is gone afterwards."""
    (tmp_path / "tmp").mkdir()
    host = remote_facts.read_remote_host(ShellLink(tmp_path / "tmp"), NAMES, qemu_binary=None)
    local = hostcheck.local_facts(NAMES)
    assert set(host.facts) == set(local)
    for key in set(local) - {"kvm", "vmm", "cpuid_faulting"}:
        assert host.facts[key] == local[key], key
    assert {k: v for k, v in host.facts["kvm"].items() if k != "supported_cpuid"} == \
        {k: v for k, v in local["kvm"].items() if k != "supported_cpuid"}
    assert host.facts["cpuid_faulting"]["supported"] == local["cpuid_faulting"]["supported"]
    assert host.facts["cpuid_faulting"]["cpuinfo_flag"] == local["cpuid_faulting"]["cpuinfo_flag"]
    assert host.hostname == os.uname().nodename
    assert list((tmp_path / "tmp").iterdir()) == [], "the probe's temporary directory was left on the host"


# -- failures: a reason in the fact, never an exception -------------------------------------------------------------

def test_a_dropped_link_gives_every_fact_its_reason() -> None:
    link = DroppedLink()
    facts = remote_facts.remote_facts(link, NAMES, qemu_binary=None)
    assert link.calls == 1, "no second login to a host that did not answer the first"
    assert set(facts) == set(remote_facts.facts_from_read(remote_facts.HostRead("x", {}), NAMES, {}))
    lost = "connection lost while running"
    assert facts["cpuid"]["ok"] is False and lost in facts["cpuid"]["error"]
    assert lost in facts["cpu"]["reason"] and facts["cpu"]["vendor"] is None
    assert lost in facts["kernel"]["config"]["reason"] and set(facts["kernel"]["config"]["options"].values()) == \
        {"unknown"}
    assert facts["kernel_log"]["readable"] is False and lost in facts["kernel_log"]["reason"]
    assert facts["crypto"]["readable"] is False and lost in facts["crypto"]["reason"]
    assert facts["kvm"]["usable"] is None and lost in facts["kvm"]["reason"]
    assert facts["qemu"]["ok"] is False and lost in facts["qemu"]["error"]
    assert lost in facts["kernel"]["modules"]["reason"] and facts["kernel"]["release"] is None
    assert facts["klhelper_loaded"] is None and facts["mitigations"] == {"gds": None, "rfds": None}


def test_each_failing_command_says_why_in_its_own_fact() -> None:
    sections = lab_sections(
        dmesg=("", "dmesg: read kernel buffer failed: Operation not permitted", 1),
        crypto=("", "cat: /proc/crypto: No such file or directory", 1),
        config_boot=("", "", -1), config_proc=("", "gzip: /proc/config.gz: No such file or directory", 1),
        qemu_binary=("", "", 0), qemu_version=("", "", -1), qemu_help=("", "", -1),
        cpuinfo=("", "cat: /proc/cpuinfo: Permission denied", 1))
    facts = remote_facts.remote_facts(CannedLink(sections), NAMES, qemu_binary=None)
    assert facts["kernel_log"] == hostcheck.kernel_log(
        lambda argv: CommandResult(tuple(argv), 1, "", sections["dmesg"][1], 0.01))
    assert facts["crypto"]["reason"] == "/proc/crypto: cat: /proc/crypto: No such file or directory"
    assert facts["kernel"]["config"]["reason"].startswith(f"no kernel config found (tried /boot/config-{RELEASE}, "
                                                          "/proc/config.gz;")
    assert facts["qemu"] == {"ok": False, "error": "qemu-system-x86_64 not found on root@lab1:22 "
                                                   "(install qemu-system-x86)"}
    assert facts["cpu"]["reason"] == "/proc/cpuinfo not read: cat: /proc/cpuinfo: Permission denied"
    assert "noexec" in facts["cpuid"]["error"] and "Permission denied" in facts["cpuid"]["error"]
    assert facts["kvm"]["usable"] is True  # what did answer is still used


def test_a_qemu_that_does_not_answer_and_a_missing_dmesg() -> None:
    sections = lab_sections(qemu_help=("", "qemu-system-x86_64: -cpu help: could not load PC BIOS", 1),
                            dmesg=("", "sh: 1: dmesg: not found", 127))
    facts = remote_facts.remote_facts(CannedLink(sections), NAMES, qemu_binary="/usr/bin/qemu-system-x86_64")
    assert facts["qemu"]["ok"] is False and facts["qemu"]["error"] == (
        "/usr/bin/qemu-system-x86_64 did not answer on root@lab1:22: qemu-system-x86_64: -cpu help: could not load "
        "PC BIOS")
    assert facts["kernel_log"]["reason"] == "dmesg is not installed on root@lab1:22 (package util-linux)"


def test_a_script_that_timed_out_keeps_what_it_printed_and_says_so() -> None:
    class Slow(CannedLink):
        def run(self, argv: list[str] | str, *, timeout: float | None = None, check: bool = False,
                stdin: bytes | None = None) -> RemoteResult:
            if argv == ["sh", "-s"]:
                assert stdin is not None
                partial = render(script_marker(stdin), {"release": (RELEASE + "\n", "", 0)})
                return result(argv, -1, partial, timed_out=True)
            return super().run(argv, timeout=timeout, check=check, stdin=stdin)

    facts = remote_facts.remote_facts(Slow({}), NAMES, qemu_binary=None)
    assert facts["kernel"]["release"] == RELEASE
    why = facts["crypto"]["reason"]
    assert "did not finish within" in why and "KLHARNESS_TIMEOUT_TOOL" in why


@pytest.mark.parametrize(("returncode", "stderr", "expect"), [
    (90, "mktemp: failed to create directory via template", "cannot make a temporary directory there: mktemp"),
    (91, "cat: write error: No space left on device", "cannot write the probe into its temporary directory"),
    (124, "", "did not finish within the tool timeout"),
    (2, "klprobe: unknown backend", "klprobe cpuid exited 2: klprobe: unknown backend"),
    (0, "", "klprobe cpuid on root@lab1:22: empty"),
])
def test_each_probe_failure_is_the_cpuid_facts_error(returncode: int, stderr: str, expect: str) -> None:
    link = CannedLink(lab_sections(), lambda argv, _stdin: result(argv, returncode, b"", stderr))
    cpuid = remote_facts.remote_facts(link, NAMES, qemu_binary=None)["cpuid"]
    assert cpuid["ok"] is False and expect in cpuid["error"]


def test_no_probe_for_another_architecture_or_without_a_build() -> None:
    link = CannedLink(lab_sections(machine=("aarch64\n", "", 0)))
    assert remote_facts.remote_facts(link, NAMES, qemu_binary=None)["cpuid"] == {
        "ok": False, "error": "root@lab1:22 is a aarch64 host: klprobe runs on x86-64 only"}
    assert len(link.calls) == 1

    def no_compiler() -> Path:
        raise BuildError("cc not found (install gcc)")
    cpuid = remote_facts.remote_facts(CannedLink(lab_sections()), NAMES, qemu_binary=None, klprobe=no_compiler)["cpuid"]
    assert cpuid == {"ok": False, "error": "the probe for root@lab1:22 could not be built or read here: cc not found "
                                           "(install gcc)"}


def test_gzip_config_text_reads_the_same_both_ways(tmp_path: Path) -> None:
    """/proc/config.gz: the local reader decompresses it, the far host's zcat does; the text gives one fact."""
    text = "CONFIG_X86_KL=m\n"
    (tmp_path / "config.gz").write_bytes(gzip.compress(text.encode()))
    local = hostcheck.kernel_config("x", boot=tmp_path, proc_config=tmp_path / "config.gz")
    sections = lab_sections(config_boot=("", "", -1), config_proc=(text, "", 0))
    remote = remote_facts.remote_facts(CannedLink(sections, lab_probe), NAMES, qemu_binary=None)["kernel"]["config"]
    assert remote == {**local, "source": "/proc/config.gz"}


# -- the host check and the command ---------------------------------------------------------------------------------

def test_host_check_with_a_link_reads_the_far_hosts_facts_and_says_from_where() -> None:
    link: Any = CannedLink(lab_sections(), lab_probe)
    report = hostcheck.host_check(None, uri=LAB.uri, link=link, libvirt_error="libvirt down")
    assert report["scope"] == "remote" and report["hostname"] == "tgl1"
    assert report["facts_from"] == {"via": "ssh", "where": LAB.where}
    assert f"read over SSH from {LAB.where}" in report["remote_note"]
    assert report["kernel"]["release"] == RELEASE and report["cpuid"]["ok"] is True
    assert set(report["verdicts"]) == {"native", "baremetal", "helper", "emulated", "vmm"}
    assert f"read over SSH from {LAB.where}" in render_text(report)
    hostcheck.to_json(report)

    without = hostcheck.host_check(None, uri=LAB.uri, libvirt_error="libvirt down")
    assert "only libvirt-visible facts were read" in without["remote_note"] and "cpuid" not in without
    assert without["hostname"] == "lab1"


def test_the_command_links_only_to_ssh_uris_of_other_hosts() -> None:
    link = hostcheck_command.host_link("qemu+ssh://root@lab1:2222/system?keyfile=/k&known_hosts=/kh")
    assert link is not None and link.target.where == "root@lab1:2222" and link.target.known_hosts == Path("/kh")
    link.close()  # never opened: nothing to close
    for uri in (None, "qemu:///system", "qemu+tls://lab1/system", "qemu+tcp://lab1/system"):
        assert hostcheck_command.host_link(uri) is None, uri


def test_run_facts_passes_the_link_on(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[Any] = []

    def host_check(conn: Any, **kwargs: Any) -> dict[str, Any]:
        seen.append(kwargs.get("link"))
        return {}
    monkeypatch.setattr(hostcheck, "host_check", host_check)
    link = CannedLink({})
    hostcheck.run_facts(None, link=link)  # type: ignore[arg-type]
    hostcheck.run_facts(None)
    assert seen == [link, None]


# -- a real SSH link to the simulated remote host ---------------------------------------------------------------------

RUN_ID = "20261208-000000-rf17"


@pytest.fixture(scope="module")
def sim_link() -> Iterator[tuple[Any, Any]]:
    from harness.host.link import HostLink
    from harness.timeouts import Timeouts
    from harness.virt.simhost import start_sim_host, stop_run_sim_hosts

    if os.geteuid() != 0:
        pytest.skip("the simulated host needs root (namespaces, tmpfs mounts, daemons)")
    try:
        sim = start_sim_host(RUN_ID, "facts", timeouts=Timeouts())
        target = SshTarget.from_uri(sim.uri)
        assert target is not None
        link = HostLink(target, Timeouts())
        try:
            yield sim, link
        finally:
            link.close()
    finally:
        assert stop_run_sim_hosts(RUN_ID) == []


@pytest.mark.integration
def test_the_simulated_hosts_facts_are_read_on_it_over_ssh(sim_link: tuple[Any, Any]) -> None:
    from harness.virt.connection import connect

    sim, link = sim_link
    conn = connect(sim.uri)
    try:
        report = hostcheck.host_check(conn, link=link)
    finally:
        conn.close()
    assert report["scope"] == "remote"
    assert report["hostname"] == sim.name != os.uname().nodename
    assert report["kernel"]["release"] == link.run(["uname", "-r"], check=True).text().strip()
    assert report["cpu"]["vendor"]
    cpuid = report["cpuid"]
    assert cpuid["ok"] or cpuid["error"]
    if cpuid["ok"]:  # the simulated host shares this machine's CPU
        assert cpuid == hostcheck.cpuid_facts()
    assert report["facts_from"]["where"] == link.target.where
    assert report["libvirt"]["ok"] and report["libvirt"]["hostname"] == sim.name
    left = link.run("ls -d ${TMPDIR:-/tmp}/klharness-probe.* 2>/dev/null | wc -l", check=True).text().strip()
    assert left == "0", "the probe's temporary directory was left on the host"
    assert "read over SSH from" in render_text(report)


def test_a_remote_hosts_run_facts_name_its_kernel_not_this_machines(monkeypatch: pytest.MonkeyPatch) -> None:
    report = {"facts_from": {"via": "ssh", "where": "root@lab:22"}, "kernel": {"release": "6.99.0-lab"},
              "cpu": {"vendor": "GenuineIntel", "model": "11th Gen Intel(R) Core(TM) i7-1185G7", "microcode": "0xa4"}}
    monkeypatch.setattr(hostcheck, "host_check", lambda conn, link=None: report)
    facts = hostcheck.run_facts(None, link=object())  # type: ignore[arg-type]
    assert facts["kernel"] == "6.99.0-lab" and facts["cpu"]["vendor_id"] == "GenuineIntel"
    assert facts["harness_machine"]["kernel"] == platform.release()  # where klharness ran, kept apart
