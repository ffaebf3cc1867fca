"""One command line that reproduces one cell of a run: ``klharness run CONFIG --profile P -k …``.

Why a command per failure: the first thing pasted into a bug report.  It names the run's config
(relative to the repository when it is in it), its profile (by name, or by file for a private
copy), its URI when one was given, and a ``-k`` expression that is the test's own name with its
parameters (``test_handle_across_event[kl-full:reboot]``): pytest matches it as a substring of
the test's name, and the brackets make it select that cell alone.  A test outside the catalogue
(a run of other test files through pytest) or a name ``-k`` cannot express falls back to its node
id through ``pytest``.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

from harness.errors import KlharnessError
from harness.paths import REPO_DIR
from harness.results.invocation import Invocation
from harness.results.schema import RunRecord, TestEntry

# What pytest's -k lexer takes as one identifier (_pytest/mark/expression.py).
_K_IDENT = re.compile(r"(?:\w|:|\+|-|\.|\[|\]|\\|/)+")
_K_RESERVED = frozenset({"and", "or", "not", "true", "false", "none"})
CATALOGUE = REPO_DIR / "testcases"  # what klharness run runs


def _shown(path: str) -> str:
    try:
        return str(Path(path).resolve().relative_to(REPO_DIR))
    except ValueError:
        return path


def cell_name(nodeid: str) -> str:
    """The test's name with its parameters: the last part of its node id."""
    return nodeid.rsplit("::", 1)[-1]


def reproduce_command(record: RunRecord, test: TestEntry) -> str:
    """The shell line that runs ``test`` of ``record`` alone, with the run's config, profile and URI."""
    try:
        inv = Invocation.from_record(record, "record")
    except KlharnessError:
        inv = Invocation(config="CONFIG" if record.config is None else record.config)
    profile = inv.profile or record.profile or ""
    nodeid = test.nodeid
    name = cell_name(nodeid)
    options = ["--profile", profile] if profile else []
    if inv.uri:
        options += ["--uri", inv.uri]
    root = Path(inv.rootdir) if inv.rootdir else REPO_DIR
    in_catalogue = (root / nodeid.split("::", 1)[0]).resolve().is_relative_to(CATALOGUE)
    if in_catalogue and _K_IDENT.fullmatch(name) and name.lower() not in _K_RESERVED:
        return shlex.join(["klharness", "run", _shown(inv.config), *options, "-k", name])
    # Not the catalogue klharness run runs, or a name -k cannot say: pytest with the node id.
    target = nodeid if root.resolve() == REPO_DIR else f"{root}/{nodeid}"
    kl = [o.replace("--", "--kl-", 1) + "=" + v for o, v in zip(options[::2], options[1::2], strict=True)]
    return shlex.join(["pytest", target, f"--kl-config={_shown(inv.config)}", *kl])
