"""SSH into guests: per-run keys, pinned host keys, and every call bounded.

Why not ``SSHClient.connect``: we need each phase bounded separately (TCP
greeting, banner/kex, auth, exec, transfer), the host key compared with the
one recorded at image build (never auto-accepted), and the greeting read on
a plain socket first — QEMU's port forward accepts TCP long before the
guest's sshd listens, and paramiko would otherwise sit in its banner timeout.
"""

from __future__ import annotations

import base64
import contextlib
import logging
import os
import select
import shlex
import socket
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import paramiko
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from harness.errors import KlharnessError, SSHError
from harness.proc import Ended
from harness.timeouts import Timeouts
from harness.wait import Deadline, NotYet, wait_for

log = logging.getLogger(__name__)

# Errors that mean "the guest is not up yet" while waiting for the greeting.
TRANSIENT_NET_ERRORS: tuple[type[BaseException], ...] = (ConnectionError, TimeoutError, socket.timeout, OSError)


@dataclass(frozen=True)
class KeyPair:
    """A run's SSH key pair on disk (private key 0600)."""

    private_path: Path
    public_line: str  # "ssh-ed25519 AAAA... klharness-<run>"

    def load(self) -> paramiko.PKey:
        return paramiko.Ed25519Key.from_private_key_file(str(self.private_path))


def generate_keypair(directory: Path, comment: str) -> KeyPair:
    """A fresh Ed25519 key pair for one run; never reused (the directory is per run)."""
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                serialization.NoEncryption())
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    path = directory / "id_ed25519"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, private)
    finally:
        os.close(fd)
    line = f"{public.decode()} {comment}"
    (directory / "id_ed25519.pub").write_text(line + "\n")
    return KeyPair(path, line)


@dataclass(frozen=True)
class RemoteResult(Ended):
    """What a guest command did (bytes: a probe document or a saved handle is not always text)."""

    command: str
    returncode: int
    stdout: bytes
    stderr: bytes
    duration: float
    timed_out: bool = False

    def text(self) -> str:
        return self.stdout.decode(errors="replace")

    def command_line(self) -> str:
        return self.command

    def diagnostics(self) -> str:
        return self.stderr.decode(errors="replace")


# Opens a byte stream to (host, port) within a timeout: a plain TCP connect, or a channel through the
# SSH link to a remote libvirt host whose loopback the guest's forward listens on (harness.host.link).
Dial = Callable[[str, int, float], "socket.socket | paramiko.Channel"]


def tcp_dial(host: str, port: int, timeout: float) -> socket.socket:
    return socket.create_connection((host, port), timeout=timeout)


def read_greeting(host: str, port: int, timeout: float, dial: Dial = tcp_dial) -> str:
    """Connect and read the server's identification line; NotYet when it is not an SSH server (yet)."""
    with dial(host, port, timeout) as sock:
        sock.settimeout(timeout)
        data = b""
        while b"\n" not in data and len(data) < 256:
            chunk = sock.recv(256)
            if not chunk:
                raise NotYet(f"{host}:{port} closed the connection before a greeting")
            data += chunk
    line = data.split(b"\n", 1)[0].decode(errors="replace").strip()
    if not line.startswith("SSH-"):
        raise NotYet(f"{host}:{port} answered {line[:40]!r}, not an SSH greeting")
    return line


def _doubling(first: float, cap: float) -> Iterator[float]:
    """``first``, twice that, … up to ``cap``, then ``cap`` for ever."""
    limit = min(first, cap)
    while True:
        yield limit
        limit = min(limit * 2, cap)


def pinned_key_matches(expected_line: str, key: paramiko.PKey) -> bool:
    """Compare an ``ssh-<type> <base64>`` line with the key the server presented."""
    parts = expected_line.split()
    if len(parts) < 2:
        return False
    try:
        expected_blob = base64.b64decode(parts[1])
    except ValueError:
        return False
    return parts[0] == key.get_name() and expected_blob == key.asbytes()


