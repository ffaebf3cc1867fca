"""A second, isolated libvirt daemon on this host: the far end of a migration.

Why: migration needs two libvirt daemons that believe they are on two
hosts.  One machine can hold both (measured, HOST_NOTES.md): the peer runs
in its own mount and UTS namespaces (``unshare --mount --uts --propagation
private``), where bind mounts hide the system daemon's ``/etc/libvirt``,
``/run/libvirt``, ``/var/lib/libvirt``, ``/var/cache/libvirt`` and
``/var/log/libvirt`` behind directories of its own; it has its own
``host_uuid`` (else libvirt refuses "migration to the same host"), its own
hostname, its own pid files and its own ``virtlogd`` (the domain XML logs the
console through virtlogd).  It shares the network namespace, so a migrated
guest's SSH forward stays on 127.0.0.1 where the harness connects
(docs/migration.md says why there is no veth pair).

How it is built: a holder process (``unshare ... sleep infinity``) owns the
namespaces; ``nsenter`` runs ``mount --bind``, ``hostname`` and then the two
daemons, in the foreground, inside them.  Each is a
:class:`harness.proc.Background`.  The harness reaches the peer from outside
the namespace through its socket file (``qemu+unix:///system?socket=...``).
The QEMU capabilities cache is copied from the system daemon, so a start
takes well under a second instead of the ~8 s QEMU probe.

Nothing leaks: a marker file in the peer's directory names the harness
process (pid + start time), the daemons' pids and the UTS namespace;
:func:`reap_peers` (called by the reaper) stops the peers of dead
harnesses: their domains first, then every process left in the namespace.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import os
import shutil
import signal
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import libvirt

from harness import proc
from harness.errors import CommandError, HostError, KlharnessError, VirtError
from harness.timeouts import DEFAULT_TIMEOUTS, Timeouts
from harness.timeouts import active as active_timeouts
from harness.virt.bounded import bounded
from harness.virt.connection import connect, is_no_domain
from harness.virt.guest import UNDEFINE_FLAGS, runtime_root
from harness.virt.metadata import Reaped, RunMetadata, harness_alive, process_start
from harness.wait import NotYet, wait_for

log = logging.getLogger(__name__)

PEER_MARKER = ".klharness-peer"
# Work-directory subdirectory -> the system path it stands in for inside the namespace.
HIDDEN_DIRS = {
    "etc": "/etc/libvirt",
    "run": "/run/libvirt",
    "lib": "/var/lib/libvirt",
    "cache": "/var/cache/libvirt",
    "log": "/var/log/libvirt",
}
# Config files the peer copies from the system daemon (definitions of domains, networks,
# pools and secrets are left behind: the peer starts empty, with no autostart network).
_ETC_DIRS_COPIED = ("nwfilter", "hooks")
_ETC_DIRS_EMPTY = ("qemu", "qemu/networks", "qemu/networks/autostart", "storage", "secrets")
SUN_PATH_MAX = 107  # sockaddr_un.sun_path is 108 bytes with the terminating NUL
_counter = 0
_counter_lock = threading.Lock()


def peers_root() -> Path:
    """Where peers' work directories live (the reaper looks here)."""
    return runtime_root() / "peers"


def peer_uri(workdir: Path) -> str:
    """The libvirt URI that reaches a peer from outside its namespace."""
    return f"qemu+unix:///system?socket={workdir / 'run' / 'libvirt-sock'}"


@dataclass
class PeerState:
    """What the marker file records: who made the peer and which processes are its."""

    run_id: str
    name: str
    host_uuid: str
    harness_pid: int = field(default_factory=os.getpid)
    pid_start: str = field(default_factory=lambda: process_start(os.getpid()))
    host: str = field(default_factory=socket.gethostname)
    uts_ns: str = ""
    mnt_ns: str = ""
    procs: dict[str, list[Any]] = field(default_factory=dict)  # role -> [pid, start]

    def save(self, workdir: Path) -> None:
        tmp = workdir / f"{PEER_MARKER}.tmp"
        tmp.write_text(json.dumps(self.__dict__, indent=1) + "\n")
        tmp.replace(workdir / PEER_MARKER)

    @classmethod
    def load(cls, workdir: Path) -> PeerState | None:
        try:
            data = json.loads((workdir / PEER_MARKER).read_text())
            return cls(**data)
        except (OSError, ValueError, TypeError):
            return None

    def harness_alive(self) -> bool:
        meta = RunMetadata(run_id=self.run_id, guest="", spec_key="", harness_pid=self.harness_pid,
                           pid_start=self.pid_start, host=self.host)
        return harness_alive(meta) and _alive(self.harness_pid)  # a killed harness may linger as a zombie


