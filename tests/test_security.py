"""Secrets stay secret: a real catalogue run is scanned, artifact by artifact, for the per-VM
secret and the IWKey derived from it; files holding anything sensitive are private; SSH keys
are per run and host keys pinned."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from harness.guest.ssh import generate_keypair, pinned_key_matches
from harness.kl import refmodel

REPO = Path(__file__).resolve().parent.parent

CONFTEST = '''
import json, os
import harness.guest.probeguest as guestrun

_real = guestrun.fwcfg_entries
_seen = []

def _recording(plan, keypair, **kw):
    entries, secret = _real(plan, keypair, **kw)
    if secret is not None:
        _seen.append(secret.value.hex())
        with open(os.environ["KLH_TEST_SECRETS"], "w") as f:
            json.dump(_seen, f)
    return entries, secret

guestrun.fwcfg_entries = _recording
'''

MATRIX = """
run: {profile: emulated, kl_backend: emulated, keep: all}
guests:
  - name: kl-sec
    vcpus: 1
    kl: {enabled: true}
lifecycle: [save-restore]
"""


def _scan(root: Path, needles: dict[str, str]) -> list[str]:
    hits = []
    for path in root.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            for label, needle in needles.items():
                if needle.encode() in data or needle.upper().encode() in data:
                    hits.append(f"{path}: contains the {label}")
    return hits


@pytest.mark.integration
def test_no_secret_or_iwkey_in_any_artifact(pytester: pytest.Pytester, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    secrets_file = tmp_path / "secrets.json"
    monkeypatch.setenv("KLH_TEST_SECRETS", str(secrets_file))
    pytester.makeconftest(CONFTEST)
    for name in ("test_instructions.py", "test_lifecycle.py"):
        pytester.makepyfile(**{name[:-3]: (REPO / "testcases" / name).read_text()})
    cfg = pytester.makefile(".yaml", matrix=MATRIX)
    results = tmp_path / "results"
    junit = results / "junit.xml"
    res = pytester.runpytest_subprocess(
        f"--kl-config={cfg}", f"--kl-results={results}", "--kl-run-id=sec", f"--junitxml={junit}",
        "-p", "no:cacheprovider", "-v", "--log-level=DEBUG", "-rA", timeout=600)
    outcomes = res.parseoutcomes()
    assert outcomes.get("passed", 0) >= 40 and "failed" not in outcomes, res.stdout.str()[-3000:]
    secrets = json.loads(secrets_file.read_text())
    assert len(secrets) == 2  # the pooled guest and the lifecycle guest, each its own secret
    record = json.loads((results / "sec" / "record.json").read_text())
    needles: dict[str, str] = {}
    for i, secret in enumerate(secrets):
        needles[f"secret {i}"] = secret
        for name, guest in record["guests"].items():
            probe = guest.get("probe")
            if isinstance(probe, dict):
                key = refmodel.derive_iwkey(bytes.fromhex(secret), bytes.fromhex(probe["boot_id"]))
                needles[f"integrity key ({name}, secret {i})"] = key.integrity.hex()
                needles[f"encryption key ({name}, secret {i})"] = key.enc.hex()
    assert _scan(results, needles) == []
    transcript = (res.stdout.str() + res.stderr.str()).lower()
    assert [label for label, needle in needles.items() if needle.lower() in transcript] == [], \
        "secret or IWKey in the pytest output/logs"
    assert (results / "sec" / "guests" / "kl-sec" / "console.log").exists(), "keep: all must keep the console"


def test_ssh_keys_are_private_and_never_reused(tmp_path: Path) -> None:
    a = generate_keypair(tmp_path / "a", "klharness-a")
    b = generate_keypair(tmp_path / "b", "klharness-b")
    assert stat.S_IMODE(os.stat(a.private_path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(a.private_path.parent).st_mode) == 0o700
    assert a.public_line.split()[1] != b.public_line.split()[1]
    with pytest.raises(FileExistsError):
        generate_keypair(tmp_path / "a", "again")  # never overwritten, never reused


def test_pinned_host_key_comparison() -> None:
    import paramiko

    key = paramiko.Ed25519Key.from_private_key_file(str(generate_keypair(Path(os.environ.get(
        "TMPDIR", "/tmp")) / f"klh-pin-{os.getpid()}", "x").private_path))
    line = f"{key.get_name()} {key.get_base64()}"
    assert pinned_key_matches(line, key)
    other = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKV5OKneVahtvcIWJirJQ/1muAG1mgj5Cu433sV5i2jP"
    assert not pinned_key_matches(other, key)
    assert not pinned_key_matches("garbage", key)
    assert not pinned_key_matches("ssh-rsa " + key.get_base64(), key)


def test_emulator_config_files_are_private(tmp_path: Path) -> None:
    from harness.kl import emuconfig

    path = emuconfig.write_private(tmp_path / "d" / "klemu.conf", "secret = 00\n")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert "value" not in repr(emuconfig.VmSecret.generate())
