"""Read-only views over a run record that every report shares.

Why one place: the HTML page, the Markdown summary, the comparison and the
history must agree on what a test is called, which outcomes count as
failing, which numbers are a guest's boot phases and which are its probe
timing figures.  The record itself (harness.results.record, typed by
harness.results.schema) stays the only source; nothing here writes to it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from harness.results.schema import FAILING as FAILING  # re-exported: the reports' one vocabulary
from harness.results.schema import GuestEntry, RunRecord, TestEntry
from harness.results.schema import failing as failing

Record = RunRecord
Test = TestEntry
Guest = GuestEntry

# Order in which verdicts are shown: what needs attention first.
VERDICTS = ("failed", "error", "passed", "skipped")
NO_PROVENANCE = "n/a"

# Boot phases in the order they happen, derived from the guest's timings (seconds).
BOOT_PHASES = ("prepare", "create", "boot", "ssh", "upload", "probe", "teardown")
BOOT_PHASE_HELP = {
    "prepare": "overlay disk, domain XML, fw_cfg (boot_total - create - boot)",
    "create": "libvirt creates the paused domain and the console is attached",
    "boot": "domain running until the guest's ready marker on the console",
    "ssh": "SSH connect and authentication",
    "upload": "probe binary upload",
    "probe": "one klprobe run",
    "teardown": "destroy and undefine the domain",
}


def what(test: Test) -> str:
    """The column of a test in the matrix: its check id, its lifecycle event, or its test function."""
    if test.check:
        return test.check
    if test.event:
        return f"event:{test.event}"
    return test.test or test.nodeid


def label(test: Test) -> str:
    name = what(test)
    if test.check or test.event:
        name = f"{name} ({test.test})"
    return f"{test.guest} · {name}"


def provenance(test: Test) -> str:
    return test.provenance or NO_PROVENANCE


def verdict_counts(record: Record) -> Counter[str]:
    return Counter(t.outcome for t in record.tests)


def provenance_counts(record: Record) -> Counter[str]:
    return Counter(provenance(t) for t in record.tests)


def counts_line(counts: Counter[str], order: tuple[str, ...] | None = VERDICTS) -> str:
    """``3 failed, 60 passed``: in ``order`` (None: most frequent first), zero counts left out."""
    if order is None:
        order = tuple(k for k, _ in counts.most_common())
    keys = [k for k in order if counts[k]] + sorted(k for k in counts if k not in order and counts[k])
    return ", ".join(f"{counts[k]} {k}" for k in keys) or "no tests"


def one_line(text: object, limit: int = 160) -> str:
    """A reason squeezed to one line of at most ``limit`` characters."""
    flat = " ".join(str(text or "").split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def host_accel(record: Record) -> str | None:
    """The accelerator the run's (first) host gave its guests, from the host facts."""
    acc = (record.host or {}).get("accel")
    value = acc.get("accel") if isinstance(acc, dict) else None
    return str(value) if value is not None else None


def accel(record: Record, guest: str | None = None) -> str:
    return record.guest(guest or "").accel or host_accel(record) or "?"


def environment(record: Record, test: Test) -> dict[str, str]:
    """The keys a known issue can match on, for one test of this record."""
    return {"profile": record.profile or "", "accel": accel(record, test.guest),
            "backend": record.guest(test.guest).backend or "", "guest": test.guest}


# -- probe timing figures --------------------------------------------------------------------------------

@dataclass(frozen=True)
class Figure:
    """One probe timing figure of one guest: TSC ticks per operation over ``reps`` repetitions."""

    guest: str
    name: str
    provenance: str
    unit: str
    median: float
    p10: float
    p90: float
    reps: int

    @property
    def family(self) -> str:
        """``kl`` for Key Locker instructions, ``aesni`` for the AES-NI baselines."""
        return "aesni" if self.name.startswith("aesni") else "kl"