def start_transport(sock: socket.socket | paramiko.Channel, timeouts: Timeouts, *, where: str, user: str,
                    key: paramiko.PKey, verify: Callable[[paramiko.PKey], None],
                    error: type[KlharnessError], refused_hint: str,
                    key_types: Sequence[str] = ()) -> paramiko.Transport:
    """Handshake on ``sock``, ``verify`` the server's key (it raises ``error`` on a mismatch), authenticate.

    ``key_types``: ask the server for a host key of these types first (the ones that are pinned), so a host
    with several keys does not present one that is not pinned.

    One implementation for guests and for remote lab hosts (:mod:`harness.host.link`), each phase bounded by
    ``timeouts``; every failure closes the transport and raises ``error`` saying which phase failed.
    """
    transport = paramiko.Transport(sock)
    transport.banner_timeout = timeouts.ssh_banner
    transport.handshake_timeout = timeouts.ssh_banner
    transport.auth_timeout = timeouts.ssh_auth
    try:
        if key_types:
            options = transport.get_security_options()
            options.key_types = [k for k in options.key_types if k in key_types] or list(options.key_types)
        transport.start_client(timeout=timeouts.ssh_banner)
        verify(transport.get_remote_server_key())
        transport.auth_publickey(user, key, event=None)
        if not transport.is_authenticated():
            raise error(f"{where}: public key authentication failed ({refused_hint})")
    except paramiko.AuthenticationException as err:
        transport.close()
        raise error(f"{where}: the SSH key was refused ({err}): {refused_hint}") from err
    except KlharnessError:
        transport.close()
        raise
    except (paramiko.SSHException, OSError, EOFError) as err:
        transport.close()
        raise error(f"{where}: SSH handshake/auth failed: {type(err).__name__}: {err}") from err
    return transport


class Session:
    """One authenticated SSH connection to a guest, reused for every command."""

    def __init__(self, transport: paramiko.Transport, where: str, timeouts: Timeouts) -> None:
        self._transport = transport
        self.where = where
        self.timeouts = timeouts

    @classmethod
    def connect(cls, host: str, port: int, *, user: str, key: KeyPair, host_key: str | None,
                timeouts: Timeouts, deadline: float | Deadline | None = None,
                detail: Callable[[], str] | None = None, dial: Dial = tcp_dial) -> Session:
        """Wait for the greeting, then handshake, verify the pinned host key, authenticate.

        ``host_key=None`` is refused: an unpinned guest would be blind trust.
        """
        where = f"{user}@{host}:{port}"
        if not host_key:
            raise SSHError(f"{where}: no pinned host key for this guest; klharness never accepts an unknown "
                           "host key (record it at image build, or read it from the console)")
        # Each attempt waits longer than the one before (ssh_greeting_first, doubled up to ssh_greeting):
        # QEMU's user-mode network accepts at once and then sends the guest a SYN; a SYN sent while the
        # guest cannot take it (waking from S3, still booting) is retransmitted only seconds later, so
        # a new connection soon beats waiting on the first (an S3 wake reached SSH in ~8 s, not ~1 s).
        limits = _doubling(timeouts.ssh_greeting_first, timeouts.ssh_greeting)
        wait_for(f"the SSH greeting on {host}:{port}", lambda: read_greeting(host, port, next(limits), dial),
                 timeout=deadline if deadline is not None else timeouts.boot, transient=TRANSIENT_NET_ERRORS,
                 error=SSHError, detail=detail)
        def verify(server_key: paramiko.PKey) -> None:
            if not pinned_key_matches(host_key, server_key):
                raise SSHError(
                    f"{where}: host key mismatch: the guest presented {server_key.get_name()} "
                    f"{server_key.get_base64()[:24]}..., the image recorded {host_key.split()[0]} "
                    f"{[*host_key.split(), '', ''][1][:24]}...; refusing to continue (rebuild the image "
                    "if it changed: klharness image build --force NAME)")

        transport = start_transport(dial(host, port, timeouts.ssh_banner), timeouts, where=where, user=user,
                                    key=key.load(), verify=verify, error=SSHError,
                                    refused_hint="is the run's key in the guest's authorized_keys? the image takes "
                                                 "it from fw_cfg opt/klharness/authorized_key")
        log.debug("ssh connected: %s", where)
        return cls(transport, where, timeouts)

    @property
    def alive(self) -> bool:
        return self._transport.is_active()

    @property
    def transport(self) -> paramiko.Transport:
        """The connection itself (for channels of other kinds: harness.host.link's direct-tcpip)."""
        return self._transport

    def close(self) -> None:
        self._transport.close()

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def run(self, argv: Sequence[str] | str, *, timeout: float | None = None, stdin: bytes | None = None,
            check: bool = False) -> RemoteResult:
        """Run a command (argv list, quoted for you) with a hard timeout.

        A timeout closes the channel and returns ``timed_out=True`` (or raises with
        ``check``); a dropped connection raises SSHError — never a blind rerun,
        because the command may not be idempotent.
        """
        command = argv if isinstance(argv, str) else shlex.join(argv)
        limit = timeout if timeout is not None else self.timeouts.exec
        start = time.monotonic()
        try:
            chan = self._transport.open_session(timeout=self.timeouts.ssh_banner)
            chan.settimeout(limit)
            chan.exec_command(command)
            out, err, timed_out = _drain(chan, start + limit, stdin or b"")
            rc = -1 if timed_out else chan.recv_exit_status()
            chan.close()
            if rc == -1 and not timed_out:
                # paramiko's "no exit status": the server side went away mid-command.
                raise EOFError("the channel closed without an exit status"
                               + ("" if self._transport.is_active() else " and the connection is down"))
        except (paramiko.SSHException, OSError, EOFError) as exc:
            raise SSHError(f"{self.where}: connection lost while running `{command}` after "
                           f"{time.monotonic() - start:.1f}s: {type(exc).__name__}: {exc} (not retried: the command "
                           "may have run)") from exc
        result = RemoteResult(command, rc, out, err, time.monotonic() - start, timed_out)
        if check and not result.ok:
            raise SSHError(f"{self.where}: {result.describe()}")
        return result

    def stream(self, argv: Sequence[str], src: BinaryIO, dst: BinaryIO, *, timeout: float) -> int:
        """Run a command with ``src`` streamed to its stdin and its stdout written to ``dst`` as it comes.

        For line protocols that run as long as their input does (``klprobe vectors``): nothing
        is held in memory, an answer reaches ``dst`` as soon as the guest writes it.  Returns
        the exit status; stderr goes to the log.  Bounded by ``timeout`` as a whole.
        """
        command = shlex.join(argv)
        deadline = time.monotonic() + timeout
        try:
            chan = self._transport.open_session(timeout=self.timeouts.ssh_banner)
            chan.exec_command(command)
            feeder = threading.Thread(target=_feed, args=(chan, src), name="ssh-stdin", daemon=True)
            feeder.start()
            while not (chan.exit_status_ready() and not chan.recv_ready() and not chan.recv_stderr_ready()):
                if chan.recv_ready():
                    dst.write(chan.recv(65536))
                    dst.flush()
                elif chan.recv_stderr_ready():
                    log.info("%s: %s", self.where, chan.recv_stderr(65536).decode(errors="replace").rstrip())
                elif time.monotonic() > deadline:
                    chan.close()
                    raise SSHError(f"{self.where}: `{command}` still ran after {timeout:.0f}s; stopped")
                else:
                    select.select([chan], [], [], 0.5)
            rc = chan.recv_exit_status()
            chan.close()
            return rc
        except (paramiko.SSHException, OSError, EOFError) as exc:
            raise SSHError(f"{self.where}: connection lost while streaming through `{command}`: "
                           f"{type(exc).__name__}: {exc}") from exc

    def upload(self, data: bytes, remote_path: str, *, mode: int = 0o755) -> None:
        """Write ``data`` to ``remote_path`` through an exec channel (no sftp server needed)."""
        tmp = f"{remote_path}.part"
        self.run(f"cat > {shlex.quote(tmp)} && chmod {mode:o} {shlex.quote(tmp)} && "
                 f"mv {shlex.quote(tmp)} {shlex.quote(remote_path)}",
                 stdin=data, timeout=self.timeouts.upload, check=True)


