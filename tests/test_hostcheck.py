"""klharness host-check: the facts it reads, the verdict per backend with every reason — on this
machine (checked against an independent read of /proc, /sys and CPUID, whatever it is) and on
made-up lab hosts."""

from __future__ import annotations

import copy
import gzip
import json
import struct
import subprocess
from pathlib import Path
from typing import Any

import pytest

from harness import cbuild
from harness.cli import main
from harness.host import check as hostcheck
from harness.host.verdict import host_uses_kl, render_text, verdicts
from harness.kl.cpuid import Regs
from harness.proc import CommandResult

NAMES = hostcheck.feature_names("keylocker")


# -- made-up hosts -----------------------------------------------------------------------------------------

def tigerlake(**changes: Any) -> dict[str, Any]:
    """A Tiger Lake lab host with the whole patched stack, kernel not using KL, helper not loaded."""
    report: dict[str, Any] = {
        "schema": hostcheck.SCHEMA, "scope": "local", "uri": "qemu:///system", "feature_name": "keylocker",
        "hostname": "tgl1",
        "cpu": {"vendor": "GenuineIntel", "model": "11th Gen Intel(R) Core(TM) i7-1185G7 @ 3.00GHz",
                "microcode": "0xa4", "flags_cpuid_fault": True},
        "cpuid": {"ok": True, "vendor": "GenuineIntel", "hypervisor": False, "max_leaf": 0x1b, "aesni": True,
                  "leaf7_ecx": 1 << 23, "leaf19": {"eax": 7, "ebx": 0x14, "ecx": 3, "edx": 0}, "kl": True,
                  "leaf19_present": True, "aeskle": False, "wide": True, "backup": True,
                  "restrictions": ["cpl0", "nodecrypt", "noencrypt"], "nobackup": True, "random_keysource": True,
                  "reserved_bits_set": False, "usable": False},
        "kernel": {"release": "6.1.0-lab", "config": {"source": "/boot/config-6.1.0-lab", "reason": None,
                                                     "options": {o: "absent" for o in hostcheck.KCONFIG_OPTIONS}},
                   "modules": {"supported": True, "disabled": False, "headers": "/lib/modules/6.1.0-lab/build",
                               "headers_path": "/lib/modules/6.1.0-lab/build"}},
        "kernel_log": {"readable": True, "reason": None, "lines": []},
        "crypto": {"readable": True, "reason": None, "drivers": []},
        "klhelper_loaded": False,
        "mitigations": {"gds": "Mitigation: Microcode (locked)", "rfds": "Not affected"},
        "kvm": {"dev_kvm": True, "modules": ["kvm_intel"], "usable": True,
                "reason": "hardware KVM module kvm_intel loaded and /dev/kvm present",
                "supported_cpuid": {"ok": True, "kl": True, "leaf7_ecx": 1 << 23,
                                    "leaf19": {"eax": 7, "ebx": 0x14, "ecx": 0, "edx": 0}}},
        "qemu": {"ok": True, "version": "8.2.0 (kl patches)", "cpu_flags": 330, "kl_names": ["keylocker"],
                 "looked_for": list(NAMES)},
        "libvirt": {"ok": True, "libvirt": "10.0.0", "domain_types": {"kvm": {"offered": True},
                                                                     "qemu": {"offered": True}},
                    "cpu_map": {"kl_names": ["keylocker"], "looked_for": list(NAMES)}},
        "cpuid_faulting": {"supported": True, "how": "arch_prctl(ARCH_SET_CPUID, 1) -> 0", "cpuinfo_flag": True},
    }
    for path, value in changes.items():
        node = report
        *parents, leaf = path.split("__")
        for p in parents:
            node = node[p]
        node[leaf] = value
    return report


