"""What a run keeps of each guest: its files under ``<results>/guests/<name>/`` and the keep policy.

Why one place: "keep" decides both whether a guest's domain and disk survive teardown and
whether its artifacts (probe document, live domain XML, console) stay in the results; the two
must never disagree, so the policy and the directory live here and nowhere else.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from harness.config.model import KEEP_POLICIES


@dataclass(frozen=True)
class Artifacts:
    """The run's artifact directory and its keep policy (one of ``KEEP_POLICIES``)."""

    def __post_init__(self) -> None:
        assert self.keep in KEEP_POLICIES, self.keep  # config, CLI and plugin only offer these

    results: Path
    keep: str

    def guest_dir(self, guest: str) -> Path:
        return self.results / "guests" / guest

    def write(self, guest: str, filename: str, text: str) -> Path:
        """Write one artifact of ``guest`` (kept or discarded with the guest, see :meth:`settle`)."""
        d = self.guest_dir(guest)
        d.mkdir(parents=True, exist_ok=True)
        path = d / filename
        path.write_text(text)
        return path

    def keeps(self, *, failed: bool) -> bool:
        """Whether a guest that ``failed`` (or not) is kept: its domain, its disk and its artifacts."""
        return self.keep == "all" or (self.keep == "failed" and failed)

    def settle(self, guest: str, *, kept: bool) -> None:
        """Remove the artifacts of a guest that is not kept."""
        if not kept:
            shutil.rmtree(self.guest_dir(guest), ignore_errors=True)
