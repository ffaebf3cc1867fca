"""What ``klharness rerun RESULTS/RUN [--failed]`` runs: the recorded invocation again, linked to it.

Why node ids for ``--failed``: the record keeps each cell's pytest node id, relative to the
rootdir the run recorded, so the rerun selects exactly those cells; a ``-k`` expression could
match more.  The new run goes next to the old one (the directory holding RUN) unless told
otherwise, and its record says which run it repeats (``rerun_of``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from harness.errors import ConfigError
from harness.paths import REPO_DIR
from harness.results.invocation import Invocation
from harness.results.schema import RerunOf, RunRecord, failing


def failed_cells(record: RunRecord) -> list[str]:
    """Node ids of the record's failed and errored tests, in the order they ran."""
    out: list[str] = []
    for t in record.tests:
        if failing(t) and t.nodeid not in out:
            out.append(t.nodeid)
    return out


def rerun_invocation(record: RunRecord, run_dir: Path, *, failed_only: bool, uri: str | None = None,
                     results: Path | None = None, argv: Sequence[str] = ()) -> Invocation | None:
    """The invocation that repeats ``record`` (all of it, or its failing cells); None: nothing failed."""
    where = str(run_dir / "record.json")
    old = Invocation.from_record(record, where)
    if uri is None and old.secret_redacted:
        raise ConfigError(f"{where}: invocation.uri: {old.uri} lost its password to redaction in the record "
                          "(records never keep secrets): give the URI again with --uri")
    tests, keyword = old.tests, old.keyword
    if failed_only:
        cells = failed_cells(record)
        if not cells:
            return None
        root = Path(old.rootdir) if old.rootdir else REPO_DIR
        tests, keyword = tuple(str(root / nodeid) for nodeid in cells), None
    return replace(old, uri=uri if uri is not None else old.uri, results=str((results or run_dir.parent).resolve()),
                   tests=tests, keyword=keyword, argv=tuple(argv), cwd=os.getcwd(),
                   rerun_of=RerunOf(record.run_id, where, failed_only))
