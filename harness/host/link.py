"""The SSH link to a remote libvirt host: its shell, and a way to its loopback.

Why: a lab host reached as ``qemu+ssh://root@tgl1/system`` keeps everything a guest needs on its own
side — the guest's SSH forward listens on *its* loopback, its files and its CPU are its own.  The URI
already says how to log in there (user, host, port, key), so the harness opens one SSH connection of
its own with the same options and uses it for three things: ``direct-tcpip`` channels to a guest's
forward (:meth:`HostLink.dial`), commands that read the host's facts, and removing what a run left.

The host key is pinned, never learnt: it must be in the URI's ``known_hosts=FILE`` (libssh's option;
klharness reads it for both transports) or the user's ``~/.ssh/known_hosts``.  A connection that drops
is opened again once per call (:meth:`HostLink.session`); when that fails too, the caller's cells error
with the reason, and other hosts go on.
"""

from __future__ import annotations

import logging
import socket
import threading

import paramiko

from harness.errors import HostError
from harness.guest.ssh import RemoteResult, Session, start_transport
from harness.ssh_target import SshTarget
from harness.timeouts import Timeouts

log = logging.getLogger(__name__)

class HostLink:
    """One SSH connection to a libvirt host, opened on first use and once more after it drops."""

    def __init__(self, target: SshTarget, timeouts: Timeouts) -> None:
        self.target = target
        self.timeouts = timeouts
        self.reconnects = 0
        self._lock = threading.Lock()
        self._session: Session | None = None

    def session(self) -> Session:
        """The live session: connected now if it never was, reconnected (counted) if it dropped."""
        with self._lock:
            if self._session is not None and self._session.alive:
                return self._session
            if self._session is not None:
                log.warning("SSH link to %s dropped; connecting again", self.target.where)
                self.reconnects += 1
            self._session = self._open()
            return self._session

    def dial(self, host: str, port: int, timeout: float) -> paramiko.Channel:
        """A ``direct-tcpip`` channel to ``host:port`` as the far host sees it (its own loopback)."""
        try:
            transport = self.session().transport
            return transport.open_channel("direct-tcpip", (host, port), ("127.0.0.1", 0), timeout=timeout)
        except paramiko.ChannelException as err:  # the far side could not connect: like a refused connect
            raise ConnectionRefusedError(f"{host}:{port} on {self.target.where}: {err.text or err}") from err
        except (paramiko.SSHException, EOFError) as err:
            raise ConnectionError(f"SSH link to {self.target.where}: {err}") from err

    def run(self, argv: list[str] | str, *, timeout: float | None = None, check: bool = False,
            stdin: bytes | None = None) -> RemoteResult:
        """A command on the host (through :class:`~harness.guest.ssh.Session`, bounded the same way)."""
        return self.session().run(argv, timeout=timeout, check=check, stdin=stdin)

    def close(self) -> None:
        with self._lock:
            if self._session is not None:
                self._session.close()
                self._session = None

    def _open(self) -> Session:
        t = self.target
        try:  # reachability first: an unreachable host is that, whatever its key files say
            sock = socket.create_connection((t.host, t.port), timeout=self.timeouts.ssh_banner)
        except OSError as err:
            raise HostError(f"host {t.where} unreachable over SSH: {err} (is the host up and its sshd listening on "
                            f"port {t.port}?)") from err
        try:
            pinned = t.pinned_keys()
            key = t.private_key()
        except HostError:
            sock.close()
            raise
        def verify(presented: paramiko.PKey) -> None:
            expected = pinned.get(presented.get_name())
            if expected is None or expected.asbytes() != presented.asbytes():
                raise HostError(f"host {t.where}: host key mismatch: it presented {presented.get_name()} "
                                f"{presented.fingerprint}, {t.known_hosts} pins "
                                f"{', '.join(f'{n} {k.fingerprint}' for n, k in pinned.items())}; refusing to go on "
                                "(if the host was reinstalled, check and replace its entry)")

        transport = start_transport(sock, self.timeouts, where=f"host {t.where}", user=t.user, key=key,
                                    verify=verify, error=HostError,
                                    refused_hint=f"key {t.keyfile or '(default keys)'}: is its public half in "
                                                 f"{t.user}'s authorized_keys there?", key_types=tuple(pinned))
        transport.set_keepalive(15)
        log.debug("SSH link to %s up", t.where)
        return Session(transport, t.where, self.timeouts)
