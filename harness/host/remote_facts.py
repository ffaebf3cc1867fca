"""Host facts of a remote libvirt host, read on that host over its SSH link.

Why: for a lab host reached as ``qemu+ssh://root@tgl1/system`` the facts that decide whether native cells can run
— its CPUID, kernel config, KL crypto drivers, mitigations, KVM modules, QEMU's CPU flags — are that host's, and
libvirt reports none of them.  The run already holds an SSH link there (:mod:`harness.host.link`), so the same
facts :func:`harness.host.check.local_facts` reads here are read there, in two round trips: one POSIX shell script
prints every file and command output between separators only this call knows, and one command takes the run's
static probe on its stdin, runs ``klprobe cpuid --backend native`` from a ``mktemp -d`` directory and removes it.

Everything is read, never changed: the probe's temporary directory is the only thing written, and the command that
writes it removes it (also when it is killed).  Every command is bounded (:func:`harness.timeouts.active`), and a
fact that cannot be read says why instead of failing the check.  Two facts cannot be had from a shell at all and
say so: ``KVM_GET_SUPPORTED_CPUID`` is an ioctl on ``/dev/kvm``, and CPUID faulting is asked for with an
``arch_prctl`` of the asking process (the kernel's ``cpuid_fault`` flag in ``/proc/cpuinfo`` stands in for it).

The text is turned into facts by :mod:`harness.host.factparse`, the parsers this machine's reader uses too.
"""

from __future__ import annotations

import re
import secrets
import shlex
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from harness import cbuild
from harness.errors import KlharnessError
from harness.host.factparse import (
    MITIGATION_FILES,
    VULN_DIR,
    cpu_summary,
    cpuid_from_probe,
    crypto_facts_from,
    kernel_config_from,
    kernel_config_missing,
    kernel_log_from,
    kvm_facts_from,
    module_support_from,
    qemu_facts_from,
)
from harness.host.facts import cpu_model_of
from harness.timeouts import active as active_timeouts

if TYPE_CHECKING:
    from harness.guest.ssh import RemoteResult
    from harness.ssh_target import SshTarget

KLOG_GREP = "key ?locker|aes-?kl|iwkey|x86/kl|klhelper"  # grep -iE on the host: a superset of KLOG_PATTERN
BOUNDED_STEPS = 4  # commands of the facts script that can take long, each bounded by `timeout`: dmesg, zcat, 2x QEMU


# -- reading the far host ---------------------------------------------------------------------------------------

class Shell(Protocol):
    """What reading a host needs of its link: :class:`harness.host.link.HostLink` (a test's fake)."""

    @property
    def target(self) -> SshTarget: ...

    def run(self, argv: list[str] | str, *, timeout: float | None = None, check: bool = False,
            stdin: bytes | None = None) -> RemoteResult: ...


@dataclass(frozen=True)
class Output:
    """How one command of the facts script ended on the far host (returncode -1: it gave no answer)."""

    stdout: str
    stderr: str
    returncode: int

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    @property
    def why(self) -> str:
        """The last line of what it said on stderr, or its exit status."""
        tail = self.stderr.strip().splitlines()
        return tail[-1] if tail else f"exit status {self.returncode}"


@dataclass(frozen=True)
class HostRead:
    """Every output of one facts script, by section name; ``failure`` says why there are none."""

    where: str
    outputs: dict[str, Output]
    failure: str | None = None

    def get(self, name: str) -> Output:
        if name in self.outputs:
            return self.outputs[name]
        return Output("", self.failure or f"{name}: not in the answer of {self.where} (the facts script stopped "
                                          "early?)", -1)

    def text(self, name: str) -> str | None:
        """The section's stdout when its command worked, else None."""
        out = self.get(name)
        return out.stdout if out.ok else None


@dataclass(frozen=True)
class RemoteHost:
    """What was read on a far host: the facts (the shape of ``check.local_facts``) and its own name."""

    where: str
    hostname: str | None
    facts: dict[str, Any]


FILES = {"cpuinfo": "/proc/cpuinfo", "proc_modules": "/proc/modules", "crypto": "/proc/crypto",
         "modules_disabled": "/proc/sys/kernel/modules_disabled",
         **{key: f"{VULN_DIR}/{name}" for key, name in MITIGATION_FILES.items()}}
EXISTS = {"modules_disabled_exists": "/proc/sys/kernel/modules_disabled", "klhelper": "/sys/module/klhelper",
          "dev_kvm": "/dev/kvm"}


