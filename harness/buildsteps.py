"""Named steps of a long host build (qemu-kl, our guest kernel), each logged, each failure one BuildError.

Why one piece: a build that takes minutes must leave a log a user can read, and its error must say
which step failed, its last lines and where the whole log is — the same for every such build.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, Any, TypeVar

from harness import proc
from harness.errors import BuildError, CommandError, CommandTimeout

T = TypeVar("T")


class BuildSteps:
    """Run the named steps of build ``name``, logging each into ``logf`` (the file at ``log_path``)."""

    def __init__(self, name: str, logf: IO[str], log_path: Path,
                 progress: Callable[[str], object] = lambda line: None) -> None:
        self.name, self.logf, self.log_path, self.progress = name, logf, log_path, progress

    def do(self, step: str, fn: Callable[[], T]) -> T:
        """Run ``fn`` as ``step``: a BuildError, CommandError or OSError of it names the step and the log."""
        self.progress(f"{self.name}: {step}")
        self.logf.write(f"== {step}\n")
        self.logf.flush()
        start = time.monotonic()
        try:
            result = fn()
        except (BuildError, CommandError, OSError) as err:
            self.logf.write(f"FAILED: {err}\n")
            raise BuildError(f"{self.name}: step '{step}' failed: {first_lines(str(err))} "
                             f"(log: {self.log_path})") from err
        self.logf.write(f"== {step}: done in {time.monotonic() - start:.1f} s\n")
        return result

    def run(self, step: str, argv: list[str], cwd: Path | None, timeout: float,
            env: Mapping[str, str] | None = None) -> None:
        """One command as ``step``, its output into the log."""
        self.do(step, lambda: run_logged(argv, cwd, timeout, self.logf, env))


def run_logged(argv: list[str], cwd: Path | None, timeout: float, logf: IO[str],
               env: Mapping[str, str] | None = None) -> None:
    """Run ``argv``, append its output to ``logf``; BuildError (its description) when it fails."""
    kwargs: dict[str, Any] = {"env": env} if env is not None else {}
    try:
        res = proc.run(argv, cwd=cwd, timeout=timeout, check=False, **kwargs)
    except CommandTimeout as err:
        logf.write(str(err) + "\n")
        raise
    logf.write(res.stdout)
    logf.write(res.stderr)
    if res.returncode != 0:
        raise BuildError(res.describe())


def first_lines(text: str, n: int = 6) -> str:
    """The first line and the last ``n - 1`` of ``text``: what a failed step's error shows."""
    lines = text.strip().splitlines()
    return "\n  ".join(lines[:1] + lines[1:][-(n - 1):])
