"""Placement of guests on hosts: capability first, then balance; and a real two-daemon run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.config import load_config
from harness.plan.matrix import plan
from harness.plan.placement import HostCapability, place

REPO = Path(__file__).resolve().parent.parent


def config(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "m.yaml"
    p.write_text(text)
    return p


def test_native_guests_only_on_native_hosts(tmp_path: Path) -> None:
    c = load_config(config(tmp_path, "run: {kl_backend: native}\nguests:\n  - name: a\n    kl: {enabled: true}\n"
                                     "  - name: b\n    kl: {enabled: false}\n"))
    hosts = [HostCapability("plain", False), HostCapability("tigerlake", True)]
    where = place(plan(c), hosts, c)
    assert where.host_of["a"] == "tigerlake"
    only_plain = place(plan(c), [HostCapability("plain", False)], c)
    assert "a" in only_plain.unplaced and "host-check" in only_plain.unplaced["a"]
    assert only_plain.host_of == {"b": "plain"}


def test_spread_balances_boots(tmp_path: Path) -> None:
    c = load_config(REPO / "configs/ci.yaml")
    where = place(plan(c), [HostCapability("h1", False), HostCapability("h2", False)], c)
    assert set(where.host_of.values()) == {"h1", "h2"} and not where.unplaced
    # kl-full carries 7 boots (probe + 6 lifecycle cells); the four single-boot guests go to the other host.
    assert [g for g, h in where.host_of.items() if h == where.host_of["kl-full"]] == ["kl-full"]


def test_hosts_config_errors(tmp_path: Path) -> None:
    from harness.errors import ConfigError

    with pytest.raises(ConfigError, match=r"m.yaml:3: hosts\[1\]: same name or URI as hosts\[0\]"):
        load_config(config(tmp_path, "hosts:\n  - {name: a, uri: 'qemu:///system'}\n  - {name: a, uri: local-peer}\n"
                                     "guests:\n  - name: g\n"), display="m.yaml")
    with pytest.raises(ConfigError, match=r"hosts\[0\].uri: 'lab1' is not a libvirt URI"):
        load_config(config(tmp_path, "hosts:\n  - {name: a, uri: lab1}\nguests:\n  - name: g\n"))


@pytest.mark.integration
def test_two_host_matrix_gives_one_record(pytester: pytest.Pytester, tmp_path: Path) -> None:
    pytester.makepyfile(test_instructions=(REPO / "testcases/test_instructions.py").read_text())
    cfg = pytester.makefile(".yaml", matrix="""
run: {kl_backend: emulated, profile: emulated, parallel: 2}
hosts:
  - {name: local, uri: "qemu:///system"}
  - {name: peer, uri: local-peer, stage_files: true}
guests:
  - name: kl-on
    kl: {enabled: true}
  - name: kl-off
    kl: {enabled: false}
""")
    res = pytester.runpytest_subprocess(f"--kl-config={cfg}", f"--kl-results={tmp_path}", "--kl-run-id=two",
                                        "-p", "no:cacheprovider", timeout=600)
    outcomes = res.parseoutcomes()
    assert outcomes.get("passed", 0) >= 50 and "failed" not in outcomes, res.stdout.str()[-2000:]
    record = json.loads((tmp_path / "two" / "record.json").read_text())
    assert sorted(record["placement"].values()) == ["local", "peer"]
    assert {g["host"] for g in record["guests"].values()} == {"local", "peer"}
    assert record["status"] == "complete" and "peer" in record["other_hosts"]
    assert list(record["staged_images"]) == ["peer/mini"]  # boot files went through the peer's storage pool


def test_qemu_kl_guests_need_no_native_host() -> None:
    from harness.config.model import Config, GuestConfig, KlConfig, RunSettings
    from harness.plan.matrix import plan
    from harness.plan.placement import HostCapability, place

    g = GuestConfig(name="q", kl=KlConfig(enabled=True), vmm="qemu-kl")
    config = Config("x", RunSettings(), (g,))
    result = place(plan(config), [HostCapability("a", False), HostCapability("b", False)], config)
    assert result.host_of == {"q": "a"} and result.unplaced == {}
