"""qemu-kl keeps each guest's IWKey in the VMM: what savevm/restore, live migration, a reset and the
migration blocker do to a handle made before them (qemu-kl/README.md, patch 0005).

Real guests on the patched QEMU through libvirt; migration goes to the run's peer daemon (a second
libvirtd on this host).  The handle is made with a known IWKey loaded by klhelper, so "rejected
after a reset" can be told apart from "a new key was loaded": loading the known key again makes the
same handle authenticate again.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
from qemu_kl_support import qemu_kl_guest, run_context, set_known_key

from harness.config.model import KlConfig
from harness.errors import BuildError, MigrationRefused
from harness.guest import events, klhelper
from harness.guest.probeguest import ProbeGuest
from harness.virt import lifecycle
from harness.virt.peer import close_run_peers
from harness.vmm import qemu_kl

pytestmark = [pytest.mark.integration, pytest.mark.slow]

RUN = f"ql{os.getpid()}"
KL = KlConfig(enabled=True)


@pytest.fixture(scope="module")
def ctx(real_conn: Any) -> Iterator[Any]:
    try:
        qemu_kl.installed()
    except BuildError as err:
        pytest.fail(f"qemu-kl must be built for these tests (scripts/setup-host does it): {err}")
    with run_context(real_conn, RUN) as c:
        try:
            yield c
        finally:
            close_run_peers(RUN)


def valid(pg: ProbeGuest, saved: bytes) -> bool:
    return bool(pg.handle_check(saved).facts["handle_valid"])


def backup_status(pg: ProbeGuest) -> str:
    return klhelper.status(pg.connect())["iwkeybackup_status(0x991)"]


def test_a_handle_survives_savevm_and_restore(ctx: Any) -> None:
    with qemu_kl_guest(ctx, "qkl-save", KL, vcpus=1) as pg:
        set_known_key(pg)
        saved = pg.handle_save()
        events.save_restore(pg)
        assert valid(pg, saved)


def test_a_handle_survives_live_migration_and_the_way_back(ctx: Any) -> None:
    with qemu_kl_guest(ctx, "qkl-migrate", KL, vcpus=2) as pg:
        saved = pg.handle_save()  # under klhelper's random key: only the VMM knows it
        pg.run(f"echo x > {klhelper.DEBUGFS_DIR}/backup", check=True)
        events.migrate(pg)
        assert pg.guest.conn is not ctx.conn  # on the peer daemon now
        assert valid(pg, saved)
        assert backup_status(pg) == "0x1"  # the platform backup moved with the guest
        events.migrate(pg)
        assert pg.guest.conn is ctx.conn and valid(pg, saved)


def test_a_reset_clears_the_iwkey_and_the_platform_backup(ctx: Any) -> None:
    # initial_key=0: klhelper loads no key of its own and takes no backup at load, so after the
    # reset the backup status is the VMM's alone (by default klhelper backs its new key up at once).
    with qemu_kl_guest(ctx, "qkl-reset", KL, vcpus=1, helper_params=("initial_key=0",)) as pg:
        set_known_key(pg)
        saved = pg.handle_save()
        pg.run(f"echo x > {klhelper.DEBUGFS_DIR}/backup", check=True)
        assert backup_status(pg) == "0x1"
        pg.drop_session()
        lifecycle.reset(pg.guest)
        pg.connect()  # a new boot: klhelper is loaded again, loading no key
        assert not valid(pg, saved)
        assert backup_status(pg) == "0x0"  # a real reset took the backup too
        set_known_key(pg)
        assert valid(pg, saved)  # the handle itself was fine: it was the key that went


def test_the_migration_blocker_refuses_a_guest_that_loaded_an_iwkey(ctx: Any) -> None:
    with qemu_kl_guest(ctx, "qkl-blocked", KlConfig(enabled=True, migration_blocker=True), vcpus=1) as pg:
        assert "keylocker-block-migration=on" in " ".join(pg.guest.spec.qemu_cpu_globals())
        with pytest.raises(MigrationRefused, match=r"(?i)key locker.*keylocker-block-migration is on"):
            events.migrate(pg)
        assert pg.guest.conn is ctx.conn
        assert pg.run(["true"]).returncode == 0  # still running on the source


def test_without_a_loaded_iwkey_the_blocker_does_not_fire(ctx: Any) -> None:
    with qemu_kl_guest(ctx, "qkl-noload", KlConfig(enabled=True, migration_blocker=True), vcpus=1,
                       helper=False) as pg:
        events.migrate(pg)  # no LOADIWKEY yet: nothing to protect, nothing blocks
        assert pg.guest.conn is not ctx.conn
