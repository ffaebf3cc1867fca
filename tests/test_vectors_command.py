"""``klharness vectors``: lines streamed through a guest's real Key Locker (qemu-kl here), and its refusals."""

from __future__ import annotations

import json
import os
import selectors
import subprocess
import sys
import time

import pytest

from harness.commands.vectors import FULL, kl_shape
from harness.errors import ConfigError

KLHARNESS = [sys.executable, "-m", "harness.cli"]
KNOWN = {"op": "setiwkey", "integrity": bytes(range(16)).hex(), "enc": bytes(range(16, 48)).hex()}
ENCODE = {"op": "encodekey128", "src": 0, "key": bytes(range(16)).hex(), "id": "ref"}
REFERENCE = "00" * 16 + "82fcc08ea7244263409641aae7af11f0f3285030ffa1d7073fab929544b2d0fc"


def test_kl_shape_starts_full_and_names_the_accepted_fields() -> None:
    assert kl_shape([]) == FULL
    shape = kl_shape(["wide=false", "restrictions=cpl0,nodecrypt"])
    assert not shape.wide and shape.restrictions == ("cpl0", "nodecrypt") and shape.nobackup
    with pytest.raises(ConfigError, match=r"--kl 'speed=fast': expected FIELD=VALUE with FIELD one of aeskle, backup"):
        kl_shape(["speed=fast"])
    with pytest.raises(ConfigError, match=r"--kl 'wide=maybe': wide takes true or false"):
        kl_shape(["wide=maybe"])
    with pytest.raises(ConfigError, match=r"restrictions are a comma list of cpl0, noencrypt, nodecrypt"):
        kl_shape(["restrictions=cpl9"])


def read_line(proc: subprocess.Popen[bytes], timeout: float) -> bytes:
    """One stdout line of ``proc`` within ``timeout`` seconds (fails the test otherwise)."""
    assert proc.stdout is not None
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    deadline = time.monotonic() + timeout
    buf = b""
    while not buf.endswith(b"\n"):
        if not sel.select(max(0.0, deadline - time.monotonic())):
            raise AssertionError(f"no answer line within {timeout:.0f}s (so far {buf!r})")
        chunk = os.read(proc.stdout.fileno(), 1)
        if not chunk:
            raise AssertionError(f"stdout closed (so far {buf!r}); exit {proc.wait()}")
        buf += chunk
    return buf


@pytest.mark.integration
@pytest.mark.slow
def test_lines_stream_through_the_vmm_and_answers_come_as_they_go() -> None:
    proc = subprocess.Popen([*KLHARNESS, "vectors", "--vmm", "qemu-kl"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdin is not None and proc.stderr is not None
    try:
        proc.stdin.write((json.dumps(KNOWN) + "\n").encode())
        proc.stdin.flush()
        # The guest boots first; then the first answer arrives while stdin is still open.
        assert json.loads(read_line(proc, 300)) == {"op": "setiwkey", "ok": True}
        proc.stdin.write((json.dumps(ENCODE) + "\n").encode())
        proc.stdin.flush()
        answer = json.loads(read_line(proc, 60))
        assert answer["id"] == "ref" and answer["handle"] == REFERENCE and answer["fault"] is None
        proc.stdin.write(b'{"op":"cpu","kl":1}\n')
        proc.stdin.close()
        assert json.loads(read_line(proc, 60))["error"].startswith('op "cpu" shapes the emulated CPU')
        assert proc.wait(timeout=120) == 1  # an error line was answered: exit 1, as klprobe vectors
    finally:
        proc.kill()
        proc.wait()


@pytest.mark.integration
def test_kvm_where_kvm_is_not_usable_is_one_clear_error() -> None:
    from harness.virt.accel import kvm_usability, loaded_modules

    usable, why = kvm_usability(loaded_modules())
    if usable:
        pytest.skip(f"KVM is usable here ({why}): the refusal cannot be shown")
    res = subprocess.run([*KLHARNESS, "vectors", "--vmm", "kvm"], input=b"", capture_output=True, timeout=300)
    assert res.returncode == 3, res.stderr
    assert res.stderr.decode().startswith("klharness: error: accel 'kvm' was requested but KVM is not usable on this "
                                          "host: ")