class PeerDaemon:
    """A second libvirtd (+ virtlogd) in its own mount/UTS namespaces, as a context manager.

    ::

        with PeerDaemon(run_id="r1") as peer:
            migrate_live(guest, peer.conn, timeout=60)
            ...
        # its domains destroyed, daemons and namespace gone, directory removed

    ``workdir`` (default: a new directory under :func:`peers_root`, where
    the reaper finds it) must not exist yet.
    """

    def __init__(self, workdir: Path | None = None, *, run_id: str = "", name: str | None = None,
                 timeouts: Timeouts = DEFAULT_TIMEOUTS) -> None:
        global _counter
        with _counter_lock:
            _counter += 1
            n = _counter
        self.run_id = run_id
        self.name = name or f"klh-peer-{os.getpid()}-{n}"
        self.workdir = (workdir or peers_root() / f"{run_id + '-' if run_id else ''}{self.name}").absolute()
        self.timeouts = timeouts
        self.state = PeerState(run_id=run_id, name=self.name, host_uuid=str(uuid.uuid4()))
        self.timings: dict[str, float] = {}
        self._holder: proc.Background | None = None
        self._virtlogd: proc.Background | None = None
        self._libvirtd: proc.Background | None = None
        self._conn: Any | None = None
        self._running = False

    # -- what callers use ------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._running

    @property
    def uri(self) -> str:
        """The peer's libvirt URI; HostError when it is not running."""
        self._require_running("its URI")
        return peer_uri(self.workdir)

    @property
    def conn(self) -> Any:
        """A connection to the peer (opened once, closed by :meth:`stop`)."""
        self._require_running("a connection")
        if self._conn is None:
            self._conn = connect(self.uri, timeout=self.timeouts.libvirt_connect)
        return self._conn

    def __enter__(self) -> PeerDaemon:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        errors = self.stop()
        if errors and exc[0] is None:
            raise VirtError(f"stopping peer daemon {self.name} incomplete: " + "; ".join(errors))

    def __repr__(self) -> str:
        return f"<PeerDaemon {self.name} {'running' if self._running else 'stopped'} at {self.workdir}>"

    # -- start -----------------------------------------------------------------------------------

    def start(self) -> float:
        """Build the directories, enter the namespaces, start virtlogd and libvirtd; seconds taken.

        HostError when a tool is missing or the daemon does not answer; what
        was started is stopped again before raising.
        """
        if self._running:
            raise HostError(f"peer daemon {self.name} is already running")
        for tool in ("unshare", "nsenter", "mount", "hostname", "libvirtd", "virtlogd", "virsh"):
            if shutil.which(tool) is None:
                raise HostError(f"peer daemon needs `{tool}` on PATH (util-linux / libvirt-daemon-system)")
        if os.geteuid() != 0:
            raise HostError("a peer libvirt daemon needs root (mount and UTS namespaces, bind mounts)")
        sock = self.workdir / "run" / "libvirt-admin-sock"
        if len(str(sock).encode()) > SUN_PATH_MAX:
            raise HostError(f"peer work directory {self.workdir} is too deep: its socket {sock} would exceed the "
                            f"{SUN_PATH_MAX}-byte limit of a unix socket path (set KLHARNESS_RUNTIME_DIR shorter)")
        begin = time.monotonic()
        if not self.workdir.parent.exists():
            self.workdir.parent.mkdir(mode=0o700, parents=True)
        try:
            self.workdir.mkdir(mode=0o700)
        except FileExistsError:
            raise HostError(f"peer work directory {self.workdir} already exists (a dead run's? run "
                            "`klharness cleanup`)") from None
        self.state.save(self.workdir)
        try:
            self._build_tree()
            self._enter_namespace()
            self._start_daemons()
        except BaseException:
            self._teardown([])
            raise
        self._running = True
        self.timings["start"] = took = time.monotonic() - begin
        log.info("peer daemon %s up in %.2fs (%s)", self.name, took, peer_uri(self.workdir))
        return took

    def _build_tree(self) -> None:
        """The peer's own copies of the five libvirt directories (config copied, state empty)."""
        for sub, system in HIDDEN_DIRS.items():
            dest = self.workdir / sub
            dest.mkdir()
            _copy_meta(Path(system), dest)
        etc = self.workdir / "etc"
        for f in Path("/etc/libvirt").iterdir():
            if f.is_file():
                shutil.copy2(f, etc / f.name)
        for d in _ETC_DIRS_COPIED:
            if (Path("/etc/libvirt") / d).is_dir():
                shutil.copytree(Path("/etc/libvirt") / d, etc / d, symlinks=True)
        for d in _ETC_DIRS_EMPTY:
            (etc / d).mkdir(parents=True, exist_ok=True)
            _copy_meta(Path("/etc/libvirt") / d, etc / d)
        _set_conf(etc / "libvirtd.conf", "host_uuid", f'"{self.state.host_uuid}"', self.name)
        # No cgroups: the two daemons would both create machine/qemu-<id>-<name> for a
        # migrating domain, and domain ids start at 1 in each.
        _set_conf(etc / "qemu.conf", "cgroup_controllers", "[ ]", self.name)
        _mirror_dirs(Path("/var/lib/libvirt"), self.workdir / "lib", depth=3)
        _mirror_dirs(Path("/var/log/libvirt"), self.workdir / "log", depth=2)
        _mirror_dirs(Path("/var/cache/libvirt"), self.workdir / "cache", depth=3)
        caps = Path("/var/cache/libvirt/qemu/capabilities")
        if caps.is_dir():  # skip the ~8 s QEMU probe: same binaries, same host
            for f in caps.glob("*.xml"):
                shutil.copy2(f, self.workdir / "cache" / "qemu" / "capabilities" / f.name)

    def _enter_namespace(self) -> None:
        self._holder = proc.Background(["unshare", "--mount", "--uts", "--propagation", "private", "--",
                                        "sleep", "infinity"], stdout_path=self.workdir / "holder.out")
        self._holder.__enter__()
        assert self._holder.proc is not None
        pid = self._holder.proc.pid
        own = (_ns_id(os.getpid(), "mnt"), _ns_id(os.getpid(), "uts"))

        def entered() -> None:
            if self._holder is not None and self._holder.proc is not None and self._holder.proc.poll() is not None:
                raise HostError(f"`unshare --mount --uts` exited at once: {_tail(self.workdir / 'holder.out')}")
            ns = (_ns_id(pid, "mnt"), _ns_id(pid, "uts"))
            if _comm(pid) != "sleep" or "" in ns or ns[0] == own[0] or ns[1] == own[1]:
                raise NotYet(f"pid {pid} is {_comm(pid)!r} in namespaces {ns}")

        wait_for("the peer's namespaces", entered, timeout=self.timeouts.libvirt_call, initial=0.005, cap=0.1,
                 error=HostError)
        self.state.mnt_ns, self.state.uts_ns = _ns_id(pid, "mnt"), _ns_id(pid, "uts")
        self.state.procs["holder"] = [pid, process_start(pid)]
        self.state.save(self.workdir)
        self._nsenter(["hostname", self.name])
        for sub, system in HIDDEN_DIRS.items():
            self._nsenter(["mount", "--bind", str(self.workdir / sub), system])

    def _nsenter(self, argv: list[str]) -> None:
        """Run a short command inside the peer's namespaces (never in ours: checked first)."""
        assert self._holder is not None and self._holder.proc is not None
        pid = self._holder.proc.pid
        if _ns_id(pid, "mnt") != self.state.mnt_ns or _ns_id(pid, "uts") != self.state.uts_ns:
            raise HostError(f"peer {self.name}: namespace holder pid {pid} is gone; not running {argv[0]}")
        try:
            proc.run(["nsenter", "--target", str(pid), "--mount", "--uts", "--", *argv],
                     timeout=self.timeouts.libvirt_call)
        except CommandError as err:
            raise HostError(f"peer {self.name}: {err}") from err

    def _daemon(self, name: str) -> proc.Background:
        assert self._holder is not None and self._holder.proc is not None
        bg = proc.Background(["nsenter", "--target", str(self._holder.proc.pid), "--mount", "--uts", "--",
                              name, "--pid-file", str(self.workdir / f"{name}.pid")],
                             stdout_path=self.workdir / f"{name}.out", grace=self.timeouts.daemon_stop)
        bg.__enter__()
        assert bg.proc is not None
        self.state.procs[name] = [bg.proc.pid, process_start(bg.proc.pid)]
        self.state.save(self.workdir)
        return bg

    def _start_daemons(self) -> None:
        self._virtlogd = self._daemon("virtlogd")
        self._wait_socket(self._virtlogd, "virtlogd", self.workdir / "run" / "virtlogd-sock")
        self._libvirtd = self._daemon("libvirtd")
        self._wait_socket(self._libvirtd, "libvirtd", self.workdir / "run" / "libvirt-sock")
        uri = peer_uri(self.workdir)

        def answers() -> None:
            self._check_alive(self._libvirtd, "libvirtd")
            res = proc.run(["virsh", "-c", uri, "version"], timeout=self.timeouts.libvirt_connect, check=False)
            if not res.ok:
                raise NotYet(res.describe())

        wait_for(f"peer libvirtd {self.name} to answer `virsh -c {uri} version`", answers,
                 timeout=self.timeouts.libvirt_connect, initial=0.05, cap=0.5, error=HostError,
                 detail=lambda: "libvirtd output:\n" + _tail(self.workdir / "libvirtd.out"))

    def _wait_socket(self, bg: proc.Background, name: str, sock: Path) -> None:
        def appeared() -> None:
            self._check_alive(bg, name)
            if not sock.is_socket():
                raise NotYet(f"{sock} does not exist")

        wait_for(f"the socket of peer {name} ({sock})", appeared, timeout=self.timeouts.libvirt_connect,
                 initial=0.01, cap=0.2, error=HostError,
                 detail=lambda: f"{name} output:\n" + _tail(self.workdir / f"{name}.out"))

    def _check_alive(self, bg: proc.Background | None, name: str) -> None:
        if bg is None or bg.proc is None or bg.proc.poll() is not None:
            code = None if bg is None or bg.proc is None else bg.proc.returncode
            raise HostError(f"peer {name} {self.name} exited (status {code}): "
                            f"{_tail(self.workdir / f'{name}.out')}")

    # -- stop ------------------------------------------------------------------------------------

    def stop(self) -> list[str]:
        """Destroy the peer's domains, stop libvirtd, virtlogd and the namespace, remove the directory.

        Every step is tried even when one before failed; returns the failures
        (also logged).  Idempotent.
        """
        errors: list[str] = []
        if self._running or self._holder is not None:
            start = time.monotonic()
            errors += self._destroy_domains()
            self._teardown(errors)
            self.timings["stop"] = time.monotonic() - start
        for e in errors:
            log.warning("stopping peer daemon %s: %s", self.name, e)
        return errors

    def _destroy_domains(self) -> list[str]:
        if not self._running or self._libvirtd is None or self._libvirtd.proc is None \
                or self._libvirtd.proc.poll() is not None:
            return []  # never came up (no guest can be on it) or libvirtd died: the sweep kills its QEMUs
        try:
            conn = self.conn
        except KlharnessError as err:
            return [f"connecting to list its domains: {err}"]
        return destroy_all_domains(conn, self.timeouts)

    def _teardown(self, errors: list[str]) -> None:
        self._running = False
        if self._conn is not None:
            with contextlib.suppress(libvirt.libvirtError):
                self._conn.close()
            self._conn = None
        errors += kill_namespace(self.state, self.workdir)  # libvirtd, virtlogd, holder, then stragglers
        for role, bg in (("libvirtd", self._libvirtd), ("virtlogd", self._virtlogd), ("holder", self._holder)):
            if bg is not None:
                try:
                    bg.stop()  # normally already gone: this only collects the exit status
                except OSError as err:
                    errors.append(f"stopping {role}: {err}")
        self._libvirtd = self._virtlogd = self._holder = None
        try:
            shutil.rmtree(self.workdir)
        except FileNotFoundError:
            pass
        except OSError as err:
            errors.append(f"removing {self.workdir}: {err}")

    def _require_running(self, what: str) -> None:
        if not self._running:
            raise HostError(f"peer daemon {self.name} is not running: cannot give {what} (start it with "
                            "`with PeerDaemon(...) as peer:` or peer.start())")


