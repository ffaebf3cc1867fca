"""What a run tells its progress display: guest phases and cell outcomes, as typed values.

Why typed events passed to an object handed in: the session, the guest boot code and the
plugin emit them where the thing happens (no output is parsed afterwards), and a test hands in
a list-backed fake.  Emitting never raises and never blocks for long: a display must not be
able to fail or slow a run, so implementations catch their own errors.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal, Protocol

# The phases a guest goes through, in order; "event" is a lifecycle event on a dedicated guest.
Phase = Literal["image", "boot", "ssh", "probe", "event"]


@dataclass(frozen=True)
class GuestPhase:
    """``guest`` (a domain of the run: a pooled guest, or ``<guest>-<event>``) entered ``phase``."""

    guest: str
    phase: Phase
    detail: str = ""  # the image name, the lifecycle event


@dataclass(frozen=True)
class Planned:
    """The run's cells, known once pytest collected them: how many tests each guest line will get."""

    run_id: str
    tests: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class CellDone:
    """One cell (test) of ``guest`` finished with ``outcome`` (passed, failed, error, skipped)."""

    guest: str
    outcome: str
    name: str  # check id, lifecycle event or test function
    reason: str = ""


@dataclass(frozen=True)
class RunDone:
    """The run ended (guests torn down) with the record's ``status``."""

    status: str


RunEvent = GuestPhase | Planned | CellDone | RunDone


class Progress(Protocol):
    """Where a run's events go."""

    def emit(self, event: RunEvent) -> None: ...


class NullProgress:
    """The default: a run nobody watches (``pytest testcases``, ``klharness run -q``)."""

    def emit(self, event: RunEvent) -> None:
        return None


NULL_PROGRESS = NullProgress()
