"""Shared fixtures for klharness's own tests."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from harness import cbuild
from harness.images.artifact import ImageArtifact
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


# -- shared by the harness.virt integration tests (real daemon, real mini image) ----------------------


@pytest.fixture(scope="module")
def real_conn() -> Iterator[Any]:
    """A connection to the system libvirt daemon; fails (not skips) when it is down."""
    from virt_support import open_real_conn

    yield from open_real_conn()


@pytest.fixture(scope="module")
def mini_image() -> ImageArtifact:
    """The mini image, where QEMU (user libvirt-qemu) can read it."""
    from virt_support import obtain_mini_image

    return obtain_mini_image()