# -- helpers shared with the reaper -------------------------------------------------------------------

def destroy_all_domains(conn: Any, timeouts: Timeouts) -> list[str]:
    """Destroy (and undefine) every domain of a peer: it only ever holds guests the harness moved there."""
    errors: list[str] = []
    try:
        doms = bounded(lambda: conn.listAllDomains(0), timeout=timeouts.libvirt_call, what="listing peer domains")
    except (libvirt.libvirtError, VirtError) as err:
        return [f"listing domains: {err}"]
    for dom in doms:
        try:
            if dom.isActive():
                bounded(dom.destroy, timeout=timeouts.destroy, what=f"destroying {dom.name()}")
            if dom.isPersistent():
                bounded(lambda d=dom: d.undefineFlags(UNDEFINE_FLAGS), timeout=timeouts.libvirt_call,  # type: ignore[misc]
                        what=f"undefining {dom.name()}")
        except libvirt.libvirtError as err:
            if not is_no_domain(err):
                errors.append(f"removing domain: {err.get_error_message()}")
        except VirtError as err:
            errors.append(str(err))
    return errors


def kill_namespace(state: PeerState, workdir: Path, grace: float | None = None) -> list[str]:
    """Stop the recorded daemons (SIGTERM, then SIGKILL) and SIGKILL anything else in the peer's UTS namespace.

    A leftover QEMU keeps the namespace (and its bind mounts) alive, so the
    sweep matters.  It runs only while the namespace is provably the
    peer's — one of its recorded processes (pid + start time) or one of its
    QEMUs (pid files under ``run/qemu``) still lives in it — because a
    freed namespace's inode number can be reused; and never in the caller's
    own namespace.
    """
    errors: list[str] = []
    grace = grace if grace is not None else active_timeouts().daemon_stop
    own = _ns_id(os.getpid(), "uts")
    confirmed = bool(state.uts_ns) and state.uts_ns != own and _namespace_is_the_peers(state, workdir)
    for role in ("libvirtd", "virtlogd", "holder"):
        pid, start = (state.procs.get(role) or [0, ""])[:2]
        if pid and _same_process(int(pid), str(start)):
            _signal_and_wait(int(pid), signal.SIGTERM, grace)
    if confirmed:
        for pid in _pids_in_namespace("uts", state.uts_ns):
            log.warning("peer %s: killing leftover %s (pid %d)", state.name, _comm(pid), pid)
            _signal_and_wait(pid, signal.SIGKILL, grace)
        left = _pids_in_namespace("uts", state.uts_ns)
        if left:
            errors.append(f"processes {left} still in the peer's namespace {state.uts_ns}")
    return errors


