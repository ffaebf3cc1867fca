"""The JSON run record, rewritten atomically after every change.

Why incremental and atomic: a run killed with SIGKILL must leave a readable
record of everything it finished.  Each update writes a temporary file in
the same directory, fsyncs it and renames it over the record, so a reader
sees the old or the new record, never half of one.

What a record holds, and how it is read back, is harness.results.schema:
:func:`load_record` returns a typed :class:`RunRecord`; the recorder builds the dict.
"""

from __future__ import annotations

import copy
import json
import os
import secrets
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from harness.errors import HostError
from harness.results.schema import FAILING as FAILING  # re-exported: the record's vocabulary is the schema's
from harness.results.schema import SCHEMA, SCHEMA_VERSION, RunRecord


def new_run_id() -> str:
    """``YYYYmmdd-HHMMSS-xxxx``: sortable, unique enough for two runs in one second."""
    return f"{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(2)}"


def iso_now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def write_atomic(path: Path, data: bytes, *, mode: int = 0o644) -> None:
    """Write ``data`` to ``path`` so readers never see a partial file; clear errors on a full/read-only disk."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        raise HostError(f"{path}: cannot write results: {err.strerror} (free space or choose another "
                        "results directory with run.results / KLHARNESS_RESULTS)") from err


class RunRecorder:
    """Holds the run record in memory and persists it after each update."""

    def __init__(self, directory: Path, run_id: str, header: dict[str, Any], *, persist: bool = True) -> None:
        self.directory = directory
        self.path = directory / "record.json"
        self.persist = persist  # False: keep it in memory only (pytest --collect-only writes no results)
        self._lock = threading.Lock()
        if persist:
            try:
                directory.mkdir(parents=True, exist_ok=True)
            except OSError as err:
                raise HostError(f"{directory}: cannot create the results directory: {err.strerror}") from err
        self._data: dict[str, Any] = {
            "schema": SCHEMA,
            "schema_version": SCHEMA_VERSION,
            "run_id": run_id,
            "started": iso_now(),
            "finished": None,
            "status": "running",
            "pid": os.getpid(),
            **header,
            "guests": {},
            "tests": [],
        }
        self._flush()

    def update(self, change: Callable[[dict[str, Any]], None]) -> None:
        with self._lock:
            change(self._data)
            self._flush()

    def set_guest(self, name: str, **fields: Any) -> None:
        def apply(d: dict[str, Any]) -> None:
            d["guests"].setdefault(name, {}).update(fields)
        self.update(apply)

    def add_test(self, entry: dict[str, Any]) -> None:
        self.update(lambda d: d["tests"].append(entry))

    def finish(self, status: str, **fields: Any) -> None:
        def apply(d: dict[str, Any]) -> None:
            d["status"] = status
            d["finished"] = iso_now()
            d.update(fields)
        self.update(apply)

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return copy.deepcopy(self._data)

    def _flush(self) -> None:
        if not self.persist:
            return
        write_atomic(self.path, json.dumps(self._data, indent=1, sort_keys=False, default=str).encode())


def load_record(path: Path) -> RunRecord:
    """Read a run record (a file or a run directory), checked against the schema (harness.results.schema)."""
    if path.is_dir():
        path = path / "record.json"
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise HostError(f"{path}: no run record here") from None
    except json.JSONDecodeError as err:
        raise HostError(f"{path}: not a readable run record: {err}") from err
    return RunRecord.from_json(data, source=path)