def facts_script(marker: str, qemu_binary: str | None, limit: float) -> str:
    """One POSIX sh script that prints every fact's source between ``marker`` lines.

    Each section is ``M begin NAME``, the command's stdout, ``M err NAME``, its stderr, ``M end NAME RC``;
    commands that can take long run under ``timeout LIMIT`` where coreutils has it.
    """
    qemu = f"Q={shlex.quote(qemu_binary)}" if qemu_binary else "Q=$(command -v qemu-system-x86_64) || Q="
    lines = [
        f"M={shlex.quote(marker)}", f"T={max(1, round(limit))}", "exec 3>&1",
        's() { n=$1; shift; printf \'%s begin %s\\n\' "$M" "$n"; e=$("$@" 2>&1 >&3); r=$?; '
        'printf \'\\n%s err %s\\n%s\\n%s end %s %s\\n\' "$M" "$n" "$e" "$M" "$n" "$r"; }',
        'b() { if command -v timeout >/dev/null 2>&1; then timeout "$T" "$@"; else "$@"; fi; }',
        f'klog() {{ o=$(b dmesg) || return $?; printf \'%s\\n\' "$o" | grep -iE {shlex.quote(KLOG_GREP)} || :; }}',
        "s machine uname -m", "s hostname uname -n", "s release uname -r", "R=$(uname -r)",
        *(f"s {name} cat {shlex.quote(path)}" for name, path in FILES.items()),
        *(f"s {name} test -e {shlex.quote(path)}" for name, path in EXISTS.items()),
        "s sys_module ls -1 /sys/module",
        's headers test -e "/lib/modules/$R/build/Makefile"',
        'if [ -r "/boot/config-$R" ]; then s config_boot cat "/boot/config-$R"; '
        "else s config_proc b zcat /proc/config.gz; fi",
        "s dmesg klog",
        qemu, 's qemu_binary printf %s "$Q"',
        'if [ -n "$Q" ]; then s qemu_version b "$Q" --version; s qemu_help b "$Q" -cpu help; fi',
    ]
    return "\n".join(lines) + "\n"


def split_sections(text: str, marker: str) -> dict[str, Output]:
    """The sections :func:`facts_script` printed, by name (a section cut short is left out)."""
    m = re.escape(marker)
    pattern = re.compile(rf"^{m} begin (?P<n>\S+)\n(?P<out>.*?)\n{m} err (?P=n)\n(?P<err>.*?)\n"
                         rf"{m} end (?P=n) (?P<rc>\d+)$", re.DOTALL | re.MULTILINE)
    return {g["n"]: Output(g["out"], g["err"], int(g["rc"])) for g in pattern.finditer(text)}


def read_host(link: Shell, *, qemu_binary: str | None) -> HostRead:
    """Run the facts script on the far host (one round trip); a failure is recorded, never raised."""
    where = link.target.where
    marker = f"@@klharness-{secrets.token_hex(8)}"
    step = active_timeouts().tool
    limit = step * BOUNDED_STEPS + step
    try:
        res = link.run(["sh", "-s"], stdin=facts_script(marker, qemu_binary, step).encode(), timeout=limit)
    except KlharnessError as err:
        return HostRead(where, {}, f"the facts of {where} were not read: {err}")
    outputs = split_sections(res.stdout.decode(errors="replace"), marker)
    if res.timed_out:
        return HostRead(where, outputs, f"the facts script on {where} did not finish within {limit:.0f}s "
                                        "(raise KLHARNESS_TIMEOUT_TOOL for a slow host)")
    if not outputs:
        return HostRead(where, {}, f"the facts script on {where} printed nothing it could read: "
                                   f"{res.describe()} (is /bin/sh a POSIX shell there?)")
    return HostRead(where, outputs)


PROBE_SCRIPT = r"""d=$(mktemp -d "${TMPDIR:-/tmp}/klharness-probe.XXXXXX") || exit 90
trap 'rm -rf "$d"' EXIT
trap 'exit 129' HUP INT TERM
cat > "$d/klprobe" && chmod 700 "$d/klprobe" || exit 91
if command -v timeout >/dev/null 2>&1; then timeout "$1" "$d/klprobe" cpuid --backend native
else "$d/klprobe" cpuid --backend native; fi
"""

PROBE_EXITS = {
    90: "cannot make a temporary directory there",
    91: "cannot write the probe into its temporary directory",
    124: "klprobe cpuid did not finish within the tool timeout (KLHARNESS_TIMEOUT_TOOL)",
    126: "the probe could not be executed (is $TMPDIR or /tmp mounted noexec there?)",
}


