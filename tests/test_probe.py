"""The probe binary, run for real on this machine: native absent arm, emulated arm,
handle lifetime, configuration errors, and the judge on its output."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness import proc
from harness.kl import emuconfig
from harness.kl.observations import parse_probe_output
from harness.kl.spec import ARCHITECTURE, find_expectation, judge_all

KL_MNEMONICS = ["loadiwkey", "encodekey128", "encodekey256", "aesenc128kl", "aesdec128kl", "aesenc256kl",
                "aesdec256kl", "aesencwide128kl", "aesdecwide128kl", "aesencwide256kl", "aesdecwide256kl"]


def run_probe(klprobe: Path, *args: str | Path) -> str:
    return proc.run([klprobe, *args], timeout=120).stdout




def test_native_on_a_host_without_kl_reports_sigill_for_all_eleven(klprobe: Path) -> None:
    doc = parse_probe_output(run_probe(klprobe, "run", "--backend", "native", "--no-timing"), "local")
    if doc.hardware_cpu.kl.kl:
        pytest.skip("this host enumerates Key Locker; the absent arm does not apply")
    assert doc.backend == "absent" and not doc.kl_usable
    assert sorted(o.id for o in doc.observations) == sorted(f"ud.{m}" for m in KL_MNEMONICS)
    assert all(o.signal == "SIGILL" and o.provenance == "absent" for o in doc.observations)
    assert all(v.passed for v in judge_all(doc.observations))


def test_emulated_run_passes_every_check_with_emulated_provenance(klprobe: Path, emu_conf: Path) -> None:
    doc = parse_probe_output(run_probe(klprobe, "run", "--backend", "emulated", "--config", emu_conf,
                                       "--reps", "5", "--iters", "200"), "local")
    verdicts = judge_all(doc.observations)
    failed = [(v.check_id, v.reasons) for v in verdicts if not v.passed]
    assert failed == []
    assert len(verdicts) >= 45
    assert {o.provenance for o in doc.observations} == {"emulated"}
    assert doc.timing is not None and {"aesenc128kl_chain", "aesencwide128kl_x8"} <= set(doc.timing.figures)
    assert all(f.provenance == "emulated" for n, f in doc.timing.figures.items() if "kl" in n or "encode" in n)
    assert doc.emulator_stats and doc.emulator_stats["cache_hits"] > 0


def test_every_emitted_check_has_an_architectural_expectation(sample_document: dict[str, object]) -> None:
    doc = parse_probe_output(json.dumps(sample_document))
    missing = [o.id for o in doc.observations if find_expectation(o.id, ARCHITECTURE) is None]
    assert missing == []


def test_judge_fails_a_tampered_observation(sample_document: dict[str, object]) -> None:
    data = json.loads(json.dumps(sample_document))
    for obs in data["observations"]:
        if obs["id"] == "restrict.noencrypt.encrypt_rejected":
            obs["zf"] = 0  # the CPU would have encrypted with a no-encrypt handle
        if obs["id"] == "aesenc128kl.fips197_c1":
            obs["facts"]["matches_reference"] = False
    verdicts = {v.check_id: v for v in judge_all(parse_probe_output(json.dumps(data)).observations)}
    assert not verdicts["restrict.noencrypt.encrypt_rejected"].passed
    assert "expected rejection (ZF=1), observed success (ZF=0)" in verdicts[
        "restrict.noencrypt.encrypt_rejected"].reasons
    assert verdicts["aesenc128kl.fips197_c1"].reasons == ("matches_reference is false",)


def test_kl_off_virtual_cpu_raises_ud_in_the_emulator(klprobe: Path, tmp_path: Path) -> None:
    conf = emuconfig.write_private(tmp_path / "c", emuconfig.render(emuconfig.EmulatedCpu(kl=False),
                                                                    emuconfig.VmSecret.generate()))
    doc = parse_probe_output(run_probe(klprobe, "run", "--backend", "emulated", "--config", conf, "--no-timing"))
    assert (not doc.cpu.kl.kl and doc.cpu.leaf19 is None) or not doc.cpu.kl.kl
    assert {o.id for o in doc.observations} == {f"ud.{m}" for m in KL_MNEMONICS}
    assert all(o.signal == "SIGILL" for o in doc.observations)


def test_advertised_without_aeskle_is_unusable(klprobe: Path, tmp_path: Path) -> None:
    conf = emuconfig.write_private(tmp_path / "c", emuconfig.render(emuconfig.EmulatedCpu(cr4_kl=False),
                                                                    emuconfig.VmSecret.generate()))
    doc = parse_probe_output(run_probe(klprobe, "run", "--backend", "emulated", "--config", conf, "--no-timing"))
    assert doc.cpu.kl.kl and not doc.cpu.kl.aeskle and not doc.kl_usable
    assert all(o.id.startswith("ud.") and o.signal == "SIGILL" for o in doc.observations)


def test_no_wide_means_wide_forms_ud(klprobe: Path, tmp_path: Path) -> None:
    conf = emuconfig.write_private(tmp_path / "c", emuconfig.render(emuconfig.EmulatedCpu(wide=False),
                                                                    emuconfig.VmSecret.generate()))
    doc = parse_probe_output(run_probe(klprobe, "run", "--backend", "emulated", "--config", conf, "--no-timing"))
    ids = doc.by_id()
    assert ids["wide_absent.aesencwide128kl"].signal == "SIGILL"
    assert "aesencwide128kl.lanes" not in ids
    assert all(v.passed for v in judge_all(doc.observations))


def test_unsupported_restriction_gp(klprobe: Path, tmp_path: Path) -> None:
    cpu = emuconfig.EmulatedCpu(restrictions=frozenset({"cpl0"}))
    conf = emuconfig.write_private(tmp_path / "c", emuconfig.render(cpu, emuconfig.VmSecret.generate()))
    doc = parse_probe_output(run_probe(klprobe, "run", "--backend", "emulated", "--config", conf, "--no-timing"))
    ids = doc.by_id()
    assert ids["encodekey128.unsupported_restriction"].signal == "SIGSEGV"
    assert "restrict.noencrypt.encrypt_rejected" not in ids
    assert {i for i in ids if i.startswith("encodekey128.restrictions.")} == {
        "encodekey128.restrictions.r0", "encodekey128.restrictions.r1"}


def test_handle_survives_same_key_and_dies_with_another(klprobe: Path, tmp_path: Path) -> None:
    secret = emuconfig.VmSecret.generate()
    boot_a = "11111111-2222-3333-4444-555555555555"
    conf_a = emuconfig.write_private(tmp_path / "a", emuconfig.render(emuconfig.EmulatedCpu(), secret, boot_id=boot_a))
    conf_b = emuconfig.write_private(tmp_path / "b", emuconfig.render(
        emuconfig.EmulatedCpu(), secret, boot_id="99999999-2222-3333-4444-555555555555"))
    handle = tmp_path / "handle"
    proc.run([klprobe, "handle", "save", handle, "--backend", "emulated", "--config", conf_a], timeout=30)
    assert "secret" not in handle.read_text() and secret.value.hex() not in handle.read_text()
    same = parse_probe_output(run_probe(klprobe, "handle", "check", handle, "--backend", "emulated",
                                        "--config", conf_a)).by_id()["handle.check"]
    other = parse_probe_output(run_probe(klprobe, "handle", "check", handle, "--backend", "emulated",
                                         "--config", conf_b)).by_id()["handle.check"]
    assert same.facts["handle_valid"] and same.zf == 0
    assert not other.facts["handle_valid"] and other.zf == 1


def test_handle_check_of_missing_file_is_a_clear_error(klprobe: Path, emu_conf: Path, tmp_path: Path) -> None:
    res = proc.run([klprobe, "handle", "check", tmp_path / "nope", "--backend", "emulated", "--config", emu_conf],
                   timeout=30, check=False)
    assert res.returncode == 1
    assert "nope: No such file or directory (run 'klprobe handle save" in res.stderr


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("kll = 1\n", "line 1: unknown key 'kll' (known: kl, aeskle"),
        ("kl = 1\nleaf19_eax = seven\n", "line 2: leaf19_eax: 'seven' is not a number"),
        ("kl = 1\n\n\ncpl = 9\n", "line 4: cpl: 9 is not a privilege level"),
        ("secret = abcd\n", "line 1: secret: need 64 hex digits"),
        ("kl 1\n", "line 1: expected 'key = value'"),
        ("kl = 1\n", "no key material: give 'secret'"),
    ],
)
def test_bad_emulator_config_names_the_line(klprobe: Path, tmp_path: Path, text: str, message: str) -> None:
    conf = tmp_path / "klemu.conf"
    conf.write_text(text)
    res = proc.run([klprobe, "run", "--backend", "emulated", "--config", conf], timeout=30, check=False)
    assert res.returncode == 2
    assert message in res.stderr
    assert res.stdout == ""


def test_emulated_without_config_says_where_it_looked(klprobe: Path) -> None:
    res = proc.run([klprobe, "run", "--backend", "emulated"], timeout=30, check=False,
                   env={"KLEMU_CONFIG": ""})
    assert res.returncode == 2
    assert "/sys/firmware/qemu_fw_cfg/by_name/opt/klharness/klemu.conf/raw" in res.stderr


def test_bad_usage(klprobe: Path) -> None:
    res = proc.run([klprobe, "run", "--backend", "hardware"], timeout=30, check=False)
    assert res.returncode == 2 and "--backend must be auto, native or emulated" in res.stderr


@pytest.mark.parametrize("variant", [
    emuconfig.EmulatedCpu(),
    emuconfig.EmulatedCpu(wide=False),
    emuconfig.EmulatedCpu(restrictions=frozenset({"cpl0"})),
    emuconfig.EmulatedCpu(restrictions=frozenset()),
    emuconfig.EmulatedCpu(kl=False),
    emuconfig.EmulatedCpu(cr4_kl=False),
], ids=["full", "no-wide", "cpl0-only", "no-restrictions", "kl-off", "no-aeskle"])
def test_python_knows_exactly_which_checks_the_probe_emits(klprobe: Path, tmp_path: Path,
                                                           variant: emuconfig.EmulatedCpu) -> None:
    from harness.kl.checks import expected_check_ids

    conf = emuconfig.write_private(tmp_path / "c", emuconfig.render(variant, emuconfig.VmSecret.generate()))
    doc = parse_probe_output(run_probe(klprobe, "run", "--backend", "emulated", "--config", conf, "--no-timing"))
    assert [o.id for o in doc.observations] == expected_check_ids(doc.cpu.kl, usable=doc.kl_usable)


def test_random_keysource_key_does_not_follow_the_guest_to_another_host(klprobe: Path, tmp_path: Path) -> None:
    """keysource = 1: a guest-local random component + the host identity, so the VMM cannot re-derive it."""
    secret, rnd = emuconfig.VmSecret.generate(), str(tmp_path / "run" / "random")
    cpu = emuconfig.EmulatedCpu(random_keysource=True)

    def conf(name: str, host: bytes) -> Path:
        return emuconfig.write_private(tmp_path / name, emuconfig.render(cpu, secret, host_id=host,
                                                                         random_file=rnd))

    here, there = conf("here", b"\x01" * 32), conf("there", b"\x02" * 32)
    handle = tmp_path / "handle"
    proc.run([klprobe, "handle", "save", handle, "--backend", "emulated", "--config", here], timeout=30)
    assert (Path(rnd).stat().st_mode & 0o777) == 0o600

    def valid(c: Path) -> bool:
        doc = parse_probe_output(run_probe(klprobe, "handle", "check", handle, "--backend", "emulated", "--config", c))
        return bool(doc.by_id()["handle.check"].facts["handle_valid"])

    assert valid(here)
    assert not valid(there)  # another host identity
    Path(rnd).unlink()  # a new boot: the random component is gone
    assert not valid(here)
    doc = parse_probe_output(run_probe(klprobe, "run", "--backend", "emulated", "--config", here, "--no-timing"))
    assert doc.by_id()["encodekey128.restrictions.r0"].outputs["dest"] == 2  # KeySource 1 in DEST[4:1]
    assert doc.cpu.kl.random_keysource


def test_random_keysource_without_host_id_is_refused(klprobe: Path, tmp_path: Path) -> None:
    c = tmp_path / "c"
    c.write_text(f"kl = 1\nsecret = {'00' * 32}\nkeysource = 1\n")
    res = proc.run([klprobe, "run", "--backend", "emulated", "--config", c], timeout=30, check=False)
    assert res.returncode == 2 and "keysource = 1 needs host_id" in res.stderr
