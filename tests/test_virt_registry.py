"""RunGuests: teardown of every guest (even when one fails) and SIGTERM/SIGINT handling."""

from __future__ import annotations

import os
import signal
import time
from typing import Any

import pytest

from harness.errors import VirtError
from harness.virt.registry import RunGuests, RunInterrupted


class FakeGuest:
    def __init__(self, name: str, log: list[str], fail: bool = False, key: str = "k") -> None:
        self.name, self.log, self.fail, self.torn_down = name, log, fail, False
        self.meta = type("M", (), {"spec_key": key})()

    def teardown(self, *, keep_console: bool = False) -> None:
        self.log.append(self.name)
        self.torn_down = True
        if self.fail:
            raise VirtError(f"teardown of {self.name} incomplete: destroy: boom")


def test_teardown_all_tries_every_guest_newest_first() -> None:
    log: list[str] = []
    reg = RunGuests("r", handle_signals=False)
    for n, fail in (("a", False), ("b", True), ("c", False)):
        reg.add(FakeGuest(n, log, fail))  # type: ignore[arg-type]
    errors = reg.teardown_all()
    assert log == ["c", "b", "a"]
    assert errors == ["teardown of b incomplete: destroy: boom"]
    assert len(reg) == 0


def test_exit_raises_the_collected_failures_after_a_clean_block() -> None:
    log: list[str] = []
    with (pytest.raises(VirtError, match="teardown of run r incomplete:\n  teardown of b"),
          RunGuests("r", handle_signals=False) as reg):
        reg.add(FakeGuest("b", log, fail=True))  # type: ignore[arg-type]
        reg.add(FakeGuest("a", log))  # type: ignore[arg-type]
    assert log == ["a", "b"]


def test_exit_keeps_the_original_exception_when_teardown_also_fails() -> None:
    with pytest.raises(ZeroDivisionError), RunGuests("r", handle_signals=False) as reg:
        reg.add(FakeGuest("b", [], fail=True))  # type: ignore[arg-type]
        1 / 0  # noqa: B018


def test_sigterm_unwinds_and_tears_down_then_restores_handlers() -> None:
    log: list[str] = []
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(RunInterrupted, match="SIGTERM"), RunGuests("r") as reg:
        reg.add(FakeGuest("a", log))  # type: ignore[arg-type]
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)  # the handler raises before this ends
    assert log == ["a"]
    assert signal.getsignal(signal.SIGTERM) is before


def test_sigint_is_a_keyboard_interrupt_for_the_cli() -> None:
    with pytest.raises(KeyboardInterrupt), RunGuests("r") as reg:
        reg.add(FakeGuest("a", []))  # type: ignore[arg-type]
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(5)


def test_a_signal_during_teardown_does_not_cut_it_short() -> None:
    log: list[str] = []

    class SignalsDuringTeardown(FakeGuest):
        def teardown(self, *, keep_console: bool = False) -> None:
            os.kill(os.getpid(), signal.SIGTERM)
            super().teardown()

    reg = RunGuests("r")
    with reg:
        reg.add(FakeGuest("a", log))  # type: ignore[arg-type]
        reg.add(SignalsDuringTeardown("b", log))  # type: ignore[arg-type]
    assert log == ["b", "a"] and reg.deferred_signals == [signal.SIGTERM]


def test_discard_forgets_a_guest() -> None:
    reg = RunGuests("r", handle_signals=False)
    g: Any = FakeGuest("a", [], key="abc")
    reg.add(g)
    assert list(reg) == [g]
    reg.discard(g)
    assert list(reg) == [] and reg.teardown_all() == []
