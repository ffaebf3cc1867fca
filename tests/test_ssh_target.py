"""Reading a remote libvirt host's SSH login off its URI, and what makes a host count as remote.

Why these matter: the harness logs in to the host with the options the URI gives libvirt (the same
user, port, key), pins the host key from the URI's known_hosts file, and refuses a URI that asks for
host keys not to be checked — at config load, with the file and line.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from test_domain_xml import build

from harness.config import load_config
from harness.errors import ConfigError, HostError
from harness.ssh_target import SshTarget
from harness.virt.connection import is_local
from harness.virt.storage import run_volume, run_volume_prefixes


def test_the_login_comes_from_the_uri() -> None:
    t = SshTarget.from_uri("qemu+libssh://lab@tgl1:2222/system?keyfile=/k/id&sshauth=privkey&known_hosts=/k/kh")
    assert t is not None
    assert (t.user, t.host, t.port, t.keyfile, t.known_hosts) == ("lab", "tgl1", 2222, Path("/k/id"), Path("/k/kh"))
    assert t.host_key_entry() == "[tgl1]:2222"
    plain = SshTarget.from_uri("qemu+ssh://tgl2/system")
    assert plain is not None
    assert (plain.user, plain.port, plain.keyfile, plain.host_key_entry()) == ("root", 22, None, "tgl2")
    assert plain.known_hosts == Path.home() / ".ssh" / "known_hosts"
    assert SshTarget.from_uri("qemu:///system") is None
    assert SshTarget.from_uri("qemu+tls://tgl1/system") is None


@pytest.mark.parametrize("option", ["no_verify=1", "known_hosts_verify=ignore", "known_hosts_verify=auto"])
def test_uris_that_skip_host_key_checks_are_refused(option: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=f"sets {option}.*never accepts an unknown host key"):
        SshTarget.from_uri(f"qemu+ssh://root@tgl1/system?{option}")
    cfg = tmp_path / "lab.yaml"
    cfg.write_text(f"hosts:\n  - {{name: a, uri: 'qemu:///system'}}\n"
                   f"  - {{name: b, uri: 'qemu+ssh://tgl1/system?{option}'}}\nguests:\n  - name: g\n")
    with pytest.raises(ConfigError, match=rf"lab.yaml:3: hosts\[1\].uri: .*{option}"):
        load_config(cfg, display="lab.yaml")


def test_sim_remote_is_a_host_kind(tmp_path: Path) -> None:
    cfg = tmp_path / "r.yaml"
    cfg.write_text("hosts:\n  - {name: a, uri: 'qemu:///system'}\n  - {name: lab, uri: sim-remote}\n"
                   "guests:\n  - name: g\n")
    assert [h.uri for h in load_config(cfg).hosts] == ["qemu:///system", "sim-remote"]


def test_a_missing_known_hosts_file_and_key_are_named(tmp_path: Path) -> None:
    t = SshTarget.from_uri(f"qemu+ssh://root@tgl1/system?known_hosts={tmp_path}/nope&keyfile={tmp_path}/nokey")
    assert t is not None
    with pytest.raises(HostError, match=r"known_hosts file .*/nope does not exist.*ssh-keyscan -p 22 tgl1"):
        t.pinned_keys()
    with pytest.raises(HostError, match=r"no SSH key found \(looked for .*/nokey\)"):
        t.private_key()


def test_ssh_transports_are_remote_even_on_loopback() -> None:
    assert is_local("qemu:///system") and is_local("qemu+unix:///system?socket=/x")
    assert is_local("qemu+tcp://localhost/system")
    assert not is_local("qemu+ssh://root@127.0.0.1:2222/system")
    assert not is_local("qemu+libssh://root@127.0.0.1:2222/system?known_hosts=/k")
    assert not is_local("qemu+ssh://tgl1/system")


def test_a_remote_guests_serial_logs_nowhere_here() -> None:
    local = build()
    remote = build(remote_host=True)
    assert local.find("devices/serial/log") is not None
    assert remote.find("devices/serial/log") is None and remote.find("devices/serial") is not None
    assert ET.tostring(remote).count(b"console.log") == 0


def test_run_volumes_are_found_by_their_run() -> None:
    names = [run_volume(k, "klh-20261208-000000-ab12-g", "x") for k in ("fw", "save", "tag")]
    assert all(n.startswith(run_volume_prefixes("20261208-000000-ab12")) for n in names)
    assert not any(n.startswith(run_volume_prefixes("20261208-000000-ab1")) for n in names)