def judge(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return verdicts(copy.deepcopy(report))


def test_patched_tigerlake_can_run_native_cells_and_the_helper_but_not_bare_metal_yet() -> None:
    v = judge(tigerlake())
    assert v["native"] == {**v["native"], "possible": True, "reasons": []}
    assert v["helper"]["possible"] is True and v["helper"]["reasons"] == []
    assert v["emulated"]["possible"] is True and v["emulated"]["notes"] == []
    assert v["baremetal"]["possible"] is False
    [why] = v["baremetal"]["reasons"]
    assert why.startswith("AESKLE=0: the running kernel did not set CR4.KL")
    assert "CONFIG_X86_KEYLOCKER=absent" in why and "load klhelper" in why


def test_with_klhelper_loaded_bare_metal_becomes_possible_and_native_stays_possible() -> None:
    v = judge(tigerlake(cpuid__aeskle=True, cpuid__usable=True, klhelper_loaded=True))
    assert v["baremetal"]["possible"] is True
    assert v["baremetal"]["notes"] == ["AESKLE=1 comes from klhelper (loaded), not from the kernel"]
    assert v["native"]["possible"] is True  # the helper's CR4.KL is not "the host kernel uses KL"


def test_a_host_kernel_using_kl_blocks_native_cells_and_the_helper_with_the_evidence() -> None:
    host = tigerlake(cpuid__aeskle=True, crypto__drivers=["xts-aes-aeskl"],
                     kernel__config__options={"CONFIG_X86_KEYLOCKER": "y", "CONFIG_X86_KL": "absent",
                                              "CONFIG_CRYPTO_AES_KL": "m"})
    assert host_uses_kl(host) == ["xts-aes-aeskl registered in /proc/crypto",
                                  "AESKLE=1, so the kernel set CR4.KL (klhelper is not loaded)"]
    v = judge(host)
    [native] = v["native"]["reasons"]
    assert native.startswith("the host kernel uses Key Locker (xts-aes-aeskl registered in /proc/crypto; AESKLE=1")
    assert "offers KL to guests only when the host does not use it" in native
    [helper] = v["helper"]["reasons"]
    assert "klhelper refuses unless force=1" in helper
    assert v["baremetal"]["possible"] is True


def test_stock_stack_on_kl_hardware_lists_kvm_qemu_and_libvirt_each() -> None:
    host = tigerlake(kvm__supported_cpuid={"ok": True, "kl": False, "leaf7_ecx": 0,
                                           "leaf19": {"eax": 0, "ebx": 0, "ecx": 0, "edx": 0}},
                     qemu__kl_names=[], libvirt__cpu_map={"kl_names": [], "looked_for": list(NAMES)})
    reasons = judge(host)["native"]["reasons"]
    assert len(reasons) == 3, reasons
    assert reasons[0].startswith("KVM_GET_SUPPORTED_CPUID reports CPUID.(7,0):ECX[23]=0: this KVM cannot give guests")
    assert reasons[1].startswith("QEMU (8.2.0 (kl patches)) has no CPU feature for Key Locker")
    assert reasons[2].startswith("libvirt's cpu_map has no Key Locker feature (none of keylocker, kl,")
    assert "name='keylocker'" in reasons[2]


def test_a_stack_that_names_kl_differently_asks_for_run_kl_feature_name() -> None:
    host = tigerlake(qemu__kl_names=["kl"], libvirt__cpu_map={"kl_names": ["kl"], "looked_for": list(NAMES)})
    reasons = judge(host)["native"]["reasons"]
    assert reasons == [
        "QEMU knows Key Locker as kl, not as the configured 'keylocker' (set run.kl_feature_name)",
        "libvirt's cpu_map knows Key Locker as kl, not as the configured 'keylocker' (set run.kl_feature_name)"]
    assert judge({**host, "feature_name": "kl"})["native"]["possible"] is True


def test_unlocked_gds_explains_why_a_kl_kernel_left_cr4_kl_clear() -> None:
    host = tigerlake(mitigations={"gds": "Mitigation: Microcode", "rfds": "Not affected"},
                     kernel__config__options={"CONFIG_X86_KEYLOCKER": "y"})
    v = judge(host)
    assert v["baremetal"]["reasons"][1] == ("GDS mitigation is 'Mitigation: Microcode', not locked: the KL kernel "
                                            "series refuses to enable KL")
    assert any("not locked" in n for n in v["helper"]["notes"])
    assert v["helper"]["possible"] is True


def test_a_nested_host_and_a_software_kvm_are_each_a_reason() -> None:
    host = tigerlake(cpuid__hypervisor=True, kvm__modules=["kvm_pvm"], kvm__usable=False,
                     kvm__reason="/dev/kvm is backed by kvm_pvm")
    reasons = judge(host)["native"]["reasons"]
    assert reasons[0].startswith("this host is itself a virtual machine (CPUID.1:ECX[31]=1)")
    assert reasons[1] == "KVM is not usable for real: /dev/kvm is backed by kvm_pvm"
    assert len(reasons) == 2


def test_missing_headers_or_modules_block_the_helper() -> None:
    no_headers = tigerlake(kernel__modules={"supported": True, "disabled": False, "headers": None,
                                            "headers_path": "/lib/modules/6.1.0-lab/build"})
    assert judge(no_headers)["helper"]["reasons"] == [
        "no kernel headers for 6.1.0-lab (/lib/modules/6.1.0-lab/build missing): install linux-headers-6.1.0-lab"]
    disabled = tigerlake(kernel__modules={"supported": True, "disabled": True, "headers": "x"})
    assert judge(disabled)["helper"]["reasons"] == ["module loading is disabled (kernel.modules_disabled=1)"]


def test_remote_reports_judge_only_what_libvirt_shows() -> None:
    remote = {"schema": hostcheck.SCHEMA, "scope": "remote", "uri": "qemu+ssh://tgl1/system",
              "feature_name": "keylocker", "remote_note": "remote URI qemu+ssh://tgl1/system: run it there",
              "libvirt": copy.deepcopy(tigerlake()["libvirt"])}
    v = judge(remote)
    assert v["native"]["possible"] is None and v["native"]["reasons"] == []
    assert v["baremetal"]["possible"] is None and v["helper"]["possible"] is None
    assert v["emulated"]["possible"] is True
    remote["libvirt"]["cpu_map"]["kl_names"] = []
    assert judge(remote)["native"]["possible"] is False
    remote["libvirt"]["domain_types"] = {"kvm": {"offered": False, "reason": "no kvm"}, "qemu": {"offered": False}}
    assert judge(remote)["emulated"]["reasons"] == ["libvirt offers neither KVM nor QEMU (TCG) x86_64 domains"]


def test_the_text_names_each_backend_with_each_reason() -> None:
    report = tigerlake(qemu__kl_names=[])
    report["verdicts"] = verdicts(report)
    text = render_text(report)
    assert "  native cells: impossible because\n    - QEMU (8.2.0 (kl patches)) has no CPU feature" in text
    assert "  ring-0 helper: possible  (klhelper loads here" in text
    assert "  CPUID        7.0:ECX=0x00800000 KL=1; leaf 0x19 EAX=0x7 EBX=0x14 ECX=0x3 EDX=0x0" in text
    assert "AESKLE=0 wide=1 backup=1 restrictions=cpl0,nodecrypt,noencrypt NoBackup=1 random=1" in text


# -- the readers, on injected files ----------------------------------------------------------------------------

def test_kernel_config_from_boot_then_proc_then_unknown_with_the_reason(tmp_path: Path) -> None:
    (tmp_path / "boot").mkdir()
    (tmp_path / "boot" / "config-6.1.0-x").write_text("CONFIG_X86_KEYLOCKER=y\n# CONFIG_CRYPTO_AES_KL is not set\n")
    got = hostcheck.kernel_config("6.1.0-x", boot=tmp_path / "boot", proc_config=tmp_path / "none.gz")
    assert got["options"] == {"CONFIG_X86_KEYLOCKER": "y", "CONFIG_X86_KL": "absent", "CONFIG_CRYPTO_AES_KL": "n"}
    (tmp_path / "config.gz").write_bytes(gzip.compress(b"CONFIG_X86_KL=y\n"))
    got = hostcheck.kernel_config("other", boot=tmp_path / "boot", proc_config=tmp_path / "config.gz")
    assert got["source"] == str(tmp_path / "config.gz") and got["options"]["CONFIG_X86_KL"] == "y"
    got = hostcheck.kernel_config("other", boot=tmp_path / "boot", proc_config=tmp_path / "none.gz")
    assert got["source"] is None and set(got["options"].values()) == {"unknown"}
    assert got["reason"].startswith(f"no kernel config found (tried {tmp_path}/boot/config-other, ")


def test_restricted_dmesg_is_reported_not_guessed() -> None:
    def restricted(argv: list[str]) -> CommandResult:
        return CommandResult(tuple(argv), 1, "", "dmesg: read kernel buffer failed: Operation not permitted\n", 0.01)
    got = hostcheck.kernel_log(restricted)
    assert got["readable"] is False
    assert got["reason"] == ("dmesg exited 1: dmesg: read kernel buffer failed: Operation not permitted "
                             "(kernel.dmesg_restrict=1? run as root)")

    def readable(argv: list[str]) -> CommandResult:
        return CommandResult(tuple(argv), 0, "[0.1] x86/keylocker: Enabled\n[0.2] eth0: up\n[3.0] aesni: AES-NI\n"
                                             "[9.0] klhelper: loading out-of-tree module taints kernel.\n", "", 0.01)
    assert hostcheck.kernel_log(readable) == {
        "readable": True, "reason": None,
        "lines": ["[0.1] x86/keylocker: Enabled", "[9.0] klhelper: loading out-of-tree module taints kernel."]}


def test_proc_crypto_aeskl_drivers(tmp_path: Path) -> None:
    text = ("name         : xts(aes)\ndriver       : xts-aes-aeskl\nmodule       : aeskl_intel\n\n"
            "name         : xts(aes)\ndriver       : xts-aes-aesni\nmodule       : aesni_intel\n")
    (tmp_path / "crypto").write_text(text)
    assert hostcheck.crypto_kl_drivers(tmp_path / "crypto")["drivers"] == ["xts-aes-aeskl"]
    assert hostcheck.crypto_kl_drivers(Path("/dev/null"))["drivers"] == []
    assert hostcheck.crypto_kl_drivers(Path("/nonexistent/crypto")) == {
        "readable": False, "reason": "/nonexistent/crypto: No such file or directory", "drivers": []}


def test_mitigations_and_module_support_from_files(tmp_path: Path) -> None:
    (tmp_path / "gather_data_sampling").write_text("Mitigation: Microcode (locked)\n")
    assert hostcheck.mitigations(tmp_path) == {"gds": "Mitigation: Microcode (locked)", "rfds": None}
    proc_dir = tmp_path / "proc"
    (proc_dir / "sys" / "kernel").mkdir(parents=True)
    (proc_dir / "sys" / "kernel" / "modules_disabled").write_text("1\n")
    got = hostcheck.module_support("6.1.0-x", proc_dir=proc_dir, lib_modules=tmp_path / "lib")
    assert got == {"supported": True, "disabled": True, "headers": None,
                   "headers_path": str(tmp_path / "lib" / "6.1.0-x" / "build")}


def test_kvm_cpuid2_buffer_and_qemu_flags_and_domcaps_parsing() -> None:
    entries = [(7, 0, 1, 0, 0, 1 << 23, 0), (0x19, 0, 0, 7, 0x14, 0, 0)]
    buf = struct.pack("<II", len(entries), 0) + b"".join(hostcheck.KVM_CPUID_ENTRY.pack(*e) for e in entries)
    assert hostcheck.parse_kvm_cpuid(buf) == {(7, 0): Regs(0, 0, 1 << 23, 0), (0x19, 0): Regs(7, 0x14, 0, 0)}
    assert hostcheck.parse_cpu_flags("Available CPUs:\nx86 max\n\nRecognized CPUID flags:\n  aes keylocker\n") \
        == {"aes", "keylocker"}
    assert hostcheck.parse_cpu_flags("x86 max\n") == set()
    xml = ("<domainCapabilities><path>/usr/bin/qemu-system-x86_64</path><cpu>"
           "<mode name='host-passthrough' supported='yes'/><mode name='maximum' supported='yes'/>"
           "<mode name='host-model' supported='yes'><model>Icelake-Client</model>"
           "<feature policy='require' name='keylocker'/><feature policy='require' name='aes'/></mode></cpu>"
           "</domainCapabilities>")
    assert hostcheck.parse_domcaps(xml, NAMES) == {
        "emulator": "/usr/bin/qemu-system-x86_64", "host_model": "Icelake-Client", "host_model_kl": ["keylocker"],
        "maximum": True, "host_passthrough": True}


# -- this machine ------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def here() -> dict[str, Any]:
    return hostcheck.host_check(None)


def test_the_local_report_is_json_and_consistent_with_its_facts(here: dict[str, Any]) -> None:
    json.loads(hostcheck.to_json(here))
    assert here["scope"] == "local" and here["schema_version"] == 1
    native = here["verdicts"]["native"]
    if not here["cpuid"]["kl"]:
        assert native["possible"] is False
        assert any(r.startswith("the host CPU does not enumerate Key Locker: CPUID.(7,0):ECX[23]=0")
                   for r in native["reasons"])
    if not here["kvm"]["usable"]:
        assert f"KVM is not usable for real: {here['kvm']['reason']}" in native["reasons"]
    assert here["verdicts"]["emulated"]["notes"][0] == "libvirt not checked (pass a URI or start the daemon: " \
                                                       "scripts/start-libvirt)"


def independent_cpuid(tmp_path: Path) -> dict[str, int]:
    """CPUID 1.ECX, 7.0.ECX and the max leaf, read by a 10-line C program (not the probe under test)."""
    src = tmp_path / "cpuid.c"
    src.write_text('#include <cpuid.h>\n#include <stdio.h>\nint main(void){unsigned a,b,c,d,m;'
                   'm=__get_cpuid_max(0,0);__cpuid(1,a,b,c,d);printf("%u %u ",m,c);'
                   '__cpuid_count(7,0,a,b,c,d);printf("%u\\n",c);return 0;}\n')
    exe = tmp_path / "cpuid"
    subprocess.run([cbuild.compiler(), "-O2", "-o", str(exe), str(src)], check=True, timeout=60)
    max_leaf, ecx1, ecx7 = map(int, subprocess.run([str(exe)], capture_output=True, text=True, check=True,
                                                   timeout=30).stdout.split())
    return {"max_leaf": max_leaf, "hypervisor": ecx1 >> 31 & 1, "kl": ecx7 >> 23 & 1}


def test_this_machines_facts_agree_with_an_independent_read(here: dict[str, Any], tmp_path: Path) -> None:
    """Whatever this machine is, the report says what /proc, /sys and CPUID say, and judges by it."""
    mods = {p.name for p in Path("/sys/module").iterdir()}
    hardware = sorted({"kvm_intel", "kvm_amd"} & mods)
    kvm = here["kvm"]
    assert kvm["dev_kvm"] is Path("/dev/kvm").exists()
    assert kvm["usable"] is bool(hardware and Path("/dev/kvm").exists())
    assert set(kvm["modules"]) == {m for m in ("kvm_intel", "kvm_amd", "kvm_pvm") if m in mods}
    native = here["verdicts"]["native"]["reasons"]
    if "kvm_pvm" in mods and not hardware:
        assert any(r.startswith("KVM is not usable for real: /dev/kvm is backed by kvm_pvm")
                   and "not by kvm_intel or kvm_amd" in r for r in native)
        if kvm["supported_cpuid"]["ok"] and not kvm["supported_cpuid"]["kl"]:
            assert any(r.startswith("KVM_GET_SUPPORTED_CPUID reports CPUID.(7,0):ECX[23]=0 (answered by kvm_pvm, "
                                    "software nesting)") for r in native)

    cpu = independent_cpuid(tmp_path)
    assert here["cpuid"]["max_leaf"] == cpu["max_leaf"]
    assert here["cpuid"]["kl"] is bool(cpu["kl"]) and here["cpuid"]["hypervisor"] is bool(cpu["hypervisor"])
    assert any(r.startswith("the host CPU does not enumerate Key Locker") for r in native) is not bool(cpu["kl"])

    # CPUID faulting: the kernel sets the cpuinfo flag exactly when ARCH_SET_CPUID works (arch/x86/kernel/process.c).
    flags = next(ln.split(":", 1)[1].split() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                 if ln.startswith("flags"))
    faulting = "cpuid_fault" in flags
    assert here["cpuid_faulting"] == {"cpuinfo_flag": faulting, "supported": faulting,
                                      "how": "arch_prctl(ARCH_SET_CPUID, 1) -> " + ("0" if faulting else "ENODEV")}
    emulated = here["verdicts"]["emulated"]
    assert emulated["possible"] is True
    assert any(n.startswith("no CPUID faulting (arch_prctl(ARCH_SET_CPUID, 1) -> ENODEV)")
               for n in emulated["notes"]) is not faulting
    if not hardware:
        assert any(n.startswith("guests run under TCG: KVM is not usable for real") for n in emulated["notes"])
    if not cpu["kl"]:
        assert here["verdicts"]["baremetal"]["possible"] is False
        assert here["verdicts"]["helper"]["possible"] is False
    q = here["vmm"]["qemu-kl"]
    try:
        from harness.vmm import qemu_kl

        built = qemu_kl.installed()
    except Exception:
        built = None
    assert q["built"] is (built is not None)
    if built is not None:
        assert q["binary"] == str(built.binary) and "keylocker" in q["kl_names"]


def test_cli_json_and_require(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["host-check", "none", "--json", "--require", "emulated"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert set(report["verdicts"]) == {"native", "baremetal", "helper", "emulated", "vmm"}
    expected = 0 if report["verdicts"]["native"]["possible"] else 1
    assert main(["host-check", "none", "--require", "native"]) == expected
    out = capsys.readouterr().out
    assert "Verdicts\n  native cells: " in out and "  emulated cells: possible" in out


@pytest.mark.integration
def test_with_libvirt_the_cpu_map_and_domain_types_are_read() -> None:
    from harness.virt.connection import connect

    conn = connect("qemu:///system")
    try:
        report = hostcheck.host_check(conn)
    finally:
        conn.close()
    lv = report["libvirt"]
    assert lv["ok"] and lv["domain_types"]["qemu"]["offered"] is True
    assert lv["cpu_map"]["looked_for"] == list(NAMES)
    if not lv["cpu_map"]["kl_names"]:
        assert any(r.startswith("libvirt's cpu_map has no Key Locker feature")
                   for r in report["verdicts"]["native"]["reasons"])
    assert lv["cpu_map"]["errors"] == {}
    assert lv["caps_cache"]["stable"] is True, lv["caps_cache"]["summary"]  # scripts/start-libvirt made it so
    assert "  caps cache   stable: domcapabilities " in render_text(report)
    assert report["verdicts"]["emulated"]["possible"] is True


def test_without_libvirt_a_perfect_host_is_unknown_not_possible() -> None:
    host = tigerlake(uri=None, libvirt={"ok": False, "error": "libvirt not checked (no connection)"})
    v = judge(host)
    assert v["native"]["possible"] is None and v["native"]["reasons"] == []
    assert v["native"]["notes"] == ["libvirt not checked (pass a URI or start the daemon: scripts/start-libvirt)"]
    assert v["emulated"]["possible"] is True
    down = tigerlake(libvirt={"ok": False, "error": "cannot connect to libvirt at qemu:///system: down"})
    assert judge(down)["native"]["reasons"] == ["libvirt: cannot connect to libvirt at qemu:///system: down"]
    assert judge(down)["emulated"]["reasons"] == ["libvirt: cannot connect to libvirt at qemu:///system: down"]


def test_the_vmm_verdict_needs_a_built_qemu_kl_that_names_keylocker() -> None:
    built = {"built": True, "binary": "/c/vmm/qemu-kl-x/bin/qemu-system-x86_64", "kl_names": ["keylocker"],
             "source_version": "1:7.2+dfsg-7+deb12u18", "source_note": "1:7.2+dfsg-7+deb12u18 (the version ...)"}
    assert judge(tigerlake(vmm={"qemu-kl": built}))["vmm"] == {**judge(tigerlake(vmm={"qemu-kl": built}))["vmm"],
                                                               "possible": True, "reasons": [], "notes": []}
    [why] = judge(tigerlake(vmm={"qemu-kl": {"built": False, "reason": "run klharness vmm build qemu-kl"}}))["vmm"][
        "reasons"]
    assert why == "qemu-kl is not built: run klharness vmm build qemu-kl"
    [why] = judge(tigerlake(vmm={"qemu-kl": {**built, "kl_names": []}}))["vmm"]["reasons"]
    assert why.startswith("qemu-kl at /c/vmm/qemu-kl-x/bin/qemu-system-x86_64 lists no 'keylocker' CPU property")
    moved = {**built, "source_note": "1:7.2+dfsg-7+deb12u19: the registry no longer serves 1:7.2+dfsg-7+deb12u18"}
    assert judge(tigerlake(vmm={"qemu-kl": moved}))["vmm"]["notes"][0].startswith(
        "qemu-kl was built on another Debian revision")
