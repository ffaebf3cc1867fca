"""Expectation profiles: the shipped ones load and are consistent; bad ones fail with file:line."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from harness.config import load_config
from harness.errors import ConfigError
from harness.kl.checks import all_known_check_ids
from harness.paths import available_profiles
from harness.plan.profiles import check_config, load_profile

REPO = Path(__file__).resolve().parent.parent
BAD = sorted((REPO / "tests/data/bad/profile").glob("*.yaml"))


def test_the_four_profiles_exist() -> None:
    assert {"emulated", "stock-kvm", "kvm-kl-rfc", "baremetal-kl"} <= set(available_profiles())


@pytest.mark.parametrize("name", available_profiles())
def test_every_known_check_has_an_expectation(name: str) -> None:
    profile = load_profile(name)
    missing = [c for c in all_known_check_ids() if profile.expectation(c) is None]
    assert missing == []


def test_emulated_profile_lifecycle() -> None:
    p = load_profile("emulated")
    assert p.lifecycle["save-restore"].handle == "valid" and p.lifecycle["reboot"].handle == "invalid"
    assert p.hidden_bits == ("nobackup", "random_keysource") and p.provenance == "emulated"


def test_stock_kvm_cannot_expose() -> None:
    p = load_profile("stock-kvm")
    assert p.kl_exposure == "impossible" and "CR4.KL as reserved" in p.impossible_reason


def test_rfc_profile_refuses_migration() -> None:
    assert load_profile("kvm-kl-rfc").lifecycle["migrate"].handle == "refused"


def test_unknown_profile_lists_the_available_ones() -> None:
    with pytest.raises(ConfigError, match=r"profile 'emulatd': no configs/profiles/emulatd.yaml \(available: "):
        load_profile("emulatd")


def test_random_keysource_under_a_forbidding_profile(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("guests:\n  - name: a\n    kl: {enabled: true, random_keysource: true}\n")
    with pytest.raises(ConfigError, match=r"c.yaml:2: guests\[a\].kl.random_keysource: profile 'emulated' forbids"):
        check_config(load_config(cfg, display="c.yaml"), load_profile("emulated"))
    check_config(load_config(cfg), load_profile("baremetal-kl"))  # allowed there


def test_lifecycle_event_without_expectation(tmp_path: Path) -> None:
    prof = tmp_path / "tiny.yaml"
    prof.write_text("name: tiny\nlifecycle:\n  reboot: {handle: invalid, source: x}\n")
    cfg = tmp_path / "c.yaml"
    cfg.write_text("guests:\n  - name: a\n    kl: {enabled: true}\nlifecycle: [save-restore]\n")
    with pytest.raises(ConfigError, match="'save-restore' has no expectation in profile 'tiny'"):
        check_config(load_config(cfg), load_profile(prof))


@pytest.mark.parametrize("path", BAD, ids=[p.stem for p in BAD])
def test_bad_profile(path: Path) -> None:
    header = path.read_text().splitlines()[0]
    m = re.match(r"^# expect: (\d+): (.*)$", header)
    assert m
    with pytest.raises(ConfigError) as err:
        load_profile(path)
    assert f":{m.group(1)}: " in str(err.value) and m.group(2) in str(err.value), str(err.value)


def test_a_lifecycle_expectation_can_depend_on_the_guest() -> None:
    from harness.config.model import GuestConfig, KlConfig

    p = load_profile("qemu-kl")
    plain = GuestConfig(name="a", kl=KlConfig(enabled=True))
    blocked = GuestConfig(name="b", kl=KlConfig(enabled=True, migration_blocker=True), vmm="qemu-kl")
    no_restore = GuestConfig(name="c", kl=KlConfig(enabled=True), helper_params=("restore=0",))
    assert p.lifecycle["migrate"].for_guest(plain).handle == "valid"
    assert p.lifecycle["migrate"].for_guest(blocked).handle == "refused"
    assert p.lifecycle["vcpu-hotplug"].for_guest(no_restore).handle == "invalid"
    assert p.lifecycle["vcpu-hotplug"].for_guest(plain).handle == "valid"
    assert p.provenance == "vmm" and p.hidden_bits == ()


def test_an_override_is_checked_like_its_event(tmp_path: Path) -> None:
    bad = tmp_path / "x.yaml"
    bad.write_text("name: x\nlifecycle:\n  migrate:\n    handle: valid\n    source: s\n"
                   "    migration_blocker: {handle: sometimes, source: t}\n")
    with pytest.raises(ConfigError, match=r"x.yaml:6: lifecycle.migrate.migration_blocker.handle: 'sometimes'"):
        load_profile(bad)
