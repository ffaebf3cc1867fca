"""The probe document parser: good documents load, bad ones fail with a message naming the field."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from harness.errors import ProbeOutputError
from harness.kl.observations import parse_probe_output


def dump(doc: object) -> str:
    return json.dumps(doc)


def test_real_emulated_document_parses(sample_document: dict[str, object]) -> None:
    doc = parse_probe_output(dump(sample_document), "guest kl-full")
    assert doc.backend == "emulated"
    assert doc.cpu.source == "emulated" and doc.hardware_cpu.source == "hardware"
    assert doc.cpu.kl.usable and doc.cpu.kl.wide
    assert "aesenc128kl.fips197_c1" in doc.by_id()
    assert all(o.provenance == "emulated" for o in doc.observations)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d.__setitem__("schema_version", 2), "schema_version: 2 but this klharness reads version 1"),
        (lambda d: d.__setitem__("schema", "other"), "schema: 'other' is not 'klharness.probe'"),
        (lambda d: d.pop("complete"), "complete: missing: the document was cut short"),
        (lambda d: d.pop("backend"), "backend: missing"),
        (lambda d: d.__setitem__("backend", "magic"), "backend: 'magic' is not one of"),
        (lambda d: d["observations"][0].__setitem__("zf", 2), "observations[0].zf: 2 is not 0 or 1"),
        (lambda d: d["observations"][0].__setitem__("zf", "0"), "observations[0].zf: expected an integer"),
        (lambda d: d["observations"][1].__setitem__("signal", "SIGKILL"), "observations[1].signal: unknown signal"),
        (lambda d: d["observations"][0].__setitem__("provenance", "hw"), "observations[0].provenance: 'hw'"),
        (lambda d: d["observations"][0]["facts"].__setitem__("aad_ok", 1),
         "observations[0].facts.aad_ok: expected true or false"),
        (lambda d: d["cpu"].__setitem__("leaf7", []), "cpu.leaf7: expected an object, got a list"),
        (lambda d: d["hardware_cpu"]["leaf7"].pop("ecx"), "hardware_cpu.leaf7.ecx: missing"),
        (lambda d: d.__setitem__("observations", {}), "observations: expected a list"),
        (lambda d: d["observations"].append(copy.deepcopy(d["observations"][0])), "appears twice"),
    ],
)
def test_malformed_documents_name_the_field(sample_document: dict[str, object], mutate: object,
                                            message: str) -> None:
    doc = copy.deepcopy(sample_document)
    mutate(doc)  # type: ignore[operator]
    with pytest.raises(ProbeOutputError) as err:
        parse_probe_output(dump(doc), "guest kl-full")
    assert message in str(err.value)
    assert str(err.value).startswith("guest kl-full: ")


def test_truncated_document_says_truncated(sample_document: dict[str, object]) -> None:
    text = dump(sample_document)
    with pytest.raises(ProbeOutputError, match=r"not valid JSON .*truncated"):
        parse_probe_output(text[: len(text) // 2], "guest x")


def test_empty_output_points_at_stderr() -> None:
    with pytest.raises(ProbeOutputError, match="printed nothing"):
        parse_probe_output("  \n", "guest x")


def test_not_an_object() -> None:
    with pytest.raises(ProbeOutputError, match="document: expected an object, got a list"):
        parse_probe_output("[1, 2]", "guest x")


def test_huge_output_is_refused() -> None:
    with pytest.raises(ProbeOutputError, match="larger than any probe document"):
        parse_probe_output("x" * (17 * 1024 * 1024), "guest x")


BAD_PROBE = Path(__file__).resolve().parent / "data" / "bad" / "probe"
BAD_EXPECTED: dict[str, str] = json.loads((BAD_PROBE / "expected.json").read_text())


def test_there_are_at_least_ten_malformed_probe_outputs() -> None:
    assert len(BAD_EXPECTED) >= 10


@pytest.mark.parametrize("name", sorted(BAD_EXPECTED))
def test_malformed_probe_output_corpus(name: str) -> None:
    with pytest.raises(ProbeOutputError) as err:
        parse_probe_output((BAD_PROBE / name).read_bytes(), f"corpus/{name}")
    assert str(err.value).startswith(f"corpus/{name}: ")
    assert BAD_EXPECTED[name] in str(err.value)


def test_a_vmm_guests_native_results_are_relabelled_vmm_and_nothing_else(sample_document: dict[str, object]) -> None:
    import json
    from dataclasses import replace

    from harness.kl.observations import parse_probe_output, with_vmm_provenance

    doc = parse_probe_output(json.dumps(sample_document), "sample")
    native = replace(doc, backend="native", backend_reason="CPUID KL and AESKLE set",
                     observations=tuple(replace(o, provenance="native") for o in doc.observations[:3])
                     + tuple(replace(o, provenance="absent") for o in doc.observations[3:5]))
    got = with_vmm_provenance(native)
    assert got.backend == "vmm" and got.backend_reason.endswith("executed by the VMM (qemu-kl), not silicon")
    assert [o.provenance for o in got.observations] == ["vmm"] * 3 + ["absent"] * 2
    absent = with_vmm_provenance(replace(native, backend="absent"))
    assert absent.backend == "absent" and absent.backend_reason == "CPUID KL and AESKLE set"
