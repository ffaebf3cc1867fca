"""A simulated remote lab host for a run: ``hosts: [{uri: sim-remote}]`` (scripts/sim-remote-host).

Why: the remote-host path (console over libvirt streams, SSH to guests through the host's SSH, staging)
must run in CI, and CI has no second machine.  The script starts a host that shares nothing with this
one but an SSH port on 127.0.0.1; this module gives it a login key of its own, pins its host key in a
known_hosts file, and hands the run the URI a lab host would have —
``qemu+libssh://root@127.0.0.1:PORT/system?keyfile=…&known_hosts=…`` — so everything after that is the
code path of a real lab host.  The run stops it at its end; :func:`reap_sim_hosts` stops the hosts of
harnesses that died (their owner file names the process).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path

from harness import proc
from harness.errors import CommandError, HostError
from harness.paths import REPO_DIR
from harness.timeouts import Timeouts
from harness.timeouts import active as active_timeouts
from harness.virt.metadata import harness_alive, owner_of, owner_tag
from harness.virt.ports import free_loopback_port

log = logging.getLogger(__name__)

SCRIPT = REPO_DIR / "scripts" / "sim-remote-host"
OWNER_FILE = "owner.json"
_NAME_RE = re.compile(r"[^a-z0-9-]+")


def sim_root() -> Path:
    """Where the script keeps each host's state (``KLH_SIM_ROOT``, as the script reads it)."""
    return Path(os.environ.get("KLH_SIM_ROOT", "/var/lib/klharness/sim"))


@dataclass(frozen=True)
class SimHost:
    name: str
    port: int
    state: Path
    login_key: Path
    known_hosts: Path

    @property
    def uri(self) -> str:
        return (f"qemu+libssh://root@127.0.0.1:{self.port}/system?keyfile={self.login_key}&sshauth=privkey"
                f"&known_hosts={self.known_hosts}")


def sim_name(run_id: str, host: str) -> str:
    """A script-valid name (``[a-z][a-z0-9-]{0,30}``) unique to the run and the config's host name."""
    base = _NAME_RE.sub("-", host.lower()).strip("-")[:18] or "host"
    return f"s{run_id[-4:].lower()}-{base}"[:31]


_hosts: dict[str, tuple[str, SimHost]] = {}  # name -> (run id, host)
_lock = threading.Lock()


def start_sim_host(run_id: str, host: str, *, timeouts: Timeouts) -> SimHost:
    """The run's simulated host named ``host``, started on first use (about 0.3 s)."""
    name = sim_name(run_id, host)
    with _lock:
        if name in _hosts:
            return _hosts[name][1]
        keydir = sim_root() / f"{name}.login"
        keydir.mkdir(parents=True, exist_ok=True, mode=0o700)
        key = keydir / "id_ed25519"
        key.unlink(missing_ok=True)
        proc.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"klharness-{run_id}", "-f", str(key)],
                 timeout=timeouts.tool)
        port = free_loopback_port()
        try:
            out = proc.run([str(SCRIPT), "start", name, str(port), f"{key}.pub"], timeout=timeouts.sim_host_start)
        except CommandError as err:
            raise HostError(f"hosts[{host}]: the simulated remote host did not start: {err}") from err
        state = Path(out.stdout.strip().splitlines()[-1])
        (state / OWNER_FILE).write_text(json.dumps(owner_tag(run_id)) + "\n")
        known = keydir / "known_hosts"
        key_type, key_blob = (state / "host_key.pub").read_text().split()[:2]
        known.write_text(f"[127.0.0.1]:{port} {key_type} {key_blob}\n")
        sim = SimHost(name, port, state, key, known)
        _hosts[name] = (run_id, sim)
        log.info("simulated remote host %s up on 127.0.0.1:%d", name, port)
        return sim


def stop_run_sim_hosts(run_id: str | None = None, *, timeouts: Timeouts | None = None) -> list[str]:
    """Stop the run's simulated hosts (every one this process started with None); returns failures."""
    with _lock:
        names = [n for n, (r, _) in _hosts.items() if run_id is None or r == run_id]
        for n in names:
            _hosts.pop(n)
    return [e for n in names if (e := stop_sim_host(n, timeouts=timeouts))]


def stop_sim_host(name: str, *, timeouts: Timeouts | None = None) -> str:
    """Stop one simulated host and remove its login key; the error, or "" when it is gone."""
    t = timeouts or active_timeouts()
    try:
        proc.run([str(SCRIPT), "stop", name], timeout=t.daemon_stop * 6)
    except CommandError as err:
        return f"stopping simulated host {name}: {err}"
    for leftover in ("id_ed25519", "id_ed25519.pub", "known_hosts"):
        (sim_root() / f"{name}.login" / leftover).unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        (sim_root() / f"{name}.login").rmdir()
    return ""


def reap_sim_hosts() -> list[str]:
    """Stop the simulated hosts whose harness process is gone (a killed test or run); their names."""
    root = sim_root()
    if not root.is_dir():
        return []
    stopped = []
    for state in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.endswith(".login")):
        try:
            owner = json.loads((state / OWNER_FILE).read_text())
        except (OSError, ValueError):
            continue  # not started by a run (scripts or tests own those)
        if harness_alive(owner_of(owner)):
            continue
        if not stop_sim_host(state.name):
            stopped.append(state.name)
    return stopped
