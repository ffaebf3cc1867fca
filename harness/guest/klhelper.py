"""The ring-0 helper ``klhelper`` (sources in ``harness/lab/klhelper``): ship, build, load, read back.

Why here: the integration test, the silicon-vs-emulator catalogue test and a
lab run all need the same steps — get a module that matches the target's
running kernel, ``insmod`` it, and say exactly why the module refused, from
the kernel log.  Two ways to get the module: for an image whose kernel is a
distribution package it is built on this host against that kernel's headers
(:mod:`harness.images.modules`, cached, seconds); otherwise the sources are
uploaded and built on the target against its own headers (a lab host, a
user's cloud image; minutes in a TCG guest).
"""

from __future__ import annotations

import gzip
import io
import re
import shlex
import tarfile
import time
from dataclasses import dataclass
from typing import Any, Protocol

from harness.errors import BuildError, GuestError
from harness.images.artifact import ImageArtifact
from harness.paths import PACKAGE_DIR
from harness.timeouts import active as active_timeouts

SOURCE_DIR = PACKAGE_DIR / "lab" / "klhelper"
SOURCES = ("klhelper_main.c", "klhelper_insn.c", "klhelper_ring0.c", "klhelper.h", "Makefile", "README.md")
REMOTE_DIR = "/tmp/klhelper"
DEBUGFS_DIR = "/sys/kernel/debug/klhelper"
# The module's refusal where CPUID.(7,0):ECX[23]=0 (klhelper_main.c, klh_init).
NOT_ENUMERATED = "Key Locker not enumerated (CPUID.(7,0):ECX[23]=0)"
KERNEL_USES_KL = "the kernel already uses Key Locker"
_LOG_LINE = re.compile(r"klhelper: .*")


class Remote(Protocol):
    """What the helper needs of a shell on the target: ``harness.guest.ssh.Session`` fits."""

    def run(self, argv: Any, *, timeout: float | None = None, stdin: bytes | None = None,
            check: bool = False) -> Any: ...

    def upload(self, data: bytes, remote_path: str, *, mode: int = 0o755) -> None: ...


@dataclass(frozen=True)
class LoadResult:
    """What ``insmod klhelper.ko`` did, with the module's own words from the kernel log."""

    loaded: bool
    returncode: int
    insmod_output: str
    kernel_log: tuple[str, ...]
    build_seconds: float
    kernel_release: str

    @property
    def refused_not_enumerated(self) -> bool:
        return not self.loaded and any(NOT_ENUMERATED in line for line in self.kernel_log)

    @property
    def refused_kernel_uses_kl(self) -> bool:
        return not self.loaded and any(KERNEL_USES_KL in line for line in self.kernel_log)

    def describe(self) -> str:
        state = "loaded" if self.loaded else f"refused (insmod exit {self.returncode}: {self.insmod_output.strip()})"
        log = "\n  ".join(self.kernel_log) or "(no klhelper lines in the kernel log)"
        return f"klhelper on {self.kernel_release}: {state}\n  {log}"


def missing_sources() -> list[str]:
    """Source files the shipped tree lacks (empty when complete)."""
    return [name for name in SOURCES if not (SOURCE_DIR / name).is_file()]


def source_archive() -> bytes:
    """The sources as a gzip'd tar (no build products), for upload."""
    missing = missing_sources()
    if missing:
        raise BuildError(f"klhelper sources incomplete in {SOURCE_DIR}: missing {', '.join(missing)}")
    buf = io.BytesIO()
    # Deterministic (no timestamps): the bytes hash the same for the same sources, which keys the
    # host-built module's cache (harness.images.modules).
    with gzip.GzipFile(fileobj=buf, mode="wb", mtime=0) as gz, tarfile.open(fileobj=gz, mode="w") as tar:
        for name in SOURCES:
            info = tar.gettarinfo(str(SOURCE_DIR / name), arcname=name)
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            info.mtime = 0
            with (SOURCE_DIR / name).open("rb") as f:
                tar.addfile(info, f)
    return buf.getvalue()


def build(remote: Remote, *, remote_dir: str = REMOTE_DIR, timeout: float | None = None) -> float:
    """Upload the sources and ``make`` them against the target's running kernel; returns seconds taken.

    Raises BuildError with the compiler's last lines (missing headers included).
    """
    d = shlex.quote(remote_dir)
    remote.upload(source_archive(), f"{remote_dir}.tar.gz", mode=0o644)
    start = time.monotonic()
    res = remote.run(f"rm -rf {d} && mkdir -p {d} && tar -xzf {d}.tar.gz -C {d} && make -C {d} 2>&1",
                     timeout=timeout or active_timeouts().helper_build)
    took = time.monotonic() - start
    if not res.ok:
        tail = "\n  ".join(res.text().strip().splitlines()[-15:])
        how = "timed out" if res.timed_out else f"exited {res.returncode}"
        raise BuildError(f"building klhelper on the target {how} after {took:.0f}s:\n  {tail}")
    return took