def _feed(chan: paramiko.Channel, src: BinaryIO) -> None:
    """Copy ``src`` into the channel's stdin until EOF, then close that direction."""
    try:
        # read1: whatever is there now (a pipe's line), not a full 64 KiB: answers flow as input does.
        read = getattr(src, "read1", src.read)
        while chunk := read(65536):
            chan.sendall(chunk)
    except (OSError, paramiko.SSHException) as err:
        log.warning("feeding stdin stopped: %s", err)
    finally:
        with contextlib.suppress(OSError, paramiko.SSHException):
            chan.shutdown_write()


def _drain(chan: paramiko.Channel, deadline: float, stdin: bytes = b"") -> tuple[bytes, bytes, bool]:
    """Feed ``stdin`` and read stdout and stderr until EOF and exit status, or until the deadline.

    Input is sent as the window allows while output is read: a command that
    answers as it reads (``klprobe vectors``) would otherwise fill its output
    window while we still block sending it input, and both sides would wait.
    """
    out, err = bytearray(), bytearray()
    sent = 0
    if not stdin:
        chan.shutdown_write()
    while True:
        if sent < len(stdin) and chan.send_ready():
            sent += chan.send(stdin[sent:sent + 65536])
            if sent == len(stdin):
                chan.shutdown_write()
            continue
        if chan.recv_ready():
            out += chan.recv(65536)
            continue
        if chan.recv_stderr_ready():
            err += chan.recv_stderr(65536)
            continue
        if chan.exit_status_ready() and not chan.recv_ready() and not chan.recv_stderr_ready():
            break
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            chan.close()
            return bytes(out), bytes(err), True
        # Waiting to send: poll soon (select wakes only for input); otherwise wait for output.
        select.select([chan], [], [], min(remaining, 0.01 if sent < len(stdin) else 0.5))
    return bytes(out), bytes(err), False
