"""Config -> guest plans and cells: backend resolution, the VMM's refusal, the emulated CPU."""

from __future__ import annotations

from pathlib import Path

from harness.config import load_config
from harness.plan.matrix import cells, plan, resolve_backend

REPO = Path(__file__).resolve().parent.parent


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "m.yaml"
    p.write_text(text)
    return p


def test_ci_matrix_plans() -> None:
    plans = {p.name: p for p in plan(load_config(REPO / "configs/ci.yaml"))}
    full = plans["kl-full"]
    assert full.backend == "emulated" and full.emulated_cpu is not None
    assert full.emulated_cpu.restrictions == {"cpl0", "noencrypt", "nodecrypt"}
    assert not full.emulated_cpu.nobackup and not full.emulated_cpu.random_keysource
    assert full.spec.top_vcpus == 3 and full.spec.extra_cmdline == ""
    assert plans["kl-off"].emulated_cpu is None and not plans["kl-off"].spec.kl.enabled
    assert plans["leaf19-zero"].spec.qemu_cpu_globals() == ("x86_64-cpu.level=0x19", "x86_64-cpu.min-level=0x19")
    refused = plans["kl-host-uses-kl"]
    assert refused.refused and "host kernel uses Key Locker" in refused.refused
    assert not refused.spec.kl.enabled and refused.emulated_cpu is None
    no_aeskle = plans["kl-no-aeskle"]
    assert no_aeskle.emulated_cpu is not None and not no_aeskle.emulated_cpu.cr4_kl


def test_auto_backend_is_native_only_where_the_host_runs_kl(tmp_path: Path) -> None:
    c = load_config(write(tmp_path, "run: {kl_backend: auto}\nguests:\n  - name: a\n    kl: {enabled: true}\n"))
    assert resolve_backend(c.guests[0], c, host_kl_usable=False) == "emulated"
    assert resolve_backend(c.guests[0], c, host_kl_usable=True) == "native"
    native = plan(c, host_kl_usable=True)[0]
    assert native.emulated_cpu is None and native.spec.cpu_feature_policies() == (("keylocker", "require"),)


def test_guest_backend_overrides_run(tmp_path: Path) -> None:
    c = load_config(write(tmp_path, "run: {kl_backend: emulated}\nguests:\n  - name: a\n    kl_backend: native\n"
                                    "    kl: {enabled: true}\n"))
    assert plan(c)[0].backend == "native"


def test_cells_have_lifecycle_only_for_usable_exposed_kl() -> None:
    ids = [c.id for c in cells(load_config(REPO / "configs/ci.yaml"))]
    assert "kl-full/save-restore" in ids and "kl-full/vcpu-hotplug" in ids
    assert not any(i.startswith(("kl-off/", "kl-no-aeskle/", "kl-host-uses-kl/")) and not i.endswith("/probe")
                   for i in ids)