def load(remote: Remote, *, params: tuple[str, ...] = (), remote_dir: str = REMOTE_DIR,
         timeout: float | None = None, build_seconds: float = 0.0) -> LoadResult:
    """``insmod`` the built module and collect its kernel-log lines (whatever the outcome)."""
    limits = active_timeouts()
    release = remote.run(["uname", "-r"], timeout=limits.exec, check=True).text().strip()
    # The interface is in debugfs, which minimal images do not mount.
    mounted = remote.run("mountpoint -q /sys/kernel/debug || mount -t debugfs none /sys/kernel/debug 2>&1",
                         timeout=limits.exec)
    if not mounted.ok:
        raise GuestError(f"klhelper's interface is in debugfs, and the guest kernel {release} cannot mount it "
                         f"({mounted.text().strip() or mounted.describe()}): boot a kernel built with CONFIG_DEBUG_FS "
                         "(the mini image's own kernel, guest_images/kernel/klh.config, has it)")
    res = remote.run(["insmod", f"{remote_dir}/klhelper.ko", *params], timeout=timeout or limits.helper_load)
    log = remote.run("dmesg 2>&1 | grep 'klhelper: ' || true", timeout=limits.exec)
    lines = tuple(m.group(0).strip() for m in (_LOG_LINE.search(ln) for ln in log.text().splitlines()) if m)
    out = (res.stderr.decode(errors="replace") + res.text()).strip()
    return LoadResult(res.ok, res.returncode, out, lines, build_seconds, release)


def install_prebuilt(remote: Remote, image: ImageArtifact, *, remote_dir: str = REMOTE_DIR) -> float:
    """Upload klhelper.ko built on this host for ``image``'s kernel; returns seconds taken (build included)."""
    from harness.images.modules import ModuleSource, module_for

    start = time.monotonic()
    ko = module_for(image, ModuleSource("klhelper", source_archive()))
    remote.run(["mkdir", "-p", remote_dir], timeout=active_timeouts().exec, check=True)
    remote.upload(ko.read_bytes(), f"{remote_dir}/klhelper.ko", mode=0o644)
    return time.monotonic() - start


def build_and_load(remote: Remote, *, params: tuple[str, ...] = (), image: ImageArtifact | None = None) -> LoadResult:
    """Get the module onto the target (host-built for a packaged kernel, else built there) and load it."""
    took = install_prebuilt(remote, image) if image is not None and image.kernel_version else build(remote)
    return load(remote, params=params, build_seconds=took)


def status(remote: Remote) -> dict[str, str]:
    """``/sys/kernel/debug/klhelper/status`` as key -> value (per-CPU lines keyed ``cpuN``)."""
    res = remote.run(["cat", f"{DEBUGFS_DIR}/status"], timeout=active_timeouts().exec, check=True)
    out: dict[str, str] = {}
    for line in res.text().splitlines():
        key, sep, value = line.partition(":")
        if sep and not line.startswith(" "):
            out[key.strip()] = value.strip()
    return out


def set_iwkey(remote: Remote, integrity: bytes, enc: bytes) -> None:
    """Load a known IWKey on every CPU (``enc`` = EncKey[127:0] ‖ EncKey[255:128], as the vectors tool)."""
    if len(integrity) != 16 or len(enc) != 32:
        raise ValueError("an IWKey is a 16-byte integrity key and a 32-byte encryption key")
    line = (integrity + enc).hex()
    remote.run(f"echo {line} > {DEBUGFS_DIR}/iwkey", timeout=active_timeouts().exec, check=True)


# What the ring0 file answers for a CPU that hides Key Locker (ACRN's hidden-KL list, KEYLOCKER.md §6).
RING0_INSTRUCTIONS = ("loadiwkey", "encodekey128", "encodekey256", "aesenc128kl", "aesdec128kl", "aesenc256kl",
                      "aesdec256kl", "aesencwide128kl", "aesdecwide128kl", "aesencwide256kl", "aesdecwide256kl")
BACKUP_MSRS = ("0x990", "0x991", "0xd91", "0xd92")
HIDDEN_EXPECTED: dict[str, str] = {"cr4.kl": "gp", **{f"msr {m} read": "gp write: gp" for m in BACKUP_MSRS},
                                   **dict.fromkeys(RING0_INSTRUCTIONS, "ud")}


def ring0(remote: Remote, command: str) -> dict[str, str]:
    """klhelper's ring-0 checks (klhelper_ring0.c): ``command`` written, the answer as {item: outcome}."""
    remote.run(f"echo {shlex.quote(command)} > {DEBUGFS_DIR}/ring0", timeout=active_timeouts().exec, check=True)
    out = remote.run(["cat", f"{DEBUGFS_DIR}/ring0"], timeout=active_timeouts().exec, check=True).text()
    return dict(line.split(": ", 1) for line in out.splitlines() if ": " in line)


def timings(remote: Remote) -> dict[str, Any]:
    """The IWKey backup made at load and every restore since (TSC cycles of the CPU that did it).

    On qemu-kl these are TCG's TSC, host time scaled, not silicon cycles; the caller labels them.
    """
    text = remote.run(["cat", f"{DEBUGFS_DIR}/status"], timeout=active_timeouts().exec, check=True).text()
    out: dict[str, Any] = {"restores": [], "events": []}
    for line in text.splitlines():
        fields = dict(w.split("=", 1) for w in line.replace(":", " ").split() if "=" in w)
        if line.startswith("backup: ") and "cycles" in fields:
            out["backup_cycles"] = int(fields["cycles"])
            out["backup_ok"] = fields.get("ok") == "1"
        if line.startswith(("online cpu", "resume cpu")):
            out["events"].append(line.strip())
        if " restore ok=" in line and "cycles" in fields:
            out["restores"].append({"when": line.split()[0], "cpu": line.split()[1].rstrip(":"),
                                    "ok": fields.get("ok") == "1", "cycles": int(fields["cycles"])})
    return out
