"""klharness as a pytest plugin (entry point ``pytest11``): options, parametrization
from the matrix, fixtures over the guest pool, and the run record per test.

Thin on purpose: the work lives in harness.run.session (pool, record, teardown);
this module turns config and profile errors into usage errors, capability
gaps into skips with their reason, and test outcomes into record entries.
The plugin stays inert for test suites that use none of its fixtures.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from harness.config import load_config
from harness.config.model import KEEP_POLICIES
from harness.errors import (
    BuildError,
    CapabilityError,
    CommandError,
    ConfigError,
    GuestError,
    HostError,
    ImageError,
    VirtError,
)
from harness.guest.events import NEEDS_PERSISTENT, NEEDS_SUSPEND
from harness.guest.probeguest import ProbeGuest, ProbeRun
from harness.kl.checks import expected_check_ids
from harness.paths import REPO_DIR
from harness.plan.matrix import GuestPlan, lifecycle_events
from harness.plan.profiles import Profile, check_config, load_profile
from harness.progress.events import NULL_PROGRESS, CellDone, GuestPhase, Planned, RunDone
from harness.results.invocation import Invocation
from harness.results.schema import TestEntry
from harness.run.pool import FreshGuest
from harness.run.session import KlSession

SESSION_KEY = pytest.StashKey[KlSession]()
DETAILS_KEY = pytest.StashKey[dict[str, Any]]()
REPORTS_KEY = pytest.StashKey[dict[str, pytest.TestReport]]()
KL_ARGS = frozenset({"kl_guest", "kl_check", "kl_event"})
INFRASTRUCTURE_ERRORS = (HostError, VirtError, GuestError, BuildError, ImageError, CommandError)
DEFAULT_CONFIG = REPO_DIR / "configs" / "ci.yaml"


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    from harness.run import hooks

    pluginmanager.add_hookspecs(hooks)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("klharness", "Key Locker harness")
    group.addoption("--kl-config", default=None, help="matrix config (default: configs/ci.yaml)")
    group.addoption("--kl-uri", default=None, help="libvirt URI (default: run.uri of the config)")
    group.addoption("--kl-profile", default=None, help="expectation profile name or path (default: run.profile)")
    group.addoption("--kl-keep", default=None, choices=KEEP_POLICIES,
                    help="whose artifacts (console, domain XML, probe JSON) to keep (default: run.keep)")
    group.addoption("--kl-results", default=None, help="results root (default: run.results)")
    group.addoption("--kl-run-id", default=None, help="run id (default: a new one)")
    group.addoption("--kl-no-pool", action="store_true",
                    help="naive mode for benchmarks: a cold boot and a probe run for every test, no sharing")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "kl_guests(**filters): run only on guests whose plan matches "
                            "(kl=True/False, leaf19_zero=True, refused=True, kl_usable=, ring0=, vmm=NAME)")
    config.addinivalue_line("markers", "lifecycle: destructive lifecycle test on a dedicated guest")
    config.addinivalue_line("markers", "native_only: needs real Key Locker (never satisfied by emulation)")
    config.addinivalue_line("markers", "lab: needs lab hardware or a ring-0 helper")
    if config.getoption("--kl-config") or config.getoption("--kl-profile"):
        kl_session(config)  # validate now: a bad config is a usage error, not a collection error


def kl_session(config: pytest.Config) -> KlSession:
    """The run's session, created on first use from the options (usage errors for bad configs)."""
    if SESSION_KEY in config.stash:
        return config.stash[SESSION_KEY]
    opt = config.getoption
    try:
        cfg = load_config(Path(opt("--kl-config") or DEFAULT_CONFIG))
        profile = load_profile(opt("--kl-profile") or cfg.run.profile)
        check_config(cfg, profile)
        session = KlSession(cfg, profile, uri=opt("--kl-uri"), keep=opt("--kl-keep"),
                            results_root=Path(opt("--kl-results")) if opt("--kl-results") else None,
                            run_id=opt("--kl-run-id"), persist=not config.option.collectonly,
                            progress=config.hook.pytest_kl_progress(config=config) or NULL_PROGRESS)
    except ConfigError as err:
        raise pytest.UsageError(str(err)) from err
    config.stash[SESSION_KEY] = session
    inv = config.hook.pytest_kl_invocation(config=config) or _invocation(config)
    rerun = {"rerun_of": inv.rerun_of.to_record()} if inv.rerun_of else {}
    session.recorder.update(lambda d: d.update(invocation=inv.to_record(), **rerun))
    return session