def remote_cpuid(link: Shell, machine: str | None,
                 klprobe: Callable[[], Path] = lambda: cbuild.build("klprobe")) -> dict[str, Any]:
    """The ``cpuid`` fact of the far host: the run's static probe piped in, run from ``mktemp -d``, removed.

    A lab host has no klharness, so the probe travels on the command's stdin (one round trip, and the same
    shell that made the directory removes it, on a timeout too).  Any failure is the fact's ``error``.
    """
    where = link.target.where
    if machine is not None and machine != "x86_64":
        return {"ok": False, "error": f"{where} is a {machine} host: klprobe runs on x86-64 only"}
    try:
        binary = klprobe().read_bytes()
    except (KlharnessError, OSError) as err:
        return {"ok": False, "error": f"the probe for {where} could not be built or read here: {err}"}
    t = active_timeouts()
    limit = t.upload + t.tool
    try:
        res = link.run(["sh", "-c", PROBE_SCRIPT, "klprobe", str(max(1, round(t.tool)))], stdin=binary,
                       timeout=limit)
    except KlharnessError as err:
        return {"ok": False, "error": f"klprobe cpuid on {where} did not run: {err}"}
    tail = (res.stderr.decode(errors="replace").strip().splitlines() or [""])[-1]
    if res.timed_out:
        return {"ok": False, "error": f"uploading and running klprobe cpuid on {where} took more than {limit:.0f}s "
                                      "(KLHARNESS_TIMEOUT_UPLOAD, KLHARNESS_TIMEOUT_TOOL)"}
    if res.returncode != 0:
        what = PROBE_EXITS.get(res.returncode, f"klprobe cpuid exited {res.returncode}")
        return {"ok": False, "error": f"{where}: {what}" + (f": {tail}" if tail else "")}
    try:
        return cpuid_from_probe(res.stdout, f"klprobe cpuid on {where}")
    except KlharnessError as err:
        return {"ok": False, "error": str(err)}


# -- the facts, from what was read --------------------------------------------------------------------------------

def _cpu(read: HostRead) -> dict[str, Any]:
    text = read.text("cpuinfo")
    cpu = cpu_summary(cpu_model_of(text or ""))
    if text is None:
        cpu["reason"] = f"/proc/cpuinfo not read: {read.get('cpuinfo').why}"
    return cpu


def _kernel(read: HostRead, release: str | None) -> dict[str, Any]:
    shown = release or "$(uname -r)"  # unknown when uname did not answer: say which file was meant
    tried = [f"/boot/config-{shown}", "/proc/config.gz"]
    if (text := read.text("config_boot")) is not None:
        config = kernel_config_from(text, tried[0])
    elif (text := read.text("config_proc")) is not None:
        config = kernel_config_from(text, tried[1])
    else:
        config = kernel_config_missing(tried)
        if read.failure:
            config["reason"] = f"the kernel config was not read: {read.failure}"
    modules = module_support_from(
        proc_modules=read.get("proc_modules").ok, disabled_file=read.get("modules_disabled_exists").ok,
        disabled_text=read.text("modules_disabled"), build=f"/lib/modules/{shown}/build",
        headers=read.get("headers").ok)
    if read.failure:
        modules["reason"] = f"not read: {read.failure}"
    return {"release": release, "config": config, "modules": modules}


def _kernel_log(read: HostRead) -> dict[str, Any]:
    out = read.get("dmesg")
    if out.returncode == -1:
        return {"readable": False, "reason": f"dmesg not read: {out.why}", "lines": []}
    if out.returncode == 127:
        return {"readable": False, "reason": f"dmesg is not installed on {read.where} (package util-linux)",
                "lines": []}
    if out.returncode == 124:
        return {"readable": False, "reason": f"dmesg on {read.where} did not finish within the tool timeout "
                                             "(KLHARNESS_TIMEOUT_TOOL)", "lines": []}
    return kernel_log_from(out.returncode, out.stdout, out.stderr)


def _crypto(read: HostRead) -> dict[str, Any]:
    text = read.text("crypto")
    if text is None:
        return {"readable": False, "reason": f"/proc/crypto: {read.get('crypto').why}", "drivers": []}
    return crypto_facts_from(text)


def _exists(read: HostRead, name: str) -> bool | None:
    """``test -e``: 0 it exists, 1 it does not; anything else (no answer) is unknown."""
    return {0: True, 1: False}.get(read.get(name).returncode)


