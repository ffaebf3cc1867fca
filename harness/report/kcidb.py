"""A run record as KCIDB JSON (KernelCI's common results database), schema v5.3.

Why this shape: KCIDB knows checkouts (the code under test), builds of them and tests on a
build.  A klharness run tests a stack (guest kernel and image, VMM, host KVM) rather than one
kernel commit, so the run is one checkout and one build — its ids are the run id under the
submitter's ``origin`` — and each test of the record is one KCIDB test.  What KCIDB has no field
for goes into ``misc``: the check id or lifecycle event, the guest, the provenance of the
observation (``native``, ``vmm``, ``emulated``, …: never to be mistaken for one another), the
profile, the test's timings and its guest's boot timings.  With a base URL (where the run
directory is published) the record and each test's kept console log become ``output_files``.

Statuses: passed PASS, failed FAIL, skipped SKIP; a setup error ERROR; a failure the plugin
marked as infrastructure (the host or harness broke, not the stack) ERROR, or MISS when it
struck in setup (the test never ran).  Validated in the tests with the official ``kcidb-io``.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

from harness import __version__
from harness.errors import ConfigError
from harness.report import model

VERSION = {"major": 5, "minor": 3}
ORIGIN = re.compile(r"[a-z0-9_]+")
_PATH_PART = re.compile(r"[^a-zA-Z0-9_-]+")
SUITE = "keylocker"


def check_origin(origin: str) -> str:
    if not ORIGIN.fullmatch(origin):
        raise ConfigError(f"--origin {origin!r}: a KCIDB origin is lowercase letters, digits and _ only "
                          "(the name of your CI system, e.g. klharness_lab1)")
    return origin


def check_base_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https", "file") or (parts.scheme != "file" and not parts.netloc):
        raise ConfigError(f"--base-url {url!r}: not an absolute http(s) or file URL "
                          "(where the run directory is published, e.g. https://ci.example.org/klharness/RUN-ID)")
    return url.rstrip("/")


def _time(value: Any) -> str | None:
    """RFC 3339 from the record's ``2026-11-26T14:12:03+0000`` or an epoch float."""
    try:
        if isinstance(value, int | float):
            return datetime.fromtimestamp(value, UTC).isoformat()
        if isinstance(value, str):
            return datetime.strptime(value, "%Y-%m-%dT%H:%M:%S%z").isoformat()
    except (ValueError, OverflowError, OSError):
        return None
    return None


def _or(value: str | None, default: str) -> str:
    return default if value is None else value


def _clean(d: dict[str, Any]) -> dict[str, Any]:
    """KCIDB allows no nulls: leave unknown values out."""
    return {k: v for k, v in d.items() if v is not None and v != {} and v != []}


def kcidb_path(test: model.Test) -> str:
    """``keylocker.instructions.ud.loadiwkey``: suite, test file, then the check id or event (or function)."""
    module = Path(test.nodeid.split("::", 1)[0]).stem.removeprefix("test_") or "catalogue"
    leaf = test.check or test.event or test.test.removeprefix("test_") or "test"
    parts = [SUITE, module, *leaf.split(".")]
    return ".".join(_PATH_PART.sub("_", p).strip("_") or "_" for p in parts)


def status(test: model.Test) -> str:
    if test.outcome == "passed":
        return "PASS"
    if test.outcome == "skipped":
        return "SKIP"
    if test.outcome == "error":
        return "MISS" if test.infrastructure else "ERROR"
    return "ERROR" if test.infrastructure else "FAIL"


def guest_entry(record: model.Record, test: model.Test) -> tuple[str, model.Guest]:
    """The guest the test ran on: a lifecycle event's own ``<guest>-<event>``, else the pooled one."""
    own = f"{test.guest}-{test.event}" if test.event else ""
    name = own if own in record.guests else test.guest
    return name, record.guest(name)


def to_kcidb(record: model.Record, *, origin: str, base_url: str | None = None,
             run_dir: Path | None = None) -> dict[str, Any]:
    """The KCIDB document of ``record`` (``run_dir``: where its kept artifacts are, for output_files)."""
    check_origin(origin)
    base = check_base_url(base_url) if base_url else None
    run_id = record.run_id
    ident = f"{origin}:{run_id}"
    host = record.host or {}
    virt = host.get("libvirt", {}) if isinstance(host.get("libvirt"), dict) else {}
    started = _time(record.started)
    config, profile = _or(record.config, "?"), _or(record.profile, "?")
    checkout = _clean({
        "id": ident, "origin": origin, "start_time": started,
        "comment": f"klharness run {run_id}: config {config}, profile {profile}",
        "misc": _clean({"run_id": run_id, "config": record.config, "profile": record.profile,
                        "profile_source": record.profile_source, "uri": record.uri, "status": record.status,
                        "rerun_of": record.rerun_of.to_json() if record.rerun_of else None,
                        "klharness": __version__}),
    })
    build = _clean({
        "id": ident, "checkout_id": ident, "origin": origin, "start_time": started, "architecture": "x86_64",
        "comment": "guest images, probe and VMM of the run",
        "status": "PASS" if record.images else None,
        "output_files": [{"name": "record.json", "url": f"{base}/record.json"}] if base else None,
        "misc": _clean({"images": record.images, "accel": host.get("accel"), "host_kernel": host.get("kernel"),
                        "libvirt": virt.get("libvirt"), "qemu": virt.get("qemu"), "hostname": virt.get("hostname")}),
    })
    tests = [_test(record, t, ident, origin, base, run_dir) for t in record.tests]
    return {"version": dict(VERSION), "checkouts": [checkout], "builds": [build], "tests": tests}


def _test(record: model.Record, t: model.Test, build_id: str, origin: str, base: str | None,
          run_dir: Path | None) -> dict[str, Any]:
    name, g = guest_entry(record, t)
    duration, finished = t.duration, t.finished
    start = finished - duration if finished is not None and duration is not None else None
    files = []
    if base is not None:
        console = Path("guests") / name / "console.log"
        if run_dir is not None and (run_dir / console).is_file():
            files.append({"name": "console.log", "url": f"{base}/{quote(console.as_posix())}"})
        files.append({"name": "record.json", "url": f"{base}/record.json"})
    env = _clean({"guest": name, "plan": t.guest, "host": g.host, "domain": g.domain,
                  "backend": g.backend, "vmm": g.vmm, "accel": g.accel or model.accel(record)})
    return _clean({
        "id": f"{build_id}:{t.nodeid}",
        "build_id": build_id,
        "origin": origin,
        "path": kcidb_path(t),
        "status": status(t),
        "start_time": _time(start),
        "duration": float(duration) if duration is not None else None,
        "comment": model.one_line(f"{model.label(t)}: {t.reason}" if t.reason else model.label(t),
                                  400).replace("\0", ""),
        "environment": {"comment": f"guest {name} ({env.get('backend', '?')} Key Locker, {env.get('accel', '?')})",
                        "misc": env},
        "output_files": files or None,
        "misc": _clean({"nodeid": t.nodeid, "guest": t.guest, "check": t.check, "event": t.event,
                        "provenance": t.provenance, "profile": record.profile, "reason": t.reason,
                        "infrastructure": t.infrastructure, "observation": t.observation,
                        "expectation": t.expectation, "source": t.source, "timings": t.timings,
                        "guest_timings": g.timings, "probe_seconds": g.probe_seconds}),
    })
