"""harness.wait: a budget shared by several waits, and retrying only a lost race."""

from __future__ import annotations

import time

import pytest

from harness.errors import GuestError, HostError
from harness.wait import Deadline, NotYet, retry_lost_race, wait_for


def never() -> None:
    raise NotYet("not yet")


def test_a_second_wait_gets_only_what_the_first_left_of_a_shared_deadline() -> None:
    budget = Deadline(0.6, "boot")
    calls = iter(range(1000))

    def ready_on_the_fourth_poll() -> int:
        if next(calls) < 3:
            raise NotYet("no marker")
        return 1

    assert wait_for("the marker", ready_on_the_fourth_poll, timeout=budget, initial=0.1, cap=0.1) == 1
    left = budget.remaining()
    assert 0 < left < 0.6
    start = time.monotonic()
    with pytest.raises(GuestError, match=r"waiting for the greeting \(the boot budget of 0\.6s \(0\.\d+s spent\)\)"):
        wait_for("the greeting", never, timeout=budget, initial=0.02, cap=0.02)
    assert time.monotonic() - start < left + 0.25  # not a fresh 0.6 s of its own


def test_a_spent_deadline_still_polls_once() -> None:
    budget = Deadline(0.0, "boot")
    assert wait_for("it", lambda: "ok", timeout=budget) == "ok"
    with pytest.raises(GuestError, match="timed out"):
        wait_for("it", never, timeout=budget)


class Lost(HostError):
    pass


def test_a_lost_race_is_retried_and_the_result_returned() -> None:
    tries: list[int] = []

    def attempt(n: int) -> str:
        tries.append(n)
        if n < 3:
            raise Lost(f"port taken ({n})")
        return "created"

    assert retry_lost_race("creating", attempt, attempts=3, lost=lambda e: isinstance(e, Lost)) == "created"
    assert tries == [1, 2, 3]


def test_any_other_error_and_the_last_lost_race_propagate_at_once() -> None:
    tries: list[int] = []

    def other(n: int) -> None:
        tries.append(n)
        raise ValueError("not a race")

    with pytest.raises(ValueError):
        retry_lost_race("creating", other, attempts=3, lost=lambda e: isinstance(e, Lost))
    assert tries == [1]

    def always_lost(n: int) -> None:
        raise Lost(f"port taken ({n})")

    with pytest.raises(Lost, match=r"\(2\)"):
        retry_lost_race("creating", always_lost, attempts=2, lost=lambda e: isinstance(e, Lost))
