"""How to log in to a libvirt host over SSH, read off its URI: user, host, port, key, pinned host keys.

Why its own module: the config loader checks these URIs when it reads them (a URI that turns host key
checks off is refused there, with its line), and the SSH link (:mod:`harness.host.link`) logs in with
them; neither should import the other's world.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import paramiko

from harness.errors import ConfigError, HostError
from harness.redact import redact_uri

SSH_TRANSPORTS = ("ssh", "libssh", "libssh2")
DEFAULT_KEYS = ("id_ed25519", "id_ecdsa", "id_rsa")
REFUSED_VERIFY = {"no_verify": ("1",), "known_hosts_verify": ("ignore", "auto")}


def unverified_host_keys(uri: str) -> str | None:
    """Why ``uri`` is refused when it asks libvirt not to check the host key, or None."""
    query = parse_qs(urlsplit(uri).query)
    for key, refused in REFUSED_VERIFY.items():
        if any(v in refused for v in query.get(key, ())):
            return (f"{redact_uri(uri)} sets {key}={query[key][0]}: klharness never accepts an unknown host key; "
                    "pin it with known_hosts=FILE (ssh-keyscan the host once and check the fingerprint) and drop "
                    "the option")
    return None


@dataclass(frozen=True)
class SshTarget:
    """Where and how to log in to a libvirt host, read off its URI."""

    uri: str
    user: str
    host: str
    port: int
    keyfile: Path | None  # None: the user's default keys
    known_hosts: Path

    @property
    def where(self) -> str:
        return f"{self.user}@{self.host}:{self.port}"

    @classmethod
    def from_uri(cls, uri: str, *, field: str = "hosts[].uri") -> SshTarget | None:
        """The login a ``driver+ssh|libssh|libssh2://`` URI implies; None for any other transport.

        ConfigError when the URI asks libvirt not to check the host key: klharness would then be the
        one to trust an unknown host silently.
        """
        parts = urlsplit(uri)
        transport = parts.scheme.partition("+")[2]
        if transport not in SSH_TRANSPORTS:
            return None
        if not parts.hostname:
            raise ConfigError(f"{field}: {redact_uri(uri)} names no host (qemu+ssh://root@HOST/system)")
        query = parse_qs(parts.query)
        if refused := unverified_host_keys(uri):
            raise ConfigError(f"{field}: {refused}")
        home = Path.home()
        keyfile = Path(query["keyfile"][0]) if "keyfile" in query else None
        known = Path(query["known_hosts"][0]) if "known_hosts" in query else home / ".ssh" / "known_hosts"
        return cls(uri, parts.username or "root", parts.hostname, parts.port or 22, keyfile, known)

    def host_key_entry(self) -> str:
        """How known_hosts names this host: ``host`` on port 22, ``[host]:port`` otherwise."""
        return self.host if self.port == 22 else f"[{self.host}]:{self.port}"

    def pinned_keys(self) -> dict[str, paramiko.PKey]:
        """The host's keys from known_hosts (by key type); HostError naming the file when there are none."""
        if not self.known_hosts.is_file():
            raise HostError(f"host {self.where}: known_hosts file {self.known_hosts} does not exist; pin the host "
                            f"key there (ssh-keyscan -p {self.port} {self.host} >> {self.known_hosts}, after checking "
                            "its fingerprint) or name the file in the URI: ?known_hosts=FILE")
        keys = paramiko.HostKeys()
        try:
            keys.load(str(self.known_hosts))
        except (OSError, paramiko.SSHException) as err:
            raise HostError(f"host {self.where}: cannot read known_hosts {self.known_hosts}: {err}") from err
        found = keys.lookup(self.host_key_entry())
        if not found:
            raise HostError(f"host {self.where}: its host key is not in {self.known_hosts} (looked for "
                            f"{self.host_key_entry()!r}); klharness never accepts an unknown host key — add it "
                            f"with ssh-keyscan -p {self.port} {self.host} after checking its fingerprint")
        return {name: found[name] for name in found}

    def private_key(self) -> paramiko.PKey:
        """The key the URI names, or the first of the user's default keys that exists."""
        candidates = [self.keyfile] if self.keyfile else [Path.home() / ".ssh" / n for n in DEFAULT_KEYS]
        for path in candidates:
            if path.is_file():
                try:
                    return paramiko.PKey.from_path(str(path))
                except (OSError, paramiko.SSHException, ValueError) as err:
                    raise HostError(f"host {self.where}: cannot load the SSH key {path}: {err} (an unencrypted "
                                    "OpenSSH private key; name it in the URI: ?keyfile=FILE)") from err
        shown = ", ".join(str(p) for p in candidates)
        raise HostError(f"host {self.where}: no SSH key found (looked for {shown}); name one in the URI: "
                        "?keyfile=FILE")
