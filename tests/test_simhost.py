"""The simulated remote lab host (scripts/sim-remote-host): shares nothing with this machine but an SSH
port, as a real lab host.  What later remote-host work is tested against, so each isolation it claims
is checked here: its own hostname and libvirt daemon reached over ``qemu+ssh``, its host key pinned
(an unknown one refused), its loopback and its files invisible from here, no address outside
127.0.0.0/8 in it, and nothing left once it stops."""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import libvirt
import pytest

from harness.paths import REPO_DIR

pytestmark = pytest.mark.integration

SCRIPT = REPO_DIR / "scripts" / "sim-remote-host"


@dataclass(frozen=True)
class SimHost:
    name: str
    port: int
    key: Path  # the private key of its root login
    known_hosts: Path  # its host key, pinned
    state: Path

    def ssh(self, command: str, *, known_hosts: Path | None = None,
            check: bool = True) -> subprocess.CompletedProcess[str]:
        argv = ["ssh", "-p", str(self.port), "-i", str(self.key), "-o", "BatchMode=yes",
                "-o", "StrictHostKeyChecking=yes", "-o", f"UserKnownHostsFile={known_hosts or self.known_hosts}",
                "-o", "LogLevel=ERROR", "root@127.0.0.1", command]
        res = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
        if check:
            assert res.returncode == 0, f"{command}: {res.returncode}\n{res.stdout}{res.stderr}"
        return res

    def uri(self, known_hosts: Path | None = None) -> str:
        """libvirt over libssh: unlike the ``ssh`` transport it takes a known_hosts file, so the host key is
        pinned by the URI (an unknown key is refused, never accepted silently)."""
        return (f"qemu+libssh://root@127.0.0.1:{self.port}/system?keyfile={self.key}&sshauth=privkey"
                f"&known_hosts={known_hosts or self.known_hosts}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def namespace_pids(state: Path) -> list[int]:
    """Processes in the simulated host's network namespace (read while it runs)."""
    holder = int((state / "holder.pid").read_text())
    ns = os.readlink(f"/proc/{holder}/ns/net")
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if os.readlink(entry / "ns" / "net") == ns:
                    out.append(int(entry.name))
            except OSError:
                continue
    return out


def alive(pid: int) -> bool:
    """A process that still runs (a zombie does not: this container's init does not reap orphans)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


@pytest.fixture(scope="module")
def sim_host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimHost]:
    if os.geteuid() != 0:
        pytest.skip("the simulated host needs root (namespaces, tmpfs mounts, daemons)")
    tmp = tmp_path_factory.mktemp("sim")
    key = tmp / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True, timeout=30)
    name, port = f"klh-sim-{secrets.token_hex(3)}", free_port()
    started = time.monotonic()
    res = subprocess.run([str(SCRIPT), "start", name, str(port), f"{key}.pub"], capture_output=True, text=True,
                         timeout=120, check=False)
    assert res.returncode == 0, res.stdout + res.stderr
    print(f"simulated host {name} up in {time.monotonic() - started:.2f}s")
    state = Path(res.stdout.strip().splitlines()[-1])
    known = tmp / "known_hosts"
    key_type, key_data = (state / "host_key.pub").read_text().split()[:2]
    known.write_text(f"[127.0.0.1]:{port} {key_type} {key_data}\n")
    host = SimHost(name, port, key, known, state)
    try:
        yield host
    finally:
        subprocess.run([str(SCRIPT), "stop", name], timeout=60, check=False)


def test_it_answers_ssh_as_itself_with_its_pinned_host_key(sim_host: SimHost, tmp_path: Path) -> None:
    assert sim_host.ssh("hostname").stdout.strip() == sim_host.name
    stranger = tmp_path / "empty_known_hosts"
    stranger.write_text("")
    refused = sim_host.ssh("true", known_hosts=stranger, check=False)
    assert refused.returncode != 0 and "Host key verification failed" in refused.stderr


def test_its_own_libvirt_daemon_answers_over_ssh_with_the_host_key_pinned(sim_host: SimHost, tmp_path: Path) -> None:
    stranger = tmp_path / "empty_known_hosts"
    stranger.write_text("")
    with pytest.raises(libvirt.libvirtError, match="verify the session host key"):
        libvirt.open(sim_host.uri(stranger))
    remote = libvirt.open(sim_host.uri())
    local = libvirt.open("qemu:///system")
    try:
        assert remote.getHostname() == sim_host.name
        assert remote.listAllDomains(0) == []  # an empty host: none of this machine's domains
        assert remote.getCapabilities() and remote.getVersion() == local.getVersion()
        uuid = "<uuid>"
        assert remote.getCapabilities().split(uuid)[1][:36] != local.getCapabilities().split(uuid)[1][:36]
    finally:
        remote.close()
        local.close()


def test_its_loopback_is_not_this_machines(sim_host: SimHost) -> None:
    port = free_port()
    sim_host.ssh(f"nohup socat -T 20 TCP-LISTEN:{port},bind=127.0.0.1,fork SYSTEM:'echo inside' "
                 ">/dev/null 2>&1 </dev/null & sleep 0.3")
    assert sim_host.ssh(f"socat -T 5 - TCP:127.0.0.1:{port} </dev/null").stdout.strip() == "inside"
    with pytest.raises(ConnectionRefusedError), socket.create_connection(("127.0.0.1", port), timeout=5):
        pass
    addresses = sim_host.ssh("ip -o addr show").stdout
    found = [line.split()[3] for line in addresses.splitlines() if " inet" in line]
    assert found and all(a.startswith("127.") or a == "::1/128" for a in found), addresses


def test_its_files_are_not_this_machines(sim_host: SimHost) -> None:
    marker = f"klh-sim-probe-{secrets.token_hex(4)}"
    for directory in ("/var/tmp", "/run", "/var/lib/libvirt", "/var/log/libvirt", "/etc/libvirt"):
        sim_host.ssh(f"echo secret > {directory}/{marker} && test -s {directory}/{marker}")
        assert not Path(directory, marker).exists(), f"{directory}/{marker} of the simulated host is visible here"
    mounts = sim_host.ssh("findmnt -n -o TARGET,SOURCE,FSTYPE").stdout
    for directory in ("/run", "/etc/libvirt", "/var/lib/libvirt"):
        assert f"{directory} tmpfs-{sim_host.name} tmpfs" in " ".join(mounts.split()), mounts


def test_stop_leaves_no_process_no_state_and_no_port(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("the simulated host needs root")
    key = tmp_path / "id"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True, timeout=30)
    name, port = f"klh-sim-{secrets.token_hex(3)}", free_port()
    res = subprocess.run([str(SCRIPT), "start", name, str(port), f"{key}.pub"], capture_output=True, text=True,
                         timeout=120, check=False)
    assert res.returncode == 0, res.stdout + res.stderr
    state = Path(res.stdout.strip().splitlines()[-1])
    pids = namespace_pids(state)
    assert len(pids) >= 4  # holder, sshd, virtlogd, libvirtd, the bridge's socat
    subprocess.run([str(SCRIPT), "stop", name], timeout=60, check=True)
    assert not state.exists()
    assert [p for p in pids if alive(p)] == []
    with pytest.raises(ConnectionRefusedError), socket.create_connection(("127.0.0.1", port), timeout=5):
        pass
    assert subprocess.run([str(SCRIPT), "status", name], timeout=30, check=False).returncode != 0


def test_bad_arguments_are_named() -> None:
    for argv, message in ((["start", "Bad_Name", "2222", "/nonexistent"], "NAME Bad_Name"),
                          (["start", "ok", "80", "/nonexistent"], "PORT 80"),
                          (["start", "ok", "2222", "/nonexistent"], "PUBKEY_FILE /nonexistent: not readable"),
                          (["frobnicate"], "usage:")):
        res = subprocess.run([str(SCRIPT), *argv], capture_output=True, text=True, timeout=30, check=False)
        assert res.returncode != 0 and message in res.stderr, (argv, res.stderr)
