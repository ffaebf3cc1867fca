"""The catalogue on qemu-kl judges what the VMM does: a deliberately broken expectation in the
qemu-kl profile turns exactly its cells red, and the other cells stay green."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from harness.paths import REPO_DIR

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_a_broken_expectation_fails_exactly_its_cells(tmp_path: Path) -> None:
    profile = (REPO_DIR / "configs" / "profiles" / "qemu-kl.yaml").read_text()
    broken = profile.replace("  save-restore:\n    handle: valid", "  save-restore:\n    handle: invalid", 1)
    assert broken != profile
    (tmp_path / "qemu-kl.yaml").write_text(broken)
    res = subprocess.run(
        [sys.executable, "-m", "pytest", str(REPO_DIR / "testcases"), "-p", "no:cacheprovider", "-q",
         "--kl-config", str(REPO_DIR / "configs" / "qemu-kl.yaml"), "--kl-profile", str(tmp_path / "qemu-kl.yaml"),
         "--kl-results", str(tmp_path / "results"), "-k", "test_handle_across_event and (save-restore or reboot)"],
        capture_output=True, text=True, timeout=1200, cwd=REPO_DIR)
    [record_path] = (tmp_path / "results").glob("*/record.json")
    tests = {t["event"]: t for t in json.loads(record_path.read_text())["tests"]}
    assert set(tests) == {"save-restore", "reboot"}, res.stdout[-2000:]
    assert tests["save-restore"]["outcome"] == "failed"
    assert "after save-restore the handle is valid, profile qemu-kl expects invalid" in tests["save-restore"]["reason"]
    assert tests["reboot"]["outcome"] == "passed"
    assert res.returncode == 1
