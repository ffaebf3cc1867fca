"""Trap mode (harness/csrc/klemu_trap.c): the real Key Locker instructions run on this CPU, fault,
and the SIGILL handler completes them.  Programs built here (GCC intrinsics, hand-written encodings,
signal handling, threads) run under LD_PRELOAD=libklemu-preload.so and are compared with the Python
reference model; the probe's native path under trap mode must observe what the emulated backend
observes; the decoder agrees with GNU as."""

from __future__ import annotations

import secrets
import signal
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

from harness import cbuild, proc
from harness.errors import CommandError
from harness.kl import emuconfig, refmodel
from harness.kl.observations import Observation, parse_probe_output
from harness.kl.spec import judge_all
from harness.paths import CSRC_DIR
from harness.proc import CommandResult

TESTS_C = Path(__file__).parent / "c"
KEY = bytes(range(32))
PT = bytes.fromhex("00112233445566778899aabbccddeeff")
CPU = refmodel.CPU.tigerlake()
LANES = [bytes([PT[0] ^ i]) + PT[1:] for i in range(8)]

# program name -> (sources, extra compiler flags); all built once per session.
PROGRAMS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "trap_intrinsics": (("trap_intrinsics.c",), ("-mkl", "-mwidekl")),
    "trap_forms": (("trap_forms.c",), ("-no-pie",)),
    "trap_signals": (("trap_signals.c",), ()),
    "trap_threads": (("trap_threads.c",), ("-pthread",)),
    "trap_cpuid_gate": (("trap_cpuid_gate.c",), ("-mkl",)),
}


@dataclass(frozen=True)
class Trap:
    """The built preload library and test programs, and how to run them under trap mode."""

    preload: Path
    bins: Mapping[str, Path]
    unit: Path
    install: Path

    def run(self, program: str, *args: str, conf: Path | None, cwd: Path, preload: bool = True,
            env: Mapping[str, str] | None = None) -> CommandResult:
        full = {"KLEMU_CONFIG": str(conf) if conf else "", "KLEMU_TRAP_VERBOSE": "0", **(env or {})}
        if preload:
            full["LD_PRELOAD"] = str(self.preload)
        # cwd: a core dump of a program that is meant to die lands in the test's tmp dir.
        return proc.run([self.bins[program], *args], env=full, cwd=cwd, check=False, timeout=60)


def _cc(sources: list[Path], out: Path, *flags: str, libs: tuple[str, ...] = ()) -> Path:
    proc.run([cbuild.compiler(), *cbuild.COMMON_FLAGS, *flags, f"-I{CSRC_DIR}", "-o", str(out), *map(str, sources),
              *libs], timeout=180)
    return out


@pytest.fixture(scope="session")
def trap(tmp_path_factory: pytest.TempPathFactory) -> Trap:
    out = tmp_path_factory.mktemp("trap-bin")
    bins = {name: _cc([TESTS_C / s for s in srcs], out / name, *flags) for name, (srcs, flags) in PROGRAMS.items()}
    lib = cbuild.build("libklemu.so")
    unit = _cc([*sorted(CSRC_DIR.glob("klemu*.c")), TESTS_C / "trap_unit.c"], out / "trap_unit", "-pthread")
    install = _cc([TESTS_C / "trap_install.c"], out / "trap_install",
                  libs=(f"-L{lib.parent}", "-lklemu", f"-Wl,-rpath,{lib.parent}"))
    return Trap(cbuild.build("libklemu-preload.so"), bins, unit, install)


@dataclass(frozen=True)
class KeyedConf:
    path: Path
    iwkey: refmodel.IWKey


def write_conf(path: Path, cpu: emuconfig.EmulatedCpu | None = None) -> KeyedConf:
    """A klemu.conf with an explicit, fresh IWKey, so every output is predictable from the model."""
    iwkey = refmodel.IWKey(secrets.token_bytes(16), secrets.token_bytes(32))
    text = emuconfig.render(cpu or emuconfig.EmulatedCpu(), None)
    text += f"iwkey_integrity = {iwkey.integrity.hex()}\niwkey_enc = {iwkey.enc.hex()}\n"
    return KeyedConf(emuconfig.write_private(path, text), iwkey)


