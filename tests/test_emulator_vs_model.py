"""The C emulator against the Python reference model, answer by answer.

The emulator (harness/csrc/klemu*.c) is driven through the vectors tool
(klvectors.c) with thousands of random lines per instruction - random
IWKeys, keys, restriction sets (supported or not), tampered handles,
reserved AAD bits, wrong key types, CPL 0 and 3, features switched off -
and every answer must equal what harness/kl/refmodel.py predicts, once on
the AES-NI path and once with KLEMU_FORCE_PORTABLE=1.  The register-level
facts the vectors cannot show are checked by tests/c/klemu_unit.c.

The seed is fixed so a failure reproduces; KLH_TEST_SEED picks another.
"""

from __future__ import annotations

import json
import os
import random
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest

from harness import proc
from harness.cbuild import COMMON_FLAGS, compiler
from harness.kl import refmodel as m
from harness.paths import CSRC_DIR

SEED = int(os.environ.get("KLH_TEST_SEED", "20240611"))
CASES_PER_OP = 1000
TESTS_C = Path(__file__).parent / "c"
IMPLS = {"aesni+pclmul": "0", "portable": "1"}  # name -> KLEMU_FORCE_PORTABLE
# The emulator core, named rather than globbed so other klemu_*.c files (the
# config loader, a trap layer) cannot break or slow these tests.
EMULATOR_SOURCES = ("klemu.c", "klemu_aes.c", "klemu_backend.c", "klemu_cache.c", "klemu_dispatch.c",
                    "klemu_polyval.c", "klemu_wrap.c")
PLAINTEXT = "00112233445566778899aabbccddeeff"


@dataclass(frozen=True)
class CTools:
    vectors: Path
    unit: Path


def _cc(sources: list[Path], out: Path) -> None:
    # -Werror: the emulator must stay warning-free under the build's flags.
    proc.run([compiler(), *COMMON_FLAGS, "-Werror", f"-I{CSRC_DIR}", "-o", str(out), *map(str, sources)],
             timeout=180)


@pytest.fixture(scope="module")
def ctools(tmp_path_factory: pytest.TempPathFactory) -> CTools:
    out = tmp_path_factory.mktemp("klemu")
    emulator = [CSRC_DIR / name for name in EMULATOR_SOURCES]
    tools = CTools(out / "klvectors_main", out / "klemu_unit")
    _cc([*emulator, CSRC_DIR / "klvectors.c", TESTS_C / "klvectors_main.c"], tools.vectors)
    _cc([*emulator, TESTS_C / "klemu_unit.c"], tools.unit)
    return tools


@pytest.fixture(params=list(IMPLS))
def impl_env(request: pytest.FixtureRequest, ctools: CTools) -> dict[str, str]:
    env = {"KLEMU_FORCE_PORTABLE": IMPLS[request.param]}
    chosen = proc.run([ctools.vectors, "--impl"], env=env, timeout=10).stdout.strip()
    if chosen != request.param:
        pytest.skip(f"this CPU can only run the {chosen} path")
    return env


# ---------------------------------------------------------------- the model's side of the conversation

ANY = "<any>"  # an expected value the model cannot know (a hardware-random IWKey)


