"""Build the C programs shipped in ``harness/csrc`` with the system compiler.

Why here and not a Makefile: the Python side needs the binaries at known
paths, rebuilt exactly when a source, a flag or the compiler changes.  Each
build lands in a directory named by the hash of all of that, so a cached
build is reused, two runs building at once never see a half-written binary
(we build into a temporary directory and rename it into place), and the
command line is logged so a human can rerun it by hand.

Targets:
  klprobe             static probe (probe + native backend + emulator + vectors tool)
  libklemu.so         the emulator (and the trap layer's API) as a shared library
  libklemu-preload.so the same plus klpreload.c: LD_PRELOAD it to run Key Locker
                      programs on a CPU without Key Locker (docs/trap-mode.md)
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from harness import proc
from harness.errors import BuildError, CommandError
from harness.paths import CSRC_DIR, cache_dir
from harness.timeouts import active as active_timeouts

log = logging.getLogger(__name__)

COMMON_FLAGS = ("-O2", "-std=gnu11", "-Wall", "-Wextra", "-Wno-unused-parameter", "-g")


@dataclass(frozen=True)
class Target:
    name: str
    patterns: tuple[str, ...]
    flags: tuple[str, ...]


TARGETS: dict[str, Target] = {
    "klprobe": Target("klprobe", ("klprobe.c", "probe_*.c", "klnative.c", "klvectors.c", "klemu*.c"),
                      ("-static", "-pthread")),
    "libklemu.so": Target("libklemu.so", ("klemu*.c",), ("-shared", "-fPIC", "-pthread")),
    # The constructor that installs the trap and the sigaction()/signal() interposers live in
    # klpreload.c, outside the klemu*.c glob, so the static probe and libklemu.so never carry them.
    # -Bsymbolic: the library's own calls never bind to same-named symbols of the program.
    "libklemu-preload.so": Target("libklemu-preload.so", ("klemu*.c", "klpreload.c"),
                                  ("-shared", "-fPIC", "-pthread", "-Wl,-Bsymbolic")),
}


def compiler() -> str:
    return os.environ.get("CC", "cc")


def compiler_version() -> str:
    """``$CC --version``'s output: every build key (the probe's, klhelper's, the guest kernel's) includes it."""
    return _version_of(compiler())


@functools.cache
def _version_of(cc: str) -> str:
    """Asked once per process and compiler: one host has one, and each build asked again."""
    try:
        return proc.run([cc, "--version"], timeout=active_timeouts().tool).stdout
    except CommandError as err:
        raise BuildError(f"C compiler {cc!r} does not run: {err} (install gcc or set CC)") from err


def sources(target: Target) -> list[Path]:
    found: set[Path] = set()
    for pattern in target.patterns:
        found.update(CSRC_DIR.glob(pattern))
    if not found:
        raise BuildError(f"no C sources for {target.name} in {CSRC_DIR} (patterns {target.patterns})")
    return sorted(found)


def _fingerprint(target: Target, srcs: list[Path]) -> str:
    h = hashlib.sha256()
    h.update(repr((target, COMMON_FLAGS)).encode())
    h.update(compiler_version().encode())
    for path in sorted(CSRC_DIR.glob("*.h")) + srcs:
        h.update(path.name.encode())
        h.update(path.read_bytes())
    return h.hexdigest()[:16]


def build(name: str, *, force: bool = False) -> Path:
    """Return the path of an up-to-date build of target ``name``."""
    try:
        target = TARGETS[name]
    except KeyError:
        raise BuildError(f"unknown build target {name!r}; known: {', '.join(TARGETS)}") from None
    srcs = sources(target)
    key = _fingerprint(target, srcs)
    out_dir = cache_dir() / "build" / f"{name}-{key}"
    out = out_dir / name
    if out.exists() and not force:
        return out
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=out_dir.parent))
    argv = [compiler(), *COMMON_FLAGS, *target.flags, f"-I{CSRC_DIR}", "-o", str(tmp / name),
            *map(str, srcs)]
    log.info("building %s: %s", name, " ".join(argv))
    try:
        proc.run(argv, timeout=active_timeouts().compile)
    except CommandError as err:
        shutil.rmtree(tmp, ignore_errors=True)
        raise BuildError(f"building {name} failed: {err}") from err
    (tmp / "build-command.txt").write_text(" ".join(argv) + "\n")
    try:
        tmp.rename(out_dir)
    except OSError:
        # Another run finished the same build first; theirs is identical.
        shutil.rmtree(tmp, ignore_errors=True)
    return out
