"""klharness's own guest kernel (harness/images/ownkernel.py): the config fragment is taken whole or the
build names what it lost, the cache key follows every input, and the mini image's kernel option.
The build itself runs in scripts/setup-host and every integration test that boots ``mini``."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from harness.errors import BuildError, ImageError
from harness.images import debs, ownkernel
from harness.images.kernel import read_config
from harness.images.mini import KERNEL_REQUIREMENTS, MiniRecipe

PACKAGE = debs.Package("linux-source-6.1", "6.1.192-3", "ab" * 32, 1)


def test_the_fragment_is_read_as_options_set_and_unset() -> None:
    text = "# a comment\nCONFIG_PVH=y\n# CONFIG_AUDIT is not set\nCONFIG_NR_CPUS=8\n\nnot an option\n"
    assert ownkernel.wanted_options(text) == {"CONFIG_PVH": "y", "CONFIG_AUDIT": "n", "CONFIG_NR_CPUS": "8"}


def test_an_option_the_config_did_not_take_is_named_with_what_it_got(tmp_path: Path) -> None:
    config = {"CONFIG_PVH": "y", "CONFIG_NR_CPUS": "64"}
    with pytest.raises(BuildError) as err:
        ownkernel.check_result(config, "CONFIG_PVH=y\nCONFIG_NR_CPUS=8\nCONFIG_VIRTIO_NET=y\nCONFIG_AUDIT=n\n",
                               source=tmp_path / ".config")
    text = str(err.value)
    assert "CONFIG_NR_CPUS=8 (got 64)" in text and "CONFIG_VIRTIO_NET=y (got n)" in text
    assert "CONFIG_PVH" not in text and "CONFIG_AUDIT" not in text  # taken as asked: y, and unset = n
    assert str(ownkernel.FRAGMENT) in text and str(tmp_path / ".config") in text


def test_the_fragment_gives_the_mini_image_what_it_requires() -> None:
    """The fragment asks for every option the initramfs and the cells need, built in (no module to load)."""
    wanted = ownkernel.wanted_options(ownkernel.FRAGMENT.read_text())
    missing = {opt: want for opt, want in KERNEL_REQUIREMENTS.items() if wanted.get(opt) != "y"}
    assert missing == {}
    for needed in ("CONFIG_HOTPLUG_CPU", "CONFIG_SUSPEND", "CONFIG_MODULES", "CONFIG_HW_RANDOM_VIRTIO",
                   "CONFIG_ACPI_HOTPLUG_CPU", "CONFIG_VIRTIO_BLK"):
        assert wanted.get(needed) == "y", needed


def test_the_cache_key_moves_with_the_source_the_fragment_and_the_compiler() -> None:
    plan = ownkernel.KernelPlan(PACKAGE, "CONFIG_PVH=y\n", "gcc (Debian 12.2.0-14) 12.2.0")
    assert plan.key == ownkernel.KernelPlan(PACKAGE, "CONFIG_PVH=y\n", plan.compiler).key
    newer = dataclasses.replace(PACKAGE, version="6.1.193-1")
    keys = {plan.key, dataclasses.replace(plan, source=newer).key,
            dataclasses.replace(plan, fragment="CONFIG_PVH=y\nCONFIG_SMP=y\n").key,
            dataclasses.replace(plan, compiler="gcc (Debian 13.1.0-1) 13.1.0").key}
    assert len(keys) == 4


def test_a_built_kernel_that_says_nothing_readable_is_named_with_the_fix(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KLHARNESS_CACHE", str(tmp_path))
    plan = ownkernel.KernelPlan(PACKAGE, "CONFIG_PVH=y\n", "gcc 12")
    entry = tmp_path / "kernels" / f"{PACKAGE.version}-{plan.key[:16]}"
    entry.mkdir(parents=True)
    (entry / ownkernel.DONE).write_text("{not json")
    with pytest.raises(ImageError, match=rf"kernel.json: unreadable .*remove {entry}"):
        ownkernel.obtain_kernel(plan)


def test_mini_refuses_an_unknown_kernel_and_a_package_for_our_own() -> None:
    with pytest.raises(ImageError, match="option kernel='stock': expected one of klh, debian"):
        MiniRecipe().plan({"kernel": "stock"})
    with pytest.raises(ImageError, match=r"kernel_package=linux-image-x picks a Debian kernel package, but kernel "
                                         r"is klh .*add kernel=debian"):
        MiniRecipe().plan({"kernel_package": "linux-image-x"})


def test_mini_plans_our_kernel_by_default_and_debians_on_request() -> None:
    ours = MiniRecipe().plan({})
    assert "kernel_build" in ours.inputs and "kernel_package" not in ours.inputs
    assert ours.private["kernel_plan"].source.name.startswith("linux-source-")
    stock = MiniRecipe().plan({"kernel": "debian"})
    assert stock.inputs["kernel_package"].startswith("linux-image-") and "kernel_build" not in stock.inputs
    assert ours.key != stock.key


def test_read_config_of_a_fragment_agrees_with_wanted_options(tmp_path: Path) -> None:
    """A .config as kconfig writes it (what check_result reads) parses to the same y values."""
    path = tmp_path / ".config"
    path.write_text("CONFIG_PVH=y\n# CONFIG_AUDIT is not set\n")
    assert read_config(path) == {"CONFIG_PVH": "y"}
    ownkernel.check_result(read_config(path), "CONFIG_PVH=y\n# CONFIG_AUDIT is not set\n", source=path)