def _invocation(config: pytest.Config) -> Invocation:
    """A run started as ``pytest testcases …``: its options, for the record and ``klharness rerun``."""
    opt = config.getoption
    where = config.invocation_params.dir
    return Invocation(config=str(Path(opt("--kl-config") or DEFAULT_CONFIG).resolve()), profile=opt("--kl-profile"),
                      uri=opt("--kl-uri"), keep=opt("--kl-keep"),
                      results=str(Path(opt("--kl-results")).resolve()) if opt("--kl-results") else None,
                      keyword=config.option.keyword or None, tests=tuple(str(where / a) for a in config.args),
                      argv=("pytest", *config.invocation_params.args), cwd=str(where), rootdir=str(config.rootpath))


def _fresh_suffix(event: str) -> str:
    """A lifecycle cell's dedicated guest is ``<guest>-<event>`` (its domain, record entry and progress line)."""
    return f"-{event}"


def _progress_line(params: dict[str, Any]) -> str | None:
    """The progress line a cell counts on: its pooled guest, or its lifecycle event's own guest."""
    guest, event = params.get("kl_guest"), params.get("kl_event")
    if not isinstance(guest, str):
        return None
    return guest + _fresh_suffix(event) if isinstance(event, str) else guest


# -- parametrization from the matrix -----------------------------------------------------------------

def planned_cpu_checks(p: GuestPlan) -> list[str]:
    """Check ids the probe must report on this guest, known before it boots."""
    cpu = p.spec.kl.cpuid()
    return expected_check_ids(cpu, usable=p.spec.kl.enabled and cpu.usable)


def _select(session: KlSession, filters: dict[str, Any]) -> list[str]:
    out = []
    for name, p in session.plans.items():
        facts = {"kl": p.config.kl.enabled, "leaf19_zero": p.config.kl.leaf19_present_zero,
                 "refused": p.refused is not None, "kl_usable": p.config.kl.enabled and p.config.kl.aeskle,
                 # klhelper's ring-0 checks can run: a VMM that executes KL (setting CR4.KL on Debian's
                 # QEMU 7.2 hangs the vCPU instead of #GP), or a guest that loads the helper anyway (lab)
                 "ring0": p.vmm == "qemu-kl" or p.helper, "vmm": p.vmm}
        if all(facts[k] == v for k, v in filters.items()):
            out.append(name)
    return out


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    wanted = KL_ARGS & set(metafunc.fixturenames)
    if not wanted:
        return
    session = kl_session(metafunc.config)
    marker = metafunc.definition.get_closest_marker("kl_guests")
    guests = _select(session, dict(marker.kwargs) if marker else {})
    if "kl_check" in wanted:
        pairs = [(g, c) for g in guests for c in planned_cpu_checks(session.plans[g])]
        metafunc.parametrize(("kl_guest", "kl_check"), pairs, ids=[f"{g}:{c}" for g, c in pairs])
    elif "kl_event" in wanted:
        pairs = [(g, e) for g in guests for e in lifecycle_events(session.plans[g], session.config)]
        metafunc.parametrize(("kl_guest", "kl_event"), pairs, ids=[f"{g}:{e}" for g, e in pairs])
    else:
        metafunc.parametrize("kl_guest", guests, ids=guests)