@pytest.fixture()
def conf(tmp_path: Path) -> KeyedConf:
    return write_conf(tmp_path / "klemu.conf")


def lines_by_name(stdout: str, words: Callable[[str], int] = lambda line: 1) -> dict[str, str]:
    """'name rest...' lines as {name: rest}; the name is the first ``words(line)`` words."""
    split = (line.split(" ", words(line)) for line in stdout.splitlines())
    return {" ".join(parts[:-1]): parts[-1] for parts in split}


def handle(iwkey: refmodel.IWKey, bits: int, restrictions: int = 0) -> bytes:
    return refmodel.encodekey(CPU, iwkey, bits, restrictions, KEY[: bits // 8]).handle


def aes(iwkey: refmodel.IWKey, op: str, h: bytes, blocks: list[bytes]) -> str:
    """'<zf> <hex of the blocks after>' as the programs print it."""
    result = refmodel.aeskl(CPU, iwkey, op, h, blocks)
    return f"{result.zf} {b''.join(result.out).hex()}"


# ---------------------------------------------------------------- the decoder


def test_decoder_agrees_with_gnu_as(trap: Trap, tmp_path: Path) -> None:
    # (assembly, what the decoder must say: op len reg rm base index scale disp addr32 seg)
    cases = [
        ("encodekey128 %eax,%eax", "encodekey128 5 0 0 -1 -1 0 0 0 -"),
        ("encodekey128 %r9d,%r10d", "encodekey128 6 10 9 -1 -1 0 0 0 -"),
        ("encodekey256 %ecx,%eax", "encodekey256 5 0 1 -1 -1 0 0 0 -"),
        ("aesenc128kl (%rax),%xmm9", "aesenc128kl 6 9 0 0 -1 1 0 0 -"),
        ("aesenc128kl 0x12345678(%r13,%r14,8),%xmm11", "aesenc128kl 11 11 0 13 14 8 305419896 0 -"),
        ("aesdec256kl -8(%rsp),%xmm15", "aesdec256kl 8 15 0 4 -1 1 -8 0 -"),
        ("aesenc256kl 0x100(%rbp),%xmm4", "aesenc256kl 9 4 0 5 -1 1 256 0 -"),
        ("aesdec128kl 0x4c(%rip),%xmm3", "aesdec128kl 9 3 0 16 -1 1 76 0 -"),
        ("aesenc128kl (%eax),%xmm1", "aesenc128kl 6 1 0 0 -1 1 0 1 -"),
        ("aesenc128kl (%r12d,%r8d,1),%xmm0", "aesenc128kl 8 0 0 12 8 1 0 1 -"),
        ("aesenc128kl %fs:0x10,%xmm2", "aesenc128kl 11 2 0 -1 -1 1 16 0 fs"),
        ("aesenc128kl %gs:(%rbx),%xmm2", "aesenc128kl 6 2 0 3 -1 1 0 0 gs"),
        (".byte 0x3e, 0xf3, 0x0f, 0x38, 0xdc, 0x13", "aesenc128kl 6 2 0 3 -1 1 0 0 ds"),  # as drops %ds:
        ("aesenc128kl 0(,%r12,2),%xmm0", "aesenc128kl 11 0 0 -1 12 2 0 0 -"),
        ("aesenc128kl 4(%r13),%xmm0", "aesenc128kl 7 0 0 13 -1 1 4 0 -"),
        ("aesencwide128kl (%r12)", "aesencwide128kl 7 0 0 12 -1 1 0 0 -"),
        ("aesdecwide128kl (%rdi)", "aesdecwide128kl 5 1 0 7 -1 1 0 0 -"),
        ("aesencwide256kl 8(%rsi,%rdx,4)", "aesencwide256kl 7 2 0 6 2 4 8 0 -"),
        ("aesdecwide256kl 0x40(%rip)", "aesdecwide256kl 9 3 0 16 -1 1 64 0 -"),
        ("loadiwkey %xmm1,%xmm2", "loadiwkey 5 2 1 -1 -1 0 0 0 -"),
        ("loadiwkey %xmm9,%xmm10", "loadiwkey 6 10 9 -1 -1 0 0 0 -"),
    ]
    src = tmp_path / "forms.s"
    src.write_text("".join(f"{asm}\n" for asm, _ in cases) + "aesenc %xmm1,%xmm0\n")  # then an AES-NI insn
    try:
        proc.run(["as", "-o", tmp_path / "forms.o", src], timeout=60)
    except CommandError as err:
        pytest.skip(f"GNU as here cannot assemble Key Locker mnemonics (binutils >= 2.36 can): {err}")
    proc.run(["objcopy", "-O", "binary", "-j", ".text", tmp_path / "forms.o", tmp_path / "forms.bin"], timeout=60)
    decoded = proc.run([trap.unit, "decode", tmp_path / "forms.bin"], timeout=60).stdout.splitlines()
    offset = sum(int(line.split()[1]) for line in decoded[:-1])
    assert decoded == [want for _, want in cases] + [f"not-kl {offset}"]


def test_decoder_refusals_addresses_and_cpuid_answers(trap: Trap) -> None:
    result = proc.run([trap.unit, "checks"], timeout=60, check=False)
    assert (result.returncode, result.stdout) == (0, "ok\n")


# ---------------------------------------------------------------- foreign programs vs the reference model


def test_gcc_intrinsics_program_matches_the_reference_model(trap: Trap, conf: KeyedConf, tmp_path: Path) -> None:
    result = trap.run("trap_intrinsics", conf=conf.path, cwd=tmp_path)
    assert (result.returncode, result.stderr) == (0, "")
    iw = conf.iwkey
    h128, h256 = handle(iw, 128), handle(iw, 256)
    ct128 = refmodel.aes_encrypt_block(KEY[:16], PT)
    ct256 = refmodel.aes_encrypt_block(KEY, PT)
    wide128 = refmodel.aeskl(CPU, iw, "aesencwide128kl", h128, LANES).out
    wide256 = refmodel.aeskl(CPU, iw, "aesencwide256kl", h256, LANES).out
    tampered = bytearray(h128)
    tampered[20] ^= 1
    noencrypt = handle(iw, 128, refmodel.RESTRICT_NOENCRYPT)
    expected = {f"encodekey128 {r}": f"0 {handle(iw, 128, r).hex()}" for r in range(8)}
    expected |= {
        "encodekey256 0": f"0 {h256.hex()}",
        "aesenc128kl": aes(iw, "aesenc128kl", h128, [PT]),
        "aesdec128kl": aes(iw, "aesdec128kl", h128, [ct128]),
        "aesenc256kl": aes(iw, "aesenc256kl", h256, [PT]),
        "aesdec256kl": aes(iw, "aesdec256kl", h256, [ct256]),
        "aesencwide128kl": aes(iw, "aesencwide128kl", h128, LANES),
        "aesdecwide128kl": aes(iw, "aesdecwide128kl", h128, list(wide128)),
        "aesencwide256kl": aes(iw, "aesencwide256kl", h256, LANES),
        "aesdecwide256kl": aes(iw, "aesdecwide256kl", h256, list(wide256)),
        "tampered": aes(iw, "aesenc128kl", bytes(tampered), [PT]).split()[0],
        "noencrypt_enc": aes(iw, "aesenc128kl", noencrypt, [PT]).split()[0],
        "noencrypt_dec": aes(iw, "aesdec128kl", noencrypt, [PT]).split()[0],
        "h256_on_128": "1",
    }
    assert lines_by_name(result.stdout, words=lambda line: 2 if line.startswith("encodekey") else 1) == expected
    # The model's answers are the real AES: the trap did not merely agree with itself.
    assert expected["aesenc128kl"] == f"0 {ct128.hex()}" and expected["aesdec256kl"] == f"0 {PT.hex()}"
    assert expected["tampered"] == "1" and expected["noencrypt_dec"] == "0"


def test_hand_written_encodings_match_the_reference_model(trap: Trap, conf: KeyedConf, tmp_path: Path) -> None:
    result = trap.run("trap_forms", conf=conf.path, cwd=tmp_path)
    assert (result.returncode, result.stderr) == (0, "")
    iw = conf.iwkey
    h128, h256 = handle(iw, 128), handle(iw, 256)
    ct = refmodel.aes_encrypt_block(KEY[:16], PT).hex()
    assert lines_by_name(result.stdout) == {
        "selftest_encodekey128": f"0 {h128.hex()}",
        "rex_encodekey128_r10": "0" * 16,  # DEST written as r32: the upper half of R10 cleared
        # XMM0-2 the CPL0-only handle, XMM3 kept (a5), XMM4-6 zeroed
        "rex_encodekey128": f"0 {handle(iw, 128, refmodel.RESTRICT_CPL0).hex()}{'a5' * 16}{'00' * 48}",
        "encodekey256": f"0 {h256.hex()}",
        "sib_disp32_xmm11": f"0 {ct}{'5c' * 16}",  # XMM0 untouched
        "disp8_roundtrip_xmm15": f"0 {PT.hex()}",
        "rip_relative_xmm3": f"0 {ct}",
        "addr32_xmm1": f"0 {ct}",
        "fs_tls_xmm2": f"0 {ct}",
        "gs_base_xmm2": f"0 {ct}",
        "wide128_r12": aes(iw, "aesencwide128kl", h128, LANES),
        "wide256_index_only": aes(iw, "aesencwide256kl", h256, LANES),
        "flags": "0 40",  # OF SF AF PF CF cleared; ZF only on the refused handle
        # all XMM zero at the fault: the results must still reach the registers
        "init_state_encodekey128": f"0 {refmodel.wrap(iw, refmodel.handle_aad(0, 128), bytes(16)).hex()}",
    }


def test_threads_trap_concurrently_with_correct_results(trap: Trap, conf: KeyedConf, tmp_path: Path) -> None:
    # Probabilistic by nature: with the spinlock removed this fails within a few runs of 8 x 20000.
    result = trap.run("trap_threads", "4", "4000", conf=conf.path, cwd=tmp_path)
    assert result.returncode == 0
    expected = [f"thread {i} {refmodel.aes_encrypt_block(bytes([i, 1]) + KEY[2:16], PT).hex()} bad 0"
                for i in range(4)]
    assert result.stdout.splitlines() == expected


def test_program_can_install_the_trap_itself(trap: Trap, conf: KeyedConf, tmp_path: Path) -> None:
    result = proc.run([trap.install], env={"KLEMU_CONFIG": str(conf.path)}, cwd=tmp_path, timeout=60)
    assert result.stdout.splitlines() == [
        f"active 1 source {conf.path}",
        f"encode 0 handler calls 0 handle {handle(conf.iwkey, 128).hex()}",
        # uninstalled: the program's own handler, chained meanwhile, gets the SIGILL
        "after uninstall: encode -1 handler calls 1 active 0",
        "stats emulated 1",
    ]


# ---------------------------------------------------------------- signals as the program sees them


def test_own_sigill_handler_is_chained_behind_the_trap(trap: Trap, conf: KeyedConf, tmp_path: Path) -> None:
    result = trap.run("trap_signals", "own-handler", conf=conf.path, cwd=tmp_path)
    assert result.returncode == 0
    assert result.stdout.splitlines() == [
        "reads back own handler: 1",
        "after encodekey: handler calls 0",
        "after ud2: handler calls 1, rip at ud2 1, si_addr at ud2 1",
        "after second encodekey: handler calls 1",
    ]


def test_signal_api_handler_is_chained_too(trap: Trap, conf: KeyedConf, tmp_path: Path) -> None:
    result = trap.run("trap_signals", "signal-api", conf=conf.path, cwd=tmp_path)
    assert (result.returncode, result.stdout) == (3, "encodekey ran\nsignal-api handler called\n")


def test_real_illegal_instruction_still_kills_with_sigill(trap: Trap, conf: KeyedConf, tmp_path: Path) -> None:
    for preload in (False, True):
        result = trap.run("trap_signals", "ud2", conf=conf.path, cwd=tmp_path, preload=preload)
        assert (result.returncode, result.stdout) == (-signal.SIGILL, "before ud2\n")


def test_loadiwkey_from_user_space_raises_sigsegv(trap: Trap, conf: KeyedConf, tmp_path: Path) -> None:
    result = trap.run("trap_signals", "loadiwkey", conf=conf.path, cwd=tmp_path)
    assert (result.returncode, result.stdout) == (-signal.SIGSEGV, "before loadiwkey\n")
    # #GP(0) as Linux reports it: SI_KERNEL (0x80), no address, RIP at the instruction.
    result = trap.run("trap_signals", "loadiwkey-handled", conf=conf.path, cwd=tmp_path)
    assert result.stdout.splitlines()[-1] == "SIGSEGV code=128 addr=0 at=loadiwkey"


def test_unreadable_handle_raises_sigsegv_at_the_instruction(trap: Trap, conf: KeyedConf, tmp_path: Path) -> None:
    result = trap.run("trap_signals", "bad-handle", conf=conf.path, cwd=tmp_path)
    assert (result.returncode, result.stdout) == (0, "SIGSEGV code=1 addr=0x1008 at=aesenc\n")


def test_encodekey_reserved_source_bit_raises_sigsegv(trap: Trap, conf: KeyedConf, tmp_path: Path) -> None:
    result = trap.run("trap_signals", "reserved-src", conf=conf.path, cwd=tmp_path)
    assert (result.returncode, result.stdout) == (-signal.SIGSEGV, "before encodekey\n")


def test_kl_hidden_or_wide_absent_in_the_config_stays_sigill(trap: Trap, tmp_path: Path) -> None:
    hidden = write_conf(tmp_path / "hidden.conf", emuconfig.EmulatedCpu(kl=False))
    result = trap.run("trap_signals", "encode", conf=hidden.path, cwd=tmp_path)
    assert (result.returncode, result.stdout) == (-signal.SIGILL, "")
    no_wide = write_conf(tmp_path / "nowide.conf", emuconfig.EmulatedCpu(wide=False))
    result = trap.run("trap_intrinsics", conf=no_wide.path, cwd=tmp_path)
    assert result.returncode == -signal.SIGILL
    assert result.stdout.splitlines()[-1].startswith("aesdec256kl 0 ")  # died at the first WIDE form


def test_program_without_key_locker_is_unaffected(trap: Trap, conf: KeyedConf, tmp_path: Path) -> None:
    plain = [trap.run("trap_signals", "plain", conf=conf.path, cwd=tmp_path, preload=p) for p in (False, True)]
    expected = (0, "plain program, pid-independent output\n", "")
    assert [(r.returncode, r.stdout, r.stderr) for r in plain] == [expected, expected]
    env = {"LD_PRELOAD": str(trap.preload), "KLEMU_CONFIG": str(conf.path)}
    python = proc.run([sys.executable, "-c", "import signal; print(signal.getsignal(signal.SIGINT).__name__)"],
                      env=env, timeout=60)
    assert (python.stdout, python.stderr) == ("default_int_handler\n", "")


def test_default_is_a_random_per_process_iwkey_and_verbose_says_so(trap: Trap, tmp_path: Path) -> None:
    runs = [trap.run("trap_signals", "encode", conf=None, cwd=tmp_path, env={"KLEMU_TRAP_VERBOSE": "1"})
            for _ in range(2)]
    assert all(r.returncode == 0 for r in runs)
    handles = [bytes.fromhex(r.stdout.split()[-1]) for r in runs]
    assert handles[0] != handles[1] and handles[0][:16] == bytes(16)
    assert all(r.stdout.startswith("dest 0 handle ") for r in runs)
    note = runs[0].stderr.splitlines()
    assert len(note) == 1 and "default: Tiger Lake, random per-process IWKey" in note[0]


def test_verbose_note_names_the_config_and_the_cpuid_situation(trap: Trap, conf: KeyedConf, tmp_path: Path) -> None:
    quiet = trap.run("trap_signals", "plain", conf=conf.path, cwd=tmp_path)
    assert quiet.stderr == ""
    loud = trap.run("trap_signals", "plain", conf=conf.path, cwd=tmp_path, env={"KLEMU_TRAP_VERBOSE": "1"})
    (note,) = loud.stderr.splitlines()
    assert note.startswith(f"klemu-trap: emulating Key Locker ({conf.path}, ")
    if cpuid_faulting_offered():
        assert "CPUID faulting on" in note
    else:
        assert "no CPUID faulting" in note and "programs see the real CPUID" in note


def test_broken_config_is_an_error_not_the_default(trap: Trap, tmp_path: Path) -> None:
    result = trap.run("trap_signals", "encode", conf=tmp_path / "missing.conf", cwd=tmp_path)
    assert result.returncode == -signal.SIGILL
    assert result.stderr.startswith(f"klemu-trap: not installed: emulator configuration: {tmp_path}/missing.conf: ")


# ---------------------------------------------------------------- CPUID


def cpuid_faulting_offered() -> bool:
    cpuinfo = Path("/proc/cpuinfo").read_text()
    return any(line.startswith("flags") and "cpuid_fault" in line.split() for line in cpuinfo.splitlines())


def test_cpuid_is_emulated_only_where_cpuid_faulting_exists(trap: Trap, conf: KeyedConf, tmp_path: Path) -> None:
    real = trap.run("trap_signals", "cpuid", conf=None, cwd=tmp_path, preload=False).stdout
    seen = trap.run("trap_signals", "cpuid", conf=conf.path, cwd=tmp_path).stdout
    if cpuid_faulting_offered():
        max_leaf = max(int(real.split()[1], 16), 0x19)
        assert seen == f"max_leaf {max_leaf:#x} kl 1 leaf19 0x7 0x15 0 0\n"
    else:
        assert seen == real  # documented: without CPUID faulting programs see the real CPUID


def cpuid_faulting_errno() -> str:
    """What the kernel answers ARCH_SET_CPUID here, read independently of the trap (ctypes)."""
    import ctypes
    import errno

    libc = ctypes.CDLL(None, use_errno=True)
    rc = libc.syscall(158, 0x1012, 1)  # arch_prctl(ARCH_SET_CPUID, 1): keep CPUID enabled, changes nothing
    return "0" if rc == 0 else errno.errorcode.get(ctypes.get_errno(), "?")


def test_a_program_that_asks_cpuid_first_takes_its_kl_path_where_cpuid_faults(
        trap: Trap, conf: KeyedConf, tmp_path: Path) -> None:
    """Rust/glibc-style detection: only CPUID faulting lets the trap say "KL here" to such a program."""
    bare = trap.run("trap_cpuid_gate", conf=None, cwd=tmp_path, preload=False)
    assert bare.returncode == 0, bare.describe()
    if bare.stdout.startswith("path kl "):
        pytest.skip("this CPU runs Key Locker itself: nothing to trap")
    assert bare.stdout.startswith("path no-kl ")
    seen = trap.run("trap_cpuid_gate", conf=conf.path, cwd=tmp_path, env={"KLEMU_TRAP_VERBOSE": "1"})
    assert seen.returncode == 0, seen.describe()
    (note,) = seen.stderr.splitlines()
    if not cpuid_faulting_offered():
        assert cpuid_faulting_errno() != "0"  # the flag and the system call agree
        assert seen.stdout == bare.stdout and "no CPUID faulting" in note
        pytest.skip(f"no CPUID faulting on this host (arch_prctl(ARCH_SET_CPUID) -> {cpuid_faulting_errno()}, no "
                    f"cpuid_fault flag): the program sees the real CPUID and takes its no-KL path ({note})")
    assert "CPUID faulting on" in note
    words = seen.stdout.split()
    assert words[:2] == ["path", "kl"], seen.stdout
    def after(name: str, n: int = 1) -> list[str]:  # the n words after a label ("leaf19" has four)
        assert name in words, f"{name!r} missing from {seen.stdout!r}"
        i = words.index(name)
        return words[i + 1:i + 1 + n]

    assert int(after("leaf19", 4)[1], 16) & 1 == 1  # EBX bit 0: AESKLE, as the trap answers it
    h = handle(conf.iwkey, 128)
    assert after("encode_dest") + after("zf") == ["0", "0"]
    # The program wraps the FIPS-197 C.1 key (KEY[:16]) and encrypts the C.1 plaintext.
    assert after("ct")[0] == refmodel.aeskl(CPU, conf.iwkey, "aesenc128kl", h, [PT]).out[0].hex() == \
        "69c4e0d86a7b0430d8cdb78070b4c55a"


def test_the_probe_says_whether_cpuid_faulting_answered_its_cpuid(klprobe: Path, conf: KeyedConf) -> None:
    doc = parse_probe_output(proc.run([klprobe, "run", "--backend", "native", "--trap", "--config", conf.path,
                                       "--no-timing"], timeout=120).stdout)
    assert doc.backend == "trapped"
    if cpuid_faulting_offered():
        assert doc.backend_reason.endswith("CPUID faulting on: CPU view read with CPUID, answered by the trap")
    else:
        assert doc.backend_reason.endswith(f"no CPUID faulting ({cpuid_faulting_errno()}): CPU view from the "
                                           "emulator configuration")
    assert doc.cpu.kl.kl and doc.cpu.kl.aeskle  # the configured Tiger Lake, either way


# ---------------------------------------------------------------- the probe's native path under trap mode


def _key(o: Observation) -> tuple[str, str | None, int | None, tuple[tuple[str, bool], ...]]:
    return (o.id, o.signal, o.zf, tuple(sorted(o.facts.items())))


@pytest.mark.parametrize("cpu", [
    emuconfig.EmulatedCpu(),
    emuconfig.EmulatedCpu(wide=False, restrictions=frozenset({"noencrypt"})),
    emuconfig.EmulatedCpu(kl=False),
], ids=["tigerlake", "no-wide-noencrypt-only", "kl-hidden"])
def test_probe_native_path_under_trap_mode_equals_the_emulated_backend(
        klprobe: Path, tmp_path: Path, cpu: emuconfig.EmulatedCpu) -> None:
    conf = emuconfig.write_private(tmp_path / "klemu.conf", emuconfig.render(cpu, emuconfig.VmSecret.generate()))
    common = ["run", "--config", str(conf), "--no-timing"]
    trapped = parse_probe_output(proc.run([klprobe, *common, "--backend", "native", "--trap"], timeout=120).stdout)
    emulated = parse_probe_output(proc.run([klprobe, *common, "--backend", "emulated"], timeout=120).stdout)
    assert trapped.backend == "trapped" and trapped.kl_usable == emulated.kl_usable == cpu.kl
    assert {o.provenance for o in trapped.observations} == {"trapped"}
    assert [_key(o) for o in trapped.observations] == [_key(o) for o in emulated.observations]
    assert [v.check_id for v in judge_all(trapped.observations) if not v.passed] == []
    if cpu.kl:
        assert trapped.emulator_stats and trapped.emulator_stats["unwraps"] > 0  # the trap used the probe's context


def test_probe_trap_option_is_for_the_native_path_only(klprobe: Path, emu_conf: Path) -> None:
    result = proc.run([klprobe, "run", "--backend", "emulated", "--trap", "--config", emu_conf], timeout=60,
                      check=False)
    assert result.returncode == 2 and "--trap runs the native path" in result.stderr


# ---------------------------------------------------------------- build hygiene


def test_trap_sources_compile_without_warnings(tmp_path: Path) -> None:
    for name in ("klemu_trap.c", "klemu_decode.c", "klpreload.c"):
        result = proc.run([cbuild.compiler(), "-O2", "-std=gnu11", "-Wall", "-Wextra", "-Werror", "-fPIC",
                           f"-I{CSRC_DIR}", "-c", "-o", str(tmp_path / f"{name}.o"), str(CSRC_DIR / name)],
                          timeout=120, check=False)
        assert (name, result.returncode, result.stderr) == (name, 0, "")
