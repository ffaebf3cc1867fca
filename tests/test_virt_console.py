"""ConsoleLog: marks, waits against a deadline, and what a failed wait tells the reader."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from harness.errors import GuestError
from harness.virt.console import ConsoleLog


def write_later(path: Path, data: bytes, delay: float) -> threading.Thread:
    def run() -> None:
        time.sleep(delay)
        with path.open("ab") as f:
            f.write(data)
    t = threading.Thread(target=run)
    t.start()
    return t


def test_reset_makes_an_empty_root_only_file(tmp_path: Path) -> None:
    log = ConsoleLog(tmp_path / "sub" / "console.log")
    log.reset()
    assert log.size() == 0 and (log.path.stat().st_mode & 0o777) == 0o600


def test_wait_sees_a_marker_written_later(tmp_path: Path) -> None:
    log = ConsoleLog(tmp_path / "c.log")
    log.reset()
    t = write_later(log.path, b"booting\r\nklh: ssh ready 4.1s\r\n", 0.3)
    took = log.wait_for("klh: ssh ready", timeout=5, what="boot")
    t.join()
    assert 0.2 < took < 3


def test_wait_after_a_mark_ignores_the_earlier_boot(tmp_path: Path) -> None:
    log = ConsoleLog(tmp_path / "c.log")
    log.path.write_bytes(b"klh: ssh ready\n")
    mark = log.mark()
    with pytest.raises(GuestError, match=r"timed out after 0\.\ds waiting for 'klh: ssh ready' on the console "
                                         r"\(reboot\); last: NotYet: no console output at all"):
        log.wait_for("klh: ssh ready", after=mark, timeout=0.2, what="reboot")


def test_timeout_message_has_tail_and_likely_cause(tmp_path: Path) -> None:
    log = ConsoleLog(tmp_path / "c.log")
    log.path.write_bytes(b"".join(b"line %d\n" % i for i in range(100)))
    with pytest.raises(GuestError) as exc:
        log.wait_for("never", timeout=0.2, what="guest g: boot", hint="the guest runs under TCG")
    msg = str(exc.value)
    assert msg.startswith("timed out after 0.")
    assert "waiting for 'never' on the console (guest g: boot); last: NotYet: 790 bytes of console output" in msg
    assert "\nlikely cause: the guest runs under TCG\n" in msg
    assert "line 99" in msg and "line 69" not in msg and str(log.path) in msg


def test_panic_ends_the_wait_at_once(tmp_path: Path) -> None:
    log = ConsoleLog(tmp_path / "c.log")
    log.path.write_bytes(b"Kernel panic - not syncing: VFS: Unable to mount root fs\n")
    start = time.monotonic()
    with pytest.raises(GuestError, match="kernel panicked"):
        log.wait_for("klh: ssh ready", timeout=30, what="boot")
    assert time.monotonic() - start < 1


def test_a_stopped_domain_ends_the_wait_at_once(tmp_path: Path) -> None:
    log = ConsoleLog(tmp_path / "c.log")
    log.reset()
    with pytest.raises(GuestError, match=r"the domain stopped \(gone\)"):
        log.wait_for("klh: ssh ready", timeout=30, what="boot", stopped=lambda: "gone")


def test_rotated_log_is_read_from_the_start(tmp_path: Path) -> None:
    log = ConsoleLog(tmp_path / "c.log")
    log.path.write_bytes(b"klh: ssh ready\n")
    assert log.read(after=10_000) == b"klh: ssh ready\n"
