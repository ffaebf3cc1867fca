"""harness.proc: a timeout kills the command's whole process group; both result kinds read alike."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from harness import proc
from harness.errors import CommandError, CommandTimeout
from harness.guest.ssh import RemoteResult
from harness.wait import NotYet, wait_for


def _gone(pid: int) -> None:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return
    raise NotYet(f"pid {pid} still alive")


def test_a_timeout_kills_the_grandchildren_too(tmp_path: Path) -> None:
    pidfile = tmp_path / "grandchild.pid"
    script = f"sleep 300 & echo $! > {pidfile}; wait"  # the shell waits on a child of its own
    with pytest.raises(CommandTimeout, match=r"timed out after 1\.\d+s"):
        proc.run(["sh", "-c", script], timeout=1, check=False)
    grandchild = int(pidfile.read_text())
    wait_for("the grandchild to die", lambda: _gone(grandchild), timeout=10)


def test_a_failed_command_names_itself_its_exit_and_its_stderr_tail() -> None:
    with pytest.raises(CommandError) as err:
        proc.run(["sh", "-c", "echo one >&2; echo two >&2; exit 3"], timeout=30)
    assert str(err.value).startswith("`sh -c 'echo one >&2; echo two >&2; exit 3'` exited 3 after ")
    assert str(err.value).endswith("\n  one\n  two")
    assert proc.run(["sh", "-c", "exit 3"], timeout=30, check=False).returncode == 3


def test_a_guest_command_and_a_local_one_describe_their_end_alike() -> None:
    local = proc.CommandResult(("klprobe", "run"), 1, "", "bad\n", 0.25)
    remote = RemoteResult("klprobe run", 1, b"", b"bad\n", 0.25)
    assert local.describe() == remote.describe() == "`klprobe run` exited 1 after 0.2s\n  bad"
    assert not local.ok and not remote.ok
    hung = RemoteResult("sleep 9", -1, b"", b"", 9.0, timed_out=True)
    assert hung.describe() == "`sleep 9` timed out after 9.0s" and not hung.ok
    assert proc.CommandResult(("true",), 0, "out\n", "", 0.0).ok
