#!/usr/bin/env python3
"""Boot the ``mini`` (or ``debian``) image N times with plain QEMU (TCG) and time each phase.

Phases, all from the moment QEMU is started:
  first byte  the first byte on the serial console (kernel or, with ``quiet``, /init)
  init        the ``klh: init`` line (/init started: kernel boot done)
  marker      the ``klh: ssh ready`` line (dropbear listens)
  greeting    an ``SSH-`` greeting read on the forwarded port with a plain socket

No libvirt: this measures the image and QEMU, not the orchestration.  Run:

    python3 benchmarks/bench_boot.py --runs 5
    python3 benchmarks/bench_boot.py --runs 5 --cpu qemu64 --net dhcp --no-rng   # compare variants
"""

from __future__ import annotations

import argparse
import json
import socket
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from harness import proc
from harness.images import build_image
from harness.images.artifact import FWCFG_AUTHORIZED_KEY, READY_MARKER, ImageArtifact

PHASES = ("first_byte", "init", "marker", "greeting")


@dataclass
class Run:
    first_byte: float | None = None
    init: float | None = None
    marker: float | None = None
    greeting: float | None = None
    guest_ready_uptime: str = ""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def public_key_line() -> str:
    """A throwaway ed25519 public key (only its presence in the guest matters here)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    pub = Ed25519PrivateKey.generate().public_key()
    return pub.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode() + " bench\n"


def qemu_argv(art: ImageArtifact, args: argparse.Namespace, port: int, console: Path, keyfile: Path) -> list[str]:
    assert art.kernel and art.initrd and art.kernel_bzimage
    cmdline = art.cmdline
    if args.net != "dhcp":
        cmdline += f" klh.net={args.net}"
    if args.append:
        cmdline += " " + args.append
    argv = [
        args.qemu, "-accel", args.accel, "-M", args.machine, "-cpu", args.cpu, "-m", str(args.memory),
        "-smp", str(args.vcpus), "-nodefaults", "-no-user-config", "-display", "none",
        "-serial", f"file:{console}",
        "-kernel", str(art.kernel_bzimage if args.bzimage else art.kernel), "-initrd", str(art.initrd),
        "-append", cmdline,
        "-fw_cfg", f"name={FWCFG_AUTHORIZED_KEY},file={keyfile}",
        "-netdev", f"user,id=n0,hostfwd=tcp:127.0.0.1:{port}-:22",
        "-device", "virtio-net-pci,netdev=n0",
    ]
    if art.disk is not None:  # never boot the base: a throwaway overlay per run
        overlay = console.with_suffix(".qcow2")
        overlay.unlink(missing_ok=True)
        proc.run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", str(art.disk), str(overlay)],
                 timeout=60)
        argv += ["-drive", f"file={overlay},if=virtio,format=qcow2"]
    if args.rng:
        argv += ["-object", "rng-random,id=rng0,filename=/dev/urandom", "-device", "virtio-rng-pci,rng=rng0"]
    argv += args.qemu_arg
    return argv


def ssh_greeting(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
            s.settimeout(0.5)
            return s.recv(8).startswith(b"SSH-")
    except OSError:
        return False


def poll_greeting(port: int, start: float, deadline: float, run: Run, go: threading.Event,
                  stop: threading.Event) -> None:
    """In a thread, once the ready marker is seen (as the harness does; earlier probes can sit
    in a half-open forward while the guest has no network yet).  QEMU's port forward accepts
    before the guest listens, so only a greeting counts."""
    go.wait()
    while not stop.is_set() and time.monotonic() < deadline:
        if ssh_greeting(port):
            run.greeting = time.monotonic() - start
            return
        time.sleep(0.02)


def boot_once(art: ImageArtifact, args: argparse.Namespace, tmp: Path, index: int) -> Run:
    port = free_port()
    console = tmp / f"console-{index}.log"
    keyfile = tmp / "authorized_key"
    keyfile.write_text(public_key_line())
    console.unlink(missing_ok=True)
    run = Run()
    start = time.monotonic()
    go, stop = threading.Event(), threading.Event()
    deadline = start + args.timeout
    poller = threading.Thread(target=poll_greeting, args=(port, start, deadline, run, go, stop))
    with proc.Background(qemu_argv(art, args, port, console, keyfile), stdout_path=tmp / f"qemu-{index}.log"):
        poller.start()
        while time.monotonic() < deadline:
            now = time.monotonic() - start
            text = console.read_text(errors="replace") if console.exists() else ""
            if text and run.first_byte is None:
                run.first_byte = now
            if run.init is None and "klh: init" in text:
                run.init = now
            if run.marker is None and READY_MARKER in text:
                run.marker = now
                run.guest_ready_uptime = text.split(READY_MARKER, 1)[1].split("\n", 1)[0].strip()
                go.set()
            if run.greeting is not None and run.marker is not None:
                break
            time.sleep(0.005)
        else:
            tail = "\n".join(console.read_text(errors="replace").splitlines()[-15:]) if console.exists() else ""
            print(f"run {index}: no SSH greeting within {args.timeout:.0f}s; console tail:\n{tail}", file=sys.stderr)
        go.set()
        stop.set()
        poller.join()
    return run


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--image", default="mini")
    ap.add_argument("-o", "--option", action="append", default=[], metavar="KEY=VALUE", help="image option")
    ap.add_argument("--cpu", default="max", help="QEMU -cpu model (default: max; qemu64 has no RDRAND)")
    ap.add_argument("--machine", default="pc")
    ap.add_argument("--accel", choices=("tcg", "kvm"), default="tcg",
                    help="accelerator (kvm only where klharness host-check says KVM is usable)")
    ap.add_argument("--memory", type=int, default=512, help="MiB")
    ap.add_argument("--vcpus", type=int, default=1, help="vCPUs (the CI matrix's kl-full guest has 2)")
    ap.add_argument("--net", choices=("static", "dhcp"), default="static")
    ap.add_argument("--rng", action=argparse.BooleanOptionalAction, default=True, help="virtio-rng device")
    ap.add_argument("--bzimage", action="store_true", help="boot the compressed bzImage instead of vmlinux")
    ap.add_argument("--append", default="", help="extra kernel command line")
    ap.add_argument("--qemu-arg", action="append", default=[], help="extra QEMU argument (repeatable)")
    ap.add_argument("--qemu", default="qemu-system-x86_64", help="QEMU binary (the qemu-kl build: "
                    "$(klharness vmm status --json | jq -r .binary))")
    ap.add_argument("--timeout", type=float, default=60.0)
    ap.add_argument("--json", type=Path, help="also write the raw runs here")
    ap.add_argument("--keep", type=Path, help="keep console and QEMU logs in this directory")
    args = ap.parse_args()

    art = build_image(args.image, options=dict(o.split("=", 1) for o in args.option))
    print(f"image {art.name}-{art.key[:16]} kernel {art.kernel_version} "
          f"({'bzImage' if args.bzimage else 'vmlinux'}), cpu {args.cpu}, net {args.net}, rng {args.rng}")
    runs = []
    with tempfile.TemporaryDirectory(prefix="klh-bench-") as tmp_dir:
        tmp = args.keep or tmp_dir
        Path(tmp).mkdir(parents=True, exist_ok=True)
        for i in range(args.runs):
            run = boot_once(art, args, Path(tmp), i)
            runs.append(run)
            cells = "  ".join(f"{p} {getattr(run, p):.2f}s" if getattr(run, p) is not None else f"{p} -"
                              for p in PHASES)
            print(f"run {i}: {cells}  (guest uptime at ready: {run.guest_ready_uptime})")
    print(f"\n{'phase':<11} {'p50':>6} {'p95':>6} {'min':>6} {'max':>6}  (seconds from QEMU start, n={len(runs)})")
    for phase in PHASES:
        values = [v for r in runs if (v := getattr(r, phase)) is not None]
        if values:
            print(f"{phase:<11} {statistics.median(values):6.2f} {percentile(values, 0.95):6.2f} "
                  f"{min(values):6.2f} {max(values):6.2f}")
        else:
            print(f"{phase:<11} {'-':>6}")
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in runs], indent=2))
    return 0 if all(r.greeting is not None for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