def pytest_collection_finish(session: pytest.Session) -> None:
    """Boot the pooled guests the collected tests need, in the background, in collection order; and plan the
    lifecycle cells' own guests, each booted while the cell before it runs."""
    if SESSION_KEY not in session.config.stash or session.config.option.collectonly:
        return
    kls = session.config.stash[SESSION_KEY]
    planned: dict[str, int] = {}
    for item in session.items:
        callspec = getattr(item, "callspec", None)
        line = _progress_line(callspec.params) if callspec is not None else None
        if line is not None:
            planned[line] = planned.get(line, 0) + 1
    kls.progress.emit(Planned(kls.run_id, planned))
    if session.config.getoption("--kl-no-pool"):
        return
    needed: list[str] = []
    fresh: list[FreshGuest] = []
    for item in session.items:
        callspec = getattr(item, "callspec", None)
        guest = callspec.params.get("kl_guest") if callspec is not None else None
        if callspec is None or not isinstance(guest, str) or guest not in kls.plans:
            continue
        event = callspec.params.get("kl_event")
        if "kl_fresh_guest" in getattr(item, "fixturenames", ()):
            name = event if isinstance(event, str) else "fresh"
            fresh.append(FreshGuest(guest, _fresh_suffix(name), persistent=name in NEEDS_PERSISTENT,
                                    suspend=name in NEEDS_SUSPEND))
        elif event is None and guest not in needed:
            needed.append(guest)
    kls.pool.prefetch(needed)
    kls.pool.plan_fresh(fresh)  # queued behind the pooled boots, one cell ahead


# -- fixtures -------------------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def kl(request: pytest.FixtureRequest) -> KlSession:
    """The run's KlSession (config, profile, plans, pool)."""
    return kl_session(request.config)


@pytest.fixture()
def kl_profile(kl: KlSession) -> Profile:
    return kl.profile


@pytest.fixture()
def kl_plan(kl: KlSession, kl_guest: str) -> GuestPlan:
    return kl.plans[kl_guest]


@pytest.fixture()
def kl_record(request: pytest.FixtureRequest) -> dict[str, Any]:
    """Details a test adds to its run-record entry (observation, expectation, source, provenance)."""
    details: dict[str, Any] = {}
    request.node.stash[DETAILS_KEY] = details
    return details


def _skip_if_impossible(kl: KlSession, guest: str) -> None:
    reason = kl.pool.skip_reason(guest)
    if reason:
        pytest.skip(reason)


@pytest.fixture()
def kl_guest_handle(kl: KlSession, kl_guest: str, request: pytest.FixtureRequest) -> Iterator[ProbeGuest]:
    """The pooled (shared) guest for this cell (a private cold boot with --kl-no-pool)."""
    _skip_if_impossible(kl, kl_guest)
    naive = request.config.getoption("--kl-no-pool")
    try:
        pg = kl.pool.fresh(kl_guest, "-naive") if naive else kl.pool.pooled(kl_guest)
    except CapabilityError as err:
        pytest.skip(str(err))
    try:
        yield pg
    finally:
        if naive:
            kl.pool.release(pg, failed=any(r.failed for r in request.node.stash.get(REPORTS_KEY, {}).values()))


@pytest.fixture()
def kl_probe(kl: KlSession, kl_guest: str, kl_guest_handle: ProbeGuest, request: pytest.FixtureRequest) -> ProbeRun:
    """The probe document of the pooled guest (run once per guest; every test with --kl-no-pool)."""
    if request.config.getoption("--kl-no-pool"):
        return kl_guest_handle.probe()
    return kl.pool.probe(kl_guest)


@pytest.fixture()
def kl_fresh_guest(kl: KlSession, kl_guest: str, request: pytest.FixtureRequest) -> Iterator[ProbeGuest]:
    """A dedicated guest for a destructive lifecycle test, torn down (or kept) by outcome."""
    _skip_if_impossible(kl, kl_guest)
    event = request.node.callspec.params.get("kl_event", "fresh")
    try:
        pg = kl.pool.fresh(kl_guest, _fresh_suffix(event), persistent=event in NEEDS_PERSISTENT,
                      suspend=event in NEEDS_SUSPEND)
    except CapabilityError as err:
        pytest.skip(str(err))
    if "kl_event" in request.node.callspec.params:
        kl.progress.emit(GuestPhase(pg.guest.spec.name, "event", event))
    try:
        yield pg
    finally:
        reports = request.node.stash.get(REPORTS_KEY, {})
        failed = any(r.failed for r in reports.values())
        kl.pool.release(pg, failed=failed)


# -- outcomes into the run record --------------------------------------------------------------------------