@dataclass
class Script:
    """Vector lines and the answers the model predicts, built while the model's state evolves."""

    cpu: m.CPU = field(default_factory=m.CPU.tigerlake)
    iwkey: m.IWKey = field(default_factory=m.IWKey)
    iwkey_known: bool = True
    lines: list[dict[str, Any]] = field(default_factory=list)
    expected: list[dict[str, Any]] = field(default_factory=list)

    def _add(self, line: dict[str, Any], answer: dict[str, Any]) -> None:
        line["id"] = answer["id"] = len(self.lines)
        self.lines.append(line)
        self.expected.append({"op": line["op"], **answer})

    def set_cpu(self, cpu: m.CPU) -> None:
        self.cpu = cpu
        self._add({"op": "cpu", "kl": int(cpu.kl_present), "cr4_kl": int(cpu.cr4_kl),
                   "aeskle": int(cpu.aeskle_enabled), "cpl": cpu.cpl, "leaf19_eax": cpu.leaf19_eax,
                   "leaf19_ebx": cpu.leaf19_ebx, "leaf19_ecx": cpu.leaf19_ecx}, {"ok": True})

    def set_iwkey(self, iwkey: m.IWKey) -> None:
        self.iwkey, self.iwkey_known = iwkey, True
        self._add({"op": "setiwkey", "integrity": iwkey.integrity.hex(), "enc": iwkey.enc.hex(),
                   "nobackup": int(iwkey.nobackup), "keysource": iwkey.keysource}, {"ok": True})

    def loadiwkey(self, integrity: bytes, enc: bytes, eax: int) -> None:
        # The emulator's KeySource=1 entropy is getrandom(); the model uses zeros and then
        # marks the IWKey unknown until the next setiwkey.
        result = m.loadiwkey(self.cpu, self.iwkey, integrity, enc, eax, entropy=bytes)
        if result.fault is None and result.zf == 0:
            self.iwkey = result.iwkey
            self.iwkey_known = result.iwkey.keysource == 0
        answer: dict[str, Any] = {"fault": _fault(result.fault)}
        if result.fault is None:
            answer["zf"] = result.zf
        self._add({"op": "loadiwkey", "integrity": integrity.hex(), "enc": enc.hex(), "eax": eax}, answer)

    def encodekey(self, key_bits: int, src: int, key: bytes) -> None:
        result = m.encodekey(self.cpu, self.iwkey, key_bits, src, key)
        answer: dict[str, Any] = {"fault": _fault(result.fault)}
        if result.fault is None:
            answer.update(handle=result.handle.hex() if self.iwkey_known else ANY, dest=result.dest,
                          zf=result.zf, rflags=result.rflags)
        self._add({"op": f"encodekey{key_bits}", "src": src, "key": key.hex()}, answer)

    def aeskl(self, op: str, handle: bytes, blocks: list[bytes]) -> None:
        assert self.iwkey_known
        result = m.aeskl(self.cpu, self.iwkey, op, handle, blocks)
        wide = m.AES_OPS[op].wide
        answer: dict[str, Any] = {"fault": _fault(result.fault)}
        if result.fault is None:
            answer["zf"] = result.zf
            answer["out"] = [b.hex() for b in result.out] if wide else result.out[0].hex()
        data: Any = [b.hex() for b in blocks] if wide else blocks[0].hex()
        self._add({"op": op, "handle": handle.hex(), "data": data}, answer)


def _fault(fault: m.Fault | None) -> str | None:
    return None if fault is None else str(fault)


def run_tool(ctools: CTools, env: dict[str, str], lines: list[str]) -> tuple[int, list[dict[str, Any]]]:
    result = proc.run([ctools.vectors], input_text="".join(line + "\n" for line in lines), env=env,
                      timeout=120, check=False)
    return result.returncode, [json.loads(line) for line in result.stdout.splitlines()]


def assert_matches_model(ctools: CTools, env: dict[str, str], script: Script) -> None:
    rc, answers = run_tool(ctools, env, [json.dumps(line) for line in script.lines])
    assert len(answers) == len(script.lines), f"{len(script.lines)} lines in, {len(answers)} answers out"
    mismatches = [
        f"line {i + 1}: {json.dumps(line)}\n  emulator: {got}\n  model:    {want}"
        for i, (line, got, want) in enumerate(zip(script.lines, answers, script.expected, strict=True))
        if got.keys() != want.keys() or any(v != ANY and got[k] != v for k, v in want.items())
    ]
    assert not mismatches, (f"{len(mismatches)} answers differ (seed {SEED}, {env}); first ones:\n"
                            + "\n".join(mismatches[:5]))
    assert rc == 0


