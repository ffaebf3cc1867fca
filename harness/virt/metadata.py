"""The klharness tag every domain carries in its ``<metadata>``.

Why: a killed run leaves domains behind.  The tag says which run and which
harness process (pid + its start time, so a recycled pid is not mistaken for
a live harness) made the domain and which files belong to it, so the reaper
can decide on its own what is dead and what to delete.
"""

from __future__ import annotations

import os
import socket
import time
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

NS = "https://klharness.invalid/xmlns/domain/1"
PREFIX = "klh"
DOMAIN_PREFIX = "klh-"
ET.register_namespace(PREFIX, NS)


@dataclass(frozen=True)
class RunMetadata:
    """Who made a domain, and what must go when it goes."""

    run_id: str
    guest: str
    spec_key: str
    harness_pid: int = field(default_factory=os.getpid)
    pid_start: str = field(default_factory=lambda: process_start(os.getpid()))
    host: str = field(default_factory=socket.gethostname)
    started: str = field(default_factory=lambda: time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    accel: str = ""
    accel_reason: str = ""
    workdir: str = ""  # removed as a whole (it holds a marker file, see guest.py)
    files: tuple[str, ...] = ()  # further files to remove (e.g. a console log in a temp dir)

    def with_files(self, *paths: Path) -> RunMetadata:
        return replace(self, files=self.files + tuple(str(p) for p in paths))

    def element(self) -> ET.Element:
        """The ``<klh:run>`` element for the domain's ``<metadata>``."""
        el = ET.Element(f"{{{NS}}}run", {
            "id": self.run_id, "guest": self.guest, "spec-key": self.spec_key,
            "pid": str(self.harness_pid), "pid-start": self.pid_start, "host": self.host,
            "started": self.started, "accel": self.accel, "accel-reason": self.accel_reason,
        })
        if self.workdir:
            ET.SubElement(el, f"{{{NS}}}workdir", {"path": self.workdir})
        for f in self.files:
            ET.SubElement(el, f"{{{NS}}}file", {"path": f})
        return el

    @classmethod
    def from_domain_xml(cls, xml: str) -> RunMetadata | None:
        """Read the tag back from a full domain XML; ``None`` when it has none."""
        root = ET.fromstring(xml)  # noqa: S314 - XML from our own libvirt daemon
        el = root.find(f"metadata/{{{NS}}}run")
        if el is None:
            return None
        wd = el.find(f"{{{NS}}}workdir")
        return cls(
            run_id=el.get("id", ""), guest=el.get("guest", ""), spec_key=el.get("spec-key", ""),
            harness_pid=int(el.get("pid", "0") or 0), pid_start=el.get("pid-start", ""),
            host=el.get("host", ""), started=el.get("started", ""), accel=el.get("accel", ""),
            accel_reason=el.get("accel-reason", ""), workdir=wd.get("path", "") if wd is not None else "",
            files=tuple(f.get("path", "") for f in el.findall(f"{{{NS}}}file") if f.get("path")),
        )


def process_start(pid: int) -> str:
    """The kernel's start time of ``pid`` (clock ticks since boot), or "" if unknown.

    Field 22 of ``/proc/PID/stat``; the command name (field 2) may contain
    spaces and parentheses, so split after the last ')'.
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    fields = stat.rsplit(")", 1)[1].split()
    if fields[0] in ("Z", "X"):
        return ""  # a zombie (a killed harness its parent has not reaped yet) is not alive
    return fields[19]


def owner_tag(run_id: str, **extra: str) -> dict[str, Any]:
    """Who made a thing of run ``run_id`` that is not a domain (a work directory, a remote pool's run tag, a
    simulated host): this process, its start time and this host — what :func:`harness_alive` checks."""
    return {"run_id": run_id, "pid": os.getpid(), "pid_start": process_start(os.getpid()),
            "host": socket.gethostname(), **extra}


def owner_of(tag: Mapping[str, Any]) -> RunMetadata:
    """The owner an :func:`owner_tag` names, as the metadata :func:`harness_alive` and the reaper judge."""
    return RunMetadata(run_id=str(tag.get("run_id", "")), guest="", spec_key="", harness_pid=int(tag.get("pid", 0)),
                       pid_start=str(tag.get("pid_start", "")), host=str(tag.get("host", "")))


def harness_alive(meta: RunMetadata) -> bool:
    """Whether the harness process that made the domain still runs on this host.

    A domain made on another host counts as alive: its pid means nothing here.
    """
    if meta.host != socket.gethostname():
        return True
    if meta.harness_pid <= 0:
        return False
    start = process_start(meta.harness_pid)
    if not start:
        return False
    return not meta.pid_start or start == meta.pid_start


@dataclass
class Reaped:
    """One thing the reaper removed (a domain, or a work directory left without one)."""

    what: str  # domain name or directory path
    run_id: str
    reason: str
    actions: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def describe(self) -> str:
        done = ", ".join(self.actions) or "nothing to do"
        failed = f"; FAILED: {'; '.join(self.errors)}" if self.errors else ""
        return f"{self.what} (run {self.run_id or '?'}, {self.reason}): {done}{failed}"
