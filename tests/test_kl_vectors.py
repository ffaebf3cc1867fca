"""harness.kl.vectors: the lines, the emulator's prefix and the comparison that the silicon and VMM
vector tests share — shown to catch a single altered answer."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness import proc
from harness.kl import vectors as v

TIGERLAKE = {"eax": 7, "ebx": 0x15, "ecx": 0}


def emulated(klprobe: Path, lines: list[dict[str, object]]) -> list[dict[str, object]]:
    res = proc.run([klprobe, "vectors", "--backend", "emulated"],
                   input_text="".join(json.dumps(x) + "\n" for x in lines), timeout=120, check=False)
    return [json.loads(line) for line in res.stdout.splitlines()]


def test_ops_cover_every_form_the_cpu_enumerates() -> None:
    ops = v.build_ops(TIGERLAKE)
    kinds = {o["op"] for o in ops}
    assert kinds == {"encodekey128", "encodekey256", *(f"aes{d}{w}{b}kl" for d in ("enc", "dec")
                                                     for w in ("", "wide") for b in (128, 256))}
    assert not any("wide" in o["op"] for o in v.build_ops({**TIGERLAKE, "ebx": 0x11}))
    assert [o["id"] for o in ops] == list(range(len(ops))) and ops == v.build_ops(TIGERLAKE)  # deterministic


def test_one_altered_answer_is_found_and_named(klprobe: Path, tmp_path: Path) -> None:
    ops = v.build_ops(TIGERLAKE)
    prefix = v.emulator_prefix(TIGERLAKE)
    first = emulated(klprobe, prefix + ops)[len(prefix):]
    second = emulated(klprobe, prefix + ops)[len(prefix):]
    assert v.differences(ops, first, second) == []
    assert v.reference_handle_ok(first[0])
    altered = [dict(a) for a in second]
    altered[17]["zf"] = 1 - int(altered[17].get("zf") or 0)
    diffs = v.differences(ops, first, altered)
    assert [op["id"] for op, _, _ in diffs] == [17]
    text = v.describe(diffs, "vmm", len(ops), tmp_path)
    assert text.startswith(f"1 of {len(ops)} vectors differ (files in {tmp_path}):") and "vmm:" in text
    assert not v.reference_handle_ok({**first[0], "handle": "00" * 48})
    with pytest.raises(ValueError, match="lines"):
        v.differences(ops, first, second[:-1])


def test_evidence_files_are_json_lines(tmp_path: Path) -> None:
    out = v.write_evidence(tmp_path / "e", {"ops": [{"op": "x", "id": 1}]}, {"leaf19": TIGERLAKE})
    assert json.loads((out / "ops.jsonl").read_text()) == {"id": 1, "op": "x"}
    assert json.loads((out / "cpuid.json").read_text())["leaf19"] == TIGERLAKE