def _namespace_is_the_peers(state: PeerState, workdir: Path) -> bool:
    for pid, start in (v[:2] for v in state.procs.values()):
        if _same_process(int(pid), str(start)) and _ns_id(int(pid), "uts") == state.uts_ns:
            return True
    for pidfile in (workdir / "run" / "qemu").glob("*.pid"):
        with contextlib.suppress(OSError, ValueError):
            pid = int(pidfile.read_text().strip())
            if _comm(pid).startswith("qemu") and _ns_id(pid, "uts") == state.uts_ns:
                return True
    return False


def reap_peers(root: Path | None = None, *, run_id: str | None = None, everything: bool = False,
               timeouts: Timeouts = DEFAULT_TIMEOUTS) -> list[Reaped]:
    """Stop peers left by dead harnesses (default), of ``run_id``, or all but this process's own (``everything``).

    For each: destroy its domains through its socket (if libvirtd still
    answers), stop its daemons, kill what is left in its namespace, delete
    its directory.
    """
    root = root or peers_root()
    out: list[Reaped] = []
    if not root.is_dir():
        return out
    for wd in sorted(root.iterdir()):
        state = PeerState.load(wd)
        if state is None:
            continue
        if run_id is not None:
            reason = f"run id {run_id}" if state.run_id == run_id else None
        elif everything:
            reason = "--all" if state.harness_pid != os.getpid() else None
        else:
            reason = None if state.harness_alive() else f"harness pid {state.harness_pid} on {state.host} is gone"
        if reason is None:
            continue
        item = Reaped(f"peer daemon {wd}", state.run_id, reason)
        libvirtd = state.procs.get("libvirtd") or [0, ""]
        if (wd / "run" / "libvirt-sock").is_socket() and libvirtd[0] \
                and _same_process(int(libvirtd[0]), str(libvirtd[1])):
            try:
                conn = connect(peer_uri(wd), timeout=timeouts.libvirt_connect)
                try:
                    item.errors += destroy_all_domains(conn, timeouts)
                    item.actions.append("destroyed its domains")
                finally:
                    with contextlib.suppress(libvirt.libvirtError):
                        conn.close()
            except KlharnessError as err:
                item.errors.append(f"connecting: {err}")
        item.errors += kill_namespace(state, wd)
        item.actions.append("stopped its daemons")
        try:
            shutil.rmtree(wd)
            item.actions.append("removed its directory")
        except OSError as err:
            item.errors.append(f"remove {wd}: {err}")
        out.append(item)
    return out


