"""Config loading: the shipped configs load, and every malformed config in
tests/data/bad/config fails with the message and line its header expects."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from harness.config import load_config
from harness.errors import ConfigError

REPO = Path(__file__).resolve().parent.parent
BAD = sorted((REPO / "tests/data/bad/config").glob("*.yaml"))
EXPECT_RE = re.compile(r"^# expect: (\d+): (.*)$")


def test_there_are_at_least_thirty_bad_configs() -> None:
    assert len(BAD) >= 30


@pytest.mark.parametrize("path", BAD, ids=[p.stem for p in BAD])
def test_bad_config_names_file_line_field_and_fix(path: Path) -> None:
    header = path.read_bytes().decode(errors="replace").splitlines()[0]
    m = EXPECT_RE.match(header)
    assert m, f"{path.name}: first line must be '# expect: LINE: MESSAGE'"
    line, message = m.groups()
    with pytest.raises(ConfigError) as err:
        load_config(path, display=path.name)
    text = str(err.value)
    assert text.startswith(f"{path.name}:{line}: "), text
    assert message in text, text


MATRICES = sorted(p for p in (REPO / "configs").glob("*.yaml") if p.name != "known-issues.yaml")


@pytest.mark.parametrize("path", MATRICES, ids=lambda p: p.name)
def test_shipped_configs_load(path: Path) -> None:
    config = load_config(path)
    assert config.guests


def test_ci_config_shape() -> None:
    c = load_config(REPO / "configs/ci.yaml")
    assert [g.name for g in c.guests] == ["kl-full", "kl-off", "leaf19-zero", "kl-no-aeskle", "kl-host-uses-kl"]
    full = c.guest("kl-full")
    assert full.kl.enabled and full.kl.wide and not full.kl.random_keysource and full.memory_mib == 512
    assert c.lifecycle_for(full) == ("save-restore", "managed-save", "reboot", "suspend", "vcpu-hotplug", "migrate")
    assert c.lifecycle_for(c.guest("kl-off")) == ()


def test_missing_file_says_where_configs_live(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"nope.yaml: no such file \(configs live in configs/"):
        load_config(tmp_path / "nope.yaml")


@pytest.mark.parametrize(("text", "mib"), [("512M", 512), ("2G", 2048), ("1024", 1024), ("1GiB", 1024)])
def test_sizes(tmp_path: Path, text: str, mib: int) -> None:
    p = tmp_path / "c.yaml"
    p.write_text(f"guests:\n  - name: a\n    memory: {text}\n")
    assert load_config(p).guests[0].memory_mib == mib


def test_lab_knobs(tmp_path: Path) -> None:
    from harness.plan.matrix import plan

    p = tmp_path / "lab.yaml"
    p.write_text("images:\n  debian: {kernel_package: linux-image-6.9.0-kl-amd64}\nguests:\n  - name: a\n"
                 "    image: debian\n    extra_cmdline: keylocker.force=1\n"
                 "    helper: {load: true, params: [force=1]}\n    vcpus: 1\n    max_vcpus: 2\n")
    c = load_config(p)
    g = c.guests[0]
    assert g.helper and g.helper_params == ("force=1",)
    assert c.image_options == {"debian": {"kernel_package": "linux-image-6.9.0-kl-amd64"}}
    assert plan(c)[0].spec.extra_cmdline == "keylocker.force=1"


def test_the_lab_and_qemu_kl_matrices_ask_the_same_questions() -> None:
    """configs/lab-tigerlake.yaml and configs/qemu-kl.yaml differ only in run: (host, VMM, profile)."""
    import dataclasses

    lab, vmm = load_config(REPO / "configs/lab-tigerlake.yaml"), load_config(REPO / "configs/qemu-kl.yaml")
    assert [dataclasses.replace(g, line=0) for g in lab.guests] == [dataclasses.replace(g, line=0) for g in vmm.guests]
    assert (lab.lifecycle, lab.timeouts, lab.hosts) == (vmm.lifecycle, vmm.timeouts, vmm.hosts)
    assert (lab.run.vmm, lab.run.profile, lab.run.accel) == ("system", "kvm-kl-rfc", "kvm")
    assert (vmm.run.vmm, vmm.run.profile, vmm.run.accel) == ("qemu-kl", "qemu-kl", "tcg")


def test_an_empty_section_gets_exactly_the_models_defaults(tmp_path: Path) -> None:
    """Defaults are declared once, in config/model.py: the loader reads them from there."""
    from dataclasses import replace

    from harness.config.model import GuestConfig, KlConfig, RunSettings
    from harness.timeouts import Timeouts

    cfg = tmp_path / "c.yaml"
    cfg.write_text("guests:\n  - name: a\n")
    loaded = load_config(cfg)
    assert loaded.run == RunSettings()
    assert loaded.timeouts == Timeouts()
    assert replace(loaded.guests[0], line=0) == GuestConfig(name="a")
    assert loaded.guests[0].kl == KlConfig()


def test_a_guest_spec_carries_every_field_it_shares_with_the_config() -> None:
    from dataclasses import fields

    from harness.config.model import Config, GuestConfig, RunSettings
    from harness.plan.matrix import plan_guest
    from harness.virt.spec import GuestSpec

    guest = GuestConfig(name="g", image="debian", vcpus=2, max_vcpus=4, memory_mib=1024, cpu_model="Skylake-Client",
                        cpu_features=(("aes", "require"),), extra_qemu_cpu_args=("level=28",), extra_cmdline="quiet")
    spec = plan_guest(guest, Config("t.yaml", RunSettings(), (guest,))).spec
    shared = {f.name for f in fields(GuestSpec)} & {f.name for f in fields(GuestConfig)} - {"kl", "kl_backend", "vmm"}
    assert shared >= {"image", "vcpus", "max_vcpus", "memory_mib", "cpu_model", "extra_cmdline"}
    assert {name: getattr(spec, name) for name in shared} == {name: getattr(guest, name) for name in shared}
