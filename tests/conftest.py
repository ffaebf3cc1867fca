"""Shared fixtures for klharness's own tests."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness import cbuild
from harness.kl import emuconfig

pytest_plugins = ["pytester"]


@pytest.fixture(scope="session")
def klprobe() -> Path:
    """The probe binary, built once per session (cached by content hash)."""
    return cbuild.build("klprobe")


@pytest.fixture()
def emu_conf(tmp_path: Path) -> Path:
    """A Tiger Lake-like emulated CPU with a fresh secret, in a 0600 file."""
    text = emuconfig.render(emuconfig.EmulatedCpu(), emuconfig.VmSecret.generate())
    return emuconfig.write_private(tmp_path / "klemu.conf", text)


@pytest.fixture(scope="session")
def sample_document(klprobe: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """A real emulated probe document (no timing), as parsed JSON."""
    from harness import proc

    conf = tmp_path_factory.mktemp("conf") / "klemu.conf"
    emuconfig.write_private(conf, emuconfig.render(emuconfig.EmulatedCpu(), emuconfig.VmSecret.generate()))
    out = proc.run([klprobe, "run", "--backend", "emulated", "--config", conf, "--no-timing"], timeout=120)
    data: dict[str, object] = json.loads(out.stdout)
    return data