# -- one peer per run, for the catalogue -----------------------------------------------------------------

_run_peers: dict[str, PeerDaemon] = {}
_run_peers_lock = threading.Lock()
_atexit_registered = False


def run_peer(run_id: str, *, timeouts: Timeouts = DEFAULT_TIMEOUTS) -> PeerDaemon:
    """The run's peer daemon, started on first use; stopped by :func:`close_run_peers` (or at exit)."""
    with _run_peers_lock:
        peer = _run_peers.get(run_id)
        if peer is None or not peer.running:
            global _atexit_registered
            if not _atexit_registered:
                atexit.register(close_run_peers)
                _atexit_registered = True
            peer = PeerDaemon(run_id=run_id, timeouts=timeouts)
            peer.start()
            _run_peers[run_id] = peer
        return peer


def close_run_peers(run_id: str | None = None) -> list[str]:
    """Stop the run's peer (every run's with None), after its guests are torn down; returns failures."""
    with _run_peers_lock:
        peers = [p for r, p in list(_run_peers.items()) if run_id is None or r == run_id]
        for r in [r for r in _run_peers if run_id is None or r == run_id]:
            del _run_peers[r]
    errors: list[str] = []
    for peer in peers:
        errors += peer.stop()
    return errors


# -- small process and file helpers -----------------------------------------------------------------------