# Each AES-NI baseline next to the Key Locker figure it is compared with; others after, by name.
FIGURE_ORDER = ("aesni_aes128_chain", "aesenc128kl_chain", "aesni_aes128_x8", "aesenc128kl_x8", "aesencwide128kl_x8",
                "encodekey128")


def _figure_rank(name: str) -> tuple[int, str]:
    return (FIGURE_ORDER.index(name) if name in FIGURE_ORDER else len(FIGURE_ORDER), name)


def figures(record: Record) -> list[Figure]:
    """Every probe timing figure in the record, by guest, AES-NI baselines next to their KL figure."""
    out: list[Figure] = []
    for guest, g in sorted(record.guests.items()):
        probe = g.probe
        timing = probe.get("timing") if isinstance(probe, Mapping) else None
        figs = timing.get("figures") if isinstance(timing, dict) else None
        if not isinstance(figs, dict):
            continue
        for name, f in sorted(figs.items(), key=lambda kv: _figure_rank(kv[0])):
            try:
                out.append(Figure(guest, name, str(f.get("provenance", "?")), str(f.get("unit", "")),
                                  float(f["median"]), float(f["p10"]), float(f["p90"]), int(f.get("reps", 0))))
            except (KeyError, TypeError, ValueError):
                continue  # a figure the probe could not measure has no median
    return out


# -- boot phases -------------------------------------------------------------------------------------------

def boot_phases(guest: Guest) -> list[tuple[str, float]]:
    """The guest's life as consecutive phases (seconds); phases it did not record are left out."""
    t = guest.timings or {}

    def get(key: str) -> float:
        v = t.get(key)
        return float(v) if isinstance(v, int | float) else 0.0

    prepare = max(0.0, get("boot_total") - get("virt_create") - get("virt_boot"))
    probe = guest.probe_seconds
    values = {"prepare": prepare, "create": get("virt_create"), "boot": get("virt_boot"), "ssh": get("ssh_connect"),
              "upload": get("probe_upload"), "probe": float(probe) if isinstance(probe, int | float) else 0.0,
              "teardown": get("teardown")}
    return [(k, values[k]) for k in BOOT_PHASES if values[k] > 0]


def boot_seconds(guest: Guest) -> float | None:
    """Start of the domain until SSH and the probe were ready (the headline boot figure)."""
    v = (guest.timings or {}).get("ssh_ready")
    return float(v) if isinstance(v, int | float) else None


# -- artifacts ---------------------------------------------------------------------------------------------

def artifact_dir(record: Record, guest: str, run_dir: Path | None) -> Path | None:
    """Where the guest's kept artifacts are: next to the record first (the run directory may have been
    copied or moved), else the path recorded at run time; None when nothing was kept."""
    candidates = []
    if run_dir is not None:
        candidates.append(run_dir / "guests" / guest)
    recorded = record.guest(guest).artifacts
    if recorded is not None:
        candidates.append(Path(recorded))
    for c in candidates:
        if c.is_dir():
            return c
    return None


def read_tail(path: Path, *, lines: int, max_bytes: int = 64 * 1024) -> str | None:
    """The last ``lines`` lines of a text file (at most ``max_bytes`` read), or None if it is unreadable."""
    try:
        with path.open("rb") as fh:
            size = fh.seek(0, 2)
            fh.seek(max(0, size - max_bytes))
            data = fh.read()
    except OSError:
        return None
    text = data.decode("utf-8", errors="replace")
    return "\n".join(text.splitlines()[-lines:])


def read_head(path: Path, *, max_bytes: int) -> str | None:
    """The start of a text file (``max_bytes`` at most, a note when cut), or None if it is unreadable."""
    try:
        with path.open("rb") as fh:
            data = fh.read(max_bytes + 1)
    except OSError:
        return None
    text = data[:max_bytes].decode("utf-8", errors="replace")
    return text + (f"\n… (cut at {max_bytes} bytes)" if len(data) > max_bytes else "")