@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report: pytest.TestReport = yield
    item.stash.setdefault(REPORTS_KEY, {})[report.when] = report
    if SESSION_KEY not in item.config.stash:
        return report
    kls = item.config.stash[SESSION_KEY]
    callspec = getattr(item, "callspec", None)
    guest = callspec.params.get("kl_guest") if callspec else None
    guest = guest if isinstance(guest, str) else None
    done = report.when == "call" or (report.when == "setup" and not report.passed)
    if guest and report.failed:
        kls.pool.mark_failed(guest)
    if done and callspec is not None and guest is not None:
        entry = _test_entry(item, report, call, guest, callspec.params)
        kls.recorder.add_test(entry.to_json())
        kls.progress.emit(CellDone(_progress_line(callspec.params) or guest, entry.outcome,
                                   str(entry.check or entry.event or entry.test), entry.reason or ""))
    return report


def _test_entry(item: pytest.Item, report: pytest.TestReport, call: pytest.CallInfo[None], guest: str,
                params: dict[str, object]) -> TestEntry:
    """The record entry of one finished cell, typed: its place in the matrix, its outcome and its reason, and
    what the test added with ``kl_record`` (observation, expectation, source, provenance, verdict, …).

    The reason of a failed cell is the judged verdict's when the test recorded one; otherwise (a broken
    harness, an assertion of the test's own) the first line of what pytest reports.  Details of the wrong
    kind (a test putting a list where the schema wants a string) are not written as they are: the entry
    keeps the outcome and says which field was wrong, so the run's record stays readable.
    """
    details: dict[str, Any] = item.stash.get(DETAILS_KEY, {})
    check, event = params.get("kl_check"), params.get("kl_event")
    base = TestEntry(
        nodeid=item.nodeid, test=item.originalname if isinstance(item, pytest.Function) else item.name,
        guest=guest, check=check if isinstance(check, str) else None, event=event if isinstance(event, str) else None,
        outcome="error" if report.when == "setup" and report.failed else report.outcome,
        duration=round(report.duration, 4), finished=time.time())
    reason: str | None = None
    infrastructure: str | None = None
    if report.skipped and isinstance(report.longrepr, tuple):
        reason = str(report.longrepr[2]).removeprefix("Skipped: ")
    elif report.failed:
        verdict = details.get("verdict")
        reasons = verdict.get("reasons") if isinstance(verdict, dict) else None
        reason = "; ".join(map(str, reasons)) if reasons else _short_reason(report)
        if call.excinfo is not None and isinstance(call.excinfo.value, INFRASTRUCTURE_ERRORS):
            # The harness or host broke, not the stack under test: say so, apart from verdicts.
            infrastructure = type(call.excinfo.value).__name__
    fields = {**base.to_json(), **({"reason": reason} if reason is not None else {}),
              **({"infrastructure": infrastructure} if infrastructure else {}), **details}
    try:
        return TestEntry.from_json(fields, source=f"{item.nodeid}: kl_record")
    except HostError as err:
        return replace(base, reason=f"{reason + '; ' if reason else ''}{err}", infrastructure="RecordError")


def _short_reason(report: pytest.TestReport) -> str:
    crash = getattr(report.longrepr, "reprcrash", None)
    text = str(crash.message) if crash is not None else str(report.longrepr)
    return text.strip().splitlines()[0][:500] if text.strip() else "failed"


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    kls = session.config.stash.get(SESSION_KEY, None)
    if kls is None:
        return
    status = {0: "complete", 1: "complete", 2: "interrupted"}.get(int(exitstatus), "failed")
    kls.close(status)
    kls.progress.emit(RunDone(status))
    tr = session.config.pluginmanager.get_plugin("terminalreporter")
    if tr is not None and kls.recorder.persist:
        tr.write_line(f"klharness run record: {kls.recorder.path}")


def pytest_report_header(config: pytest.Config) -> list[str] | None:
    kls = config.stash.get(SESSION_KEY, None)
    if kls is None:
        return None
    return [f"klharness: config {kls.config.source}, profile {kls.profile.name}, uri {kls.uri}, run {kls.run_id}"]
