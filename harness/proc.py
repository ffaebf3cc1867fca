"""Run local commands: the only place klharness starts a subprocess.

Why one helper: every command needs a timeout, an argv list (never a shell
string), a log line, and a process-group kill on timeout so that nothing a
command spawned outlives it.  ``ruff`` bans ``subprocess`` everywhere else.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shlex
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from harness.errors import CommandError, CommandTimeout
from harness.timeouts import active as active_timeouts

log = logging.getLogger(__name__)


class Ended:
    """How a finished command ended, wherever it ran: here (:class:`CommandResult`) or in a guest
    over SSH (``harness.guest.ssh.RemoteResult``).

    Why shared: "did it work" and the one line an error message quotes must read the same for
    both, so a reader of any failure sees the command, how it ended and the stderr tail.
    """

    returncode: int
    duration: float
    timed_out: bool

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.timed_out

    def command_line(self) -> str:
        raise NotImplementedError

    def diagnostics(self) -> str:
        """The text whose tail an error quotes (stderr; stdout where stderr is empty)."""
        raise NotImplementedError

    def describe(self) -> str:
        """One line naming the command and how it ended, plus the last lines of its diagnostics."""
        how = "timed out" if self.timed_out else f"exited {self.returncode}"
        tail = self.diagnostics().strip().splitlines()[-5:]
        detail = ("\n  " + "\n  ".join(tail)) if tail else ""
        return f"`{self.command_line()}` {how} after {self.duration:.1f}s{detail}"


@dataclass(frozen=True)
class CommandResult(Ended):
    """What a finished local command did."""

    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str
    duration: float
    timed_out: bool = False

    def command_line(self) -> str:
        return shlex.join(self.argv)

    def diagnostics(self) -> str:
        return self.stderr or self.stdout


def run(
    argv: Sequence[str | os.PathLike[str]],
    *,
    timeout: float,
    check: bool = True,
    cwd: str | Path | None = None,
    env: Mapping[str, str] | None = None,
    input_text: str | None = None,
    input_bytes: bytes | None = None,
) -> CommandResult:
    """Run ``argv`` and wait at most ``timeout`` seconds.

    On timeout the whole process group is killed and :class:`CommandTimeout`
    is raised (always, even with ``check=False``: a hung command is never a
    normal result).  With ``check=True`` a non-zero exit raises
    :class:`CommandError` carrying the stderr tail.
    """
    args = tuple(os.fspath(a) for a in argv)
    log.debug("run (timeout %.0fs): %s", timeout, shlex.join(args))
    full_env = None if env is None else {**os.environ, **env}
    start = time.monotonic()
    proc = subprocess.Popen(
        args,
        cwd=cwd,
        env=full_env,
        stdin=subprocess.PIPE if (input_text is not None or input_bytes is not None) else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    data = input_bytes if input_bytes is not None else (input_text.encode() if input_text is not None else None)
    try:
        out, err = proc.communicate(data, timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        out, err = proc.communicate()
        result = CommandResult(args, -9, out.decode(errors="replace"), err.decode(errors="replace"),
                               time.monotonic() - start, timed_out=True)
        raise CommandTimeout(result.describe()) from None
    except BaseException:
        _kill_group(proc)
        proc.wait()
        raise
    result = CommandResult(args, proc.returncode, out.decode(errors="replace"), err.decode(errors="replace"),
                           time.monotonic() - start)
    if check and result.returncode != 0:
        raise CommandError(result.describe())
    return result


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)


class Background:
    """A long-lived helper process (a daemon, a console reader) as a context manager.

    The process runs in its own group; leaving the ``with`` block terminates
    the group, waits ``grace`` seconds, then kills it.
    """

    def __init__(self, argv: Sequence[str | os.PathLike[str]], *, stdout_path: Path | None = None,
                 env: Mapping[str, str] | None = None, grace: float | None = None) -> None:
        self.argv = tuple(os.fspath(a) for a in argv)
        self.stdout_path = stdout_path
        self.env = None if env is None else {**os.environ, **env}
        self.grace = grace if grace is not None else active_timeouts().process_stop
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Background:
        log.debug("start background: %s", shlex.join(self.argv))
        out = open(self.stdout_path, "wb") if self.stdout_path else subprocess.DEVNULL
        try:
            self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=out,
                                         stderr=subprocess.STDOUT, env=self.env, start_new_session=True)
        finally:
            if self.stdout_path:
                out.close()  # type: ignore[union-attr]
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=self.grace)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            _kill_group(proc)
            proc.wait()