def _kvm(read: HostRead) -> dict[str, Any]:
    """Modules as :func:`harness.virt.accel.loaded_modules` takes them (/proc/modules and /sys/module)."""
    mods_text, sys_text = read.text("proc_modules"), read.text("sys_module")
    if mods_text is None and sys_text is None:
        why = read.get("sys_module").why
        return {"dev_kvm": _exists(read, "dev_kvm"), "modules": [], "usable": None,  # unknown, not "no"
                "reason": f"the kernel modules of {read.where} were not read: {why}",
                "supported_cpuid": {"ok": False, "error": f"not read: {why}"}}
    modules = {ln.split()[0] for ln in (mods_text or "").splitlines() if ln.strip()}
    modules |= {ln.strip() for ln in (sys_text or "").splitlines() if ln.strip()}
    supported = {"ok": False, "read_remotely": False,
                 "error": f"KVM_GET_SUPPORTED_CPUID is an ioctl on /dev/kvm: not read over SSH from {read.where} "
                          "(run `klharness host-check` on the lab host itself for it)"}
    return kvm_facts_from(modules, "/dev/kvm", _exists(read, "dev_kvm") is True, supported)


def _qemu(read: HostRead, names: tuple[str, ...]) -> dict[str, Any]:
    binary = (read.text("qemu_binary") or "").strip()
    if not binary:
        why = read.failure or f"qemu-system-x86_64 not found on {read.where} (install qemu-system-x86)"
        return {"ok": False, "error": why}
    version, cpu_help = read.get("qemu_version"), read.get("qemu_help")
    for out in (version, cpu_help):
        if not out.ok:
            return {"ok": False, "binary": binary, "error": f"{binary} did not answer on {read.where}: {out.why}"}
    try:
        return qemu_facts_from(binary, version.stdout, cpu_help.stdout, names)
    except IndexError:
        return {"ok": False, "binary": binary, "error": f"{binary} --version printed nothing on {read.where}"}


def _vmm(read: HostRead) -> dict[str, Any]:
    """qemu-kl is klharness's own build on the machine that runs klharness, never installed on a lab host."""
    return {"built": False, "reason": "qemu-kl is built by klharness on the machine it runs on (klharness vmm build "
                                      f"qemu-kl); not looked for on {read.where}"}


def _cpuid_faulting(read: HostRead, flag: bool | None) -> dict[str, Any]:
    return {"cpuinfo_flag": flag, "supported": flag,
            "how": f"not probed on {read.where} (arch_prctl(ARCH_SET_CPUID) must be asked by a process there): "
                   "/proc/cpuinfo's cpuid_fault flag, which the kernel sets exactly when ARCH_SET_CPUID works"}


def facts_from_read(read: HostRead, names: tuple[str, ...], cpuid: dict[str, Any]) -> dict[str, Any]:
    """Every fact of ``check.local_facts``, from one facts script's outputs and the probe's ``cpuid`` fact."""
    release = (read.text("release") or "").strip() or None
    cpu = _cpu(read)
    return {
        "cpu": cpu,
        "cpuid": cpuid,
        "kernel": _kernel(read, release),
        "kernel_log": _kernel_log(read),
        "crypto": _crypto(read),
        "klhelper_loaded": _exists(read, "klhelper"),
        "mitigations": {key: (t.strip() if (t := read.text(key)) is not None else None) for key in MITIGATION_FILES},
        "kvm": _kvm(read),
        "qemu": _qemu(read, names),
        "vmm": {"qemu-kl": _vmm(read)},
        "cpuid_faulting": _cpuid_faulting(read, cpu["flags_cpuid_fault"]),
    }


def read_remote_host(link: Shell, names: tuple[str, ...], *, qemu_binary: str | None,
                     klprobe: Callable[[], Path] = lambda: cbuild.build("klprobe")) -> RemoteHost:
    """The far host's facts and its own name (``uname -n``), in two round trips over ``link``."""
    read = read_host(link, qemu_binary=qemu_binary)
    machine = (read.text("machine") or "").strip() or None
    if read.failure and not read.outputs:  # no answer at all: a second login would fail (and wait) the same way
        cpuid = {"ok": False, "error": f"klprobe cpuid not run: {read.failure}"}
    else:
        cpuid = remote_cpuid(link, machine, klprobe)
    hostname = (read.text("hostname") or "").strip() or None
    return RemoteHost(read.where, hostname, facts_from_read(read, names, cpuid))


def remote_facts(link: Shell, names: tuple[str, ...], *, qemu_binary: str | None,
                 klprobe: Callable[[], Path] = lambda: cbuild.build("klprobe")) -> dict[str, Any]:
    """Every fact :func:`harness.host.check.local_facts` reads, read on the host at the other end of ``link``."""
    return read_remote_host(link, names, qemu_binary=qemu_binary, klprobe=klprobe).facts