# ---------------------------------------------------------------- random inputs

RESERVED_AAD_BITS = [b for b in range(128) if b > 2 and not 24 <= b <= 27]


def random_iwkey(rng: random.Random) -> m.IWKey:
    if rng.random() < 0.03:
        # The all-zero IWKey of a CPU before LOADIWKEY: its POLYVAL key is 0, so the tag
        # ignores the handle's contents - an odd corner both sides must agree on.
        return m.IWKey()
    return m.IWKey(rng.randbytes(16), rng.randbytes(32), rng.random() < 0.3,
                   rng.choice((0, 0, 1, rng.randrange(16))))


def random_cpu(rng: random.Random, *, cpl: tuple[int, ...] = (0, 3, 3, 1, 2)) -> m.CPU:
    cpu = m.CPU(cpl=rng.choice(cpl), leaf19_eax=rng.randrange(8),
                leaf19_ebx=0x14 if rng.random() < 0.9 else 0x10, leaf19_ecx=rng.randrange(4))
    switch = rng.random()
    if switch < 0.02:
        return replace(cpu, kl_present=False)
    if switch < 0.04:
        return replace(cpu, cr4_kl=False)
    if switch < 0.06:
        return replace(cpu, aeskle_enabled=False)
    return cpu


def random_handle(rng: random.Random, op: m.AesOp, iwkey: m.IWKey) -> bytes:
    """A handle for op that is valid about half the time and wrong in one or more ways otherwise."""
    key_bits = op.key_bits if rng.random() < 0.9 else 384 - op.key_bits
    meta = rng.randrange(8) if rng.random() < 0.6 else 0
    key_type = int(key_bits == 256) if rng.random() < 0.95 else rng.randrange(2, 16)
    meta |= key_type << m.KEYTYPE_SHIFT
    if rng.random() < 0.08:
        meta |= 1 << rng.choice(RESERVED_AAD_BITS)
    wrapper = iwkey if rng.random() < 0.9 else random_iwkey(rng)
    handle = m.wrap(wrapper, meta.to_bytes(16, "little"), rng.randbytes(key_bits // 8))
    # A 128-bit handle on a 256-bit instruction is padded; the other way it is cut.
    handle = (handle + rng.randbytes(16))[:op.handle_size]
    if rng.random() < 0.1:
        flipped = bytearray(handle)
        bit = rng.randrange(8 * len(handle))
        flipped[bit // 8] ^= 1 << (bit % 8)
        handle = bytes(flipped)
    return handle


def random_eax(rng: random.Random) -> int:
    pick = rng.random()
    if pick < 0.8:
        return rng.randrange(32)
    if pick < 0.95:
        return rng.randrange(32) | 1 << rng.randrange(5, 32)
    return rng.getrandbits(32)


def random_src(rng: random.Random) -> int:
    pick = rng.random()
    if pick < 0.8:
        return rng.randrange(8)
    if pick < 0.9:
        return rng.randrange(8) | 1 << rng.randrange(3, 32)
    return rng.getrandbits(32)


# ---------------------------------------------------------------- the scripts


def aeskl_script(rng: random.Random) -> Script:
    """CASES_PER_OP cases of each of the eight AES*KL forms, shuffled, reusing handles so the
    cache sees hits, hits after an IWKey change, and hits at another CPL."""
    script = Script()
    script.set_iwkey(random_iwkey(rng))
    pool: dict[int, list[bytes]] = {48: [], 64: []}
    ops = [name for name in m.AES_OPS for _ in range(CASES_PER_OP)]
    rng.shuffle(ops)
    for name in ops:
        op = m.AES_OPS[name]
        if rng.random() < 0.03:
            script.set_iwkey(random_iwkey(rng))
        if rng.random() < 0.3:
            script.set_cpu(random_cpu(rng))
        recent = pool[op.handle_size]
        if recent and rng.random() < 0.4:
            handle = rng.choice(recent)
        else:
            handle = random_handle(rng, op, script.iwkey)
            recent[:] = [*recent[-7:], handle]
        script.aeskl(name, handle, [rng.randbytes(16) for _ in range(op.blocks)])
    return script


def encodekey_script(rng: random.Random) -> Script:
    script = Script()
    for i in range(2 * CASES_PER_OP):
        if i % 10 == 0:
            script.set_iwkey(random_iwkey(rng))
        script.set_cpu(random_cpu(rng))
        key_bits = 128 if i % 2 else 256
        script.encodekey(key_bits, random_src(rng), rng.randbytes(key_bits // 8))
    return script


def loadiwkey_script(rng: random.Random) -> Script:
    """LOADIWKEY cases, each followed by an ENCODEKEY128 that shows the IWKey (handle) and
    its NoBackup/KeySource (DEST) - or only DEST after a hardware-random load."""
    script = Script()
    for _ in range(CASES_PER_OP):
        script.set_cpu(random_cpu(rng, cpl=(0, 0, 0, 3)))
        script.loadiwkey(rng.randbytes(16), rng.randbytes(32), random_eax(rng))
        script.encodekey(128, 0, bytes(range(16)))
        if not script.iwkey_known:
            script.set_iwkey(random_iwkey(rng))
    return script


@pytest.fixture(scope="module")
def scripts() -> dict[str, Script]:
    rng = random.Random(SEED)
    return {"aeskl": aeskl_script(rng), "encodekey": encodekey_script(rng), "loadiwkey": loadiwkey_script(rng)}


def _count(script: Script, prefix: str) -> Iterator[int]:
    for op in sorted({line["op"] for line in script.lines if line["op"].startswith(prefix)}):
        yield sum(1 for line in script.lines if line["op"] == op)


def test_scripts_cover_every_instruction_and_outcome(scripts: dict[str, Script]) -> None:
    # Guards the generators: each instruction gets its cases, and each outcome really occurs.
    assert list(_count(scripts["aeskl"], "aes")) == [CASES_PER_OP] * 8
    assert list(_count(scripts["encodekey"], "encodekey")) == [CASES_PER_OP] * 2
    assert list(_count(scripts["loadiwkey"], "loadiwkey")) == [CASES_PER_OP]
    for name, script in scripts.items():
        outcomes = {(a.get("fault"), a.get("zf")) for a in script.expected if a["op"] not in ("cpu", "setiwkey")}
        assert ("UD", None) in outcomes and (None, 0) in outcomes, name
        if name != "aeskl":
            assert ("GP", None) in outcomes, name
    aes = [a for a in scripts["aeskl"].expected if a["op"].startswith("aes")]
    assert 0.2 < sum(a.get("zf") == 1 for a in aes) / len(aes) < 0.8


@pytest.mark.parametrize("name", ["aeskl", "encodekey", "loadiwkey"])
def test_emulator_answers_like_the_model(ctools: CTools, impl_env: dict[str, str], scripts: dict[str, Script],
                                         name: str) -> None:
    assert_matches_model(ctools, impl_env, scripts[name])


def test_reference_handle_of_keylocker_md_section_4(ctools: CTools, impl_env: dict[str, str]) -> None:
    lines = [
        {"op": "setiwkey", "integrity": bytes(range(16)).hex(), "enc": bytes(range(0x10, 0x30)).hex()},
        {"op": "encodekey128", "src": 0, "key": bytes(range(16)).hex()},
    ]
    rc, answers = run_tool(ctools, impl_env, [json.dumps(line) for line in lines])
    assert rc == 0
    assert answers[1]["handle"] == ("00" * 16 + "82fcc08ea7244263409641aae7af11f0"
                                    "f3285030ffa1d7073fab929544b2d0fc")


def test_register_level_behaviour(ctools: CTools, impl_env: dict[str, str]) -> None:
    result = proc.run([ctools.unit], env=impl_env, timeout=30, check=False)
    assert result.returncode == 0, result.stdout
    values = dict(line.split(" ", 1) for line in result.stdout.splitlines() if " " in line)
    derived = m.derive_iwkey(bytes(range(32)), bytes(range(100, 116)))
    assert values["derive"] == (derived.integrity + derived.enc).hex()
    assert values["aes192"] == m.aes_encrypt_block(bytes(range(24)), bytes.fromhex(PLAINTEXT)).hex()


# ---------------------------------------------------------------- the vectors tool's own contract

HANDLE_HEX = "00" * 48


@pytest.mark.parametrize(("line", "error"), [
    ("", "expected a JSON object"),
    ("[1]", "expected a JSON object"),
    ('{"op":"cpu"} x', "trailing characters after the object"),
    ('{"op":"cpu","op":"cpu"}', 'duplicate key "op"'),
    ('{"op":"cpu" "cpl":0}', "expected ',' or '}'"),
    ('{"op":"cpu","cpl":true}', 'key "cpl": only strings, numbers and arrays of strings are accepted'),
    ('{"op":"cpu","cpl":4}', 'key "cpl" must be an integer 0..3'),
    ('{"op":"cpu","cpl":1.0}', 'key "cpl" must be an integer 0..3'),
    ('{"op":"cpu","cpl":-1}', 'key "cpl" must be an integer 0..3'),
    ('{"cpl":0}', 'missing string key "op"'),
    ('{"op":"aesenc512kl"}', 'unknown op "aesenc512kl"'),
    ('{"op":"aesenc128kl","hndle":"00"}', 'unknown key "hndle" for op "aesenc128kl"'),
    ('{"op":"aesenc128kl","handle":"00","data":"00"}', 'key "handle" must be 96 hex digits'),
    (f'{{"op":"aesenc256kl","handle":"{HANDLE_HEX}","data":"00"}}', 'key "handle" must be 128 hex digits'),
    (f'{{"op":"aesenc128kl","handle":"{HANDLE_HEX}"}}', 'missing key "data"'),
    (f'{{"op":"aesencwide128kl","handle":"{HANDLE_HEX}","data":["00"]}}',
     'key "data" must be an array of 8 blocks for aesencwide128kl'),
    ('{"op":"encodekey128","key":"000102030405060708090a0b0c0d0e0f"}', 'missing key "src"'),
    ('{"op":"loadiwkey","integrity":"zz","enc":"00","eax":0}', 'key "integrity" must be 32 hex digits'),
    ('{"op":"cpu","id":"\\u0000"}', "\\u0000 is not supported"),
])
def test_vectors_tool_rejects_bad_lines_and_goes_on(ctools: CTools, line: str, error: str) -> None:
    rc, answers = run_tool(ctools, {}, [line, '{"op":"cpu","id":"next"}'])
    assert rc == 1
    assert answers[0] == {"line": 1, "error": error}
    assert answers[1] == {"op": "cpu", "id": "next", "ok": True}


def test_vectors_tool_echoes_ids_and_reports_faults(ctools: CTools) -> None:
    lines = [
        '{"op":"cpu","id":"a\\"\\u00e9\\n","cpl":3}',
        '{"op":"loadiwkey","id":-1.5e3,"integrity":"' + "00" * 16 + '","enc":"' + "00" * 32 + '","eax":0}',
        '{"op":"encodekey128","id":7,"src":8,"key":"' + "00" * 16 + '"}',
        '{"op":"aesenc128kl","id":8,"handle":"0","data":"00"}',
    ]
    rc, answers = run_tool(ctools, {}, lines)
    assert rc == 1
    assert answers == [
        {"op": "cpu", "id": 'a"\u00e9\n', "ok": True},
        {"op": "loadiwkey", "id": -1500.0, "fault": "GP"},
        {"op": "encodekey128", "id": 7, "fault": "GP"},
        {"line": 4, "id": 8, "error": 'key "handle" must be 96 hex digits'},
    ]
