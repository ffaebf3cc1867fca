"""Guests on qemu-kl for the tests: boot one from a few settings, and the klhelper ring0 file.

Why a support module: tests/test_qemu_kl.py and tests/test_qemu_kl_lifecycle.py boot guests of
several CPU shapes the same way the run does (harness.guest.probeguest.boot from a GuestConfig), and read
klhelper's ring-0 answers the same way.
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from virt_support import runtime_root

from harness import cbuild
from harness.config.model import Config, GuestConfig, KlConfig, RunSettings
from harness.guest.probeguest import ProbeGuest, RunContext, boot
from harness.guest.ssh import generate_keypair
from harness.images import build_image
from harness.kl.emuconfig import private_runtime_dir
from harness.plan.matrix import plan_guest
from harness.timeouts import Timeouts
from harness.virt.accel import choose_accel
from harness.virt.registry import RunGuests

RING0 = "/sys/kernel/debug/klhelper/ring0"
IWKEY = "/sys/kernel/debug/klhelper/iwkey"
KNOWN_LINE = bytes(range(0x30)).hex()  # integrity 00..0f, EncKey 10..2f: KEYLOCKER.md §4's IWKey


@contextlib.contextmanager
def run_context(conn: Any, run_id: str) -> Iterator[RunContext]:
    keys = private_runtime_dir(run_id)
    try:
        with RunGuests(run_id, handle_signals=False) as registry:
            yield RunContext(run_id, conn, generate_keypair(keys / "ssh", f"klharness-{run_id}"),
                             Timeouts(boot=180.0), registry, cbuild.build("klprobe"), choose_accel("tcg"),
                             runtime_root() / "artifacts" / run_id)
    finally:
        shutil.rmtree(keys, ignore_errors=True)


@contextlib.contextmanager
def qemu_kl_guest(ctx: RunContext, name: str, kl: KlConfig, *, vcpus: int = 2, max_vcpus: int | None = None,
                  helper: bool | None = None, helper_params: tuple[str, ...] = (), suffix: str = "",
                  persistent: bool = False, suspend: bool = False) -> Iterator[ProbeGuest]:
    """A mini guest on qemu-kl; klhelper is loaded as the run would (``helper`` overrides), with
    ``helper_params`` as insmod parameters (at every boot)."""
    guest = GuestConfig(name=name, image="mini", vcpus=vcpus, max_vcpus=max_vcpus, kl=kl, vmm="qemu-kl",
                        helper_params=helper_params)
    plan = plan_guest(guest, Config("tests/qemu_kl_support.py", RunSettings(), (guest,)))
    if helper is not None:
        from dataclasses import replace

        plan = replace(plan, helper=helper)
    pg = boot(ctx, plan, build_image("mini"), suffix=suffix, persistent=persistent, suspend=suspend)
    try:
        yield pg
    finally:
        pg.teardown(keep=False)


def ring0(pg: ProbeGuest, command: str) -> dict[str, str]:
    """klhelper's ring-0 answer to ``command`` as {item: outcome}."""
    pg.run(f"echo '{command}' > {RING0}", check=True)
    out = pg.run(["cat", RING0], check=True).text()
    return dict(line.split(": ", 1) for line in out.splitlines() if ": " in line)


def set_known_key(pg: ProbeGuest, line: str = KNOWN_LINE) -> None:
    pg.run(f"echo {line} > {IWKEY}", check=True)


def static_binary(source: Path, out: Path) -> Path:
    """A static binary built on the host (guests run them unchanged)."""
    from harness import proc

    proc.run([cbuild.compiler(), "-O2", "-static", "-Wall", "-Wextra", "-Werror", "-o", str(out), str(source)],
             timeout=180)
    return out