def _ns_id(pid: int, kind: str) -> str:
    try:
        return os.readlink(f"/proc/{pid}/ns/{kind}")
    except OSError:
        return ""


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def _alive(pid: int) -> bool:
    """Running and not a zombie (a zombie of a dead harness may never be reaped here)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _same_process(pid: int, start: str) -> bool:
    return bool(start) and process_start(pid) == start and _alive(pid)


def _exited_within(pid: int, grace: float) -> bool:
    """Whether ``pid`` is gone within ``grace`` seconds (reaping it if it is our child)."""
    def gone() -> None:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        if _alive(pid):
            raise NotYet(f"pid {pid} still running")

    try:
        wait_for(f"pid {pid} to exit", gone, timeout=grace, initial=0.05, cap=0.2, error=HostError)
    except HostError:
        return False
    return True


def _signal_and_wait(pid: int, sig: int, grace: float) -> None:
    """Send ``sig``, then SIGKILL if the process outlives ``grace``; waits up to ``grace`` for each."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)
    if not _exited_within(pid, grace) and sig != signal.SIGKILL:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        _exited_within(pid, grace)


def _pids_in_namespace(kind: str, ns: str) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and _ns_id(int(entry.name), kind) == ns and _alive(int(entry.name)):
            out.append(int(entry.name))
    return out


def _copy_meta(src: Path, dest: Path) -> None:
    """Give ``dest`` the mode and owner of ``src`` (libvirt-qemu owns some state directories)."""
    try:
        st = src.stat()
    except OSError:
        return
    os.chmod(dest, st.st_mode & 0o7777)
    os.chown(dest, st.st_uid, st.st_gid)


def _mirror_dirs(src: Path, dest: Path, *, depth: int) -> None:
    """Recreate ``src``'s directory tree (no files, no per-domain directories) with modes and owners."""
    if depth <= 0 or not src.is_dir():
        return
    for child in src.iterdir():
        if not child.is_dir() or child.is_symlink() or child.name.startswith("domain-"):
            continue
        target = dest / child.name
        target.mkdir(exist_ok=True)
        _copy_meta(child, target)
        _mirror_dirs(child, target, depth=depth - 1)


def _set_conf(path: Path, key: str, value: str, name: str) -> None:
    """Set ``key = value`` in a libvirt config file, dropping any active setting of the key first."""
    lines = path.read_text().splitlines() if path.exists() else []
    kept = [line for line in lines if line.split("=", 1)[0].strip() != key]
    kept += ["", f"# klharness peer daemon {name}", f"{key} = {value}"]
    path.write_text("\n".join(kept) + "\n")


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").strip().splitlines()[-lines:])
    except OSError:
        return "(no output)"
