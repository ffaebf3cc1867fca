"""The ``cloud`` image: a qcow2 the user brings, reached through a cloud-init NoCloud seed.

Why: lab users test the distribution image they ship, not ours.  We never
write their file (each guest boots an overlay on it) and we do not copy or
hash it (it may be gigabytes): the manifest records its size and mtime, so a
base image written after the build is caught on use (if you replaced it on
purpose, ``klharness image rm cloud`` and use it again).

The seed ISO (volume id ``cidata``) carries ``meta-data`` and a
``#cloud-config`` ``user-data`` dumped from a Python dict with PyYAML (never
string-templated), which installs the harness's public key for root.

SSH host key: unknown at build time (the guest makes it on first boot), so
``host_key`` is ``None``.  cloud-init prints the host public keys on the
serial console between ``-----BEGIN SSH HOST KEY KEYS-----`` and
``-----END SSH HOST KEY KEYS-----``; the harness reads them from there.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import yaml

from harness import proc
from harness.errors import CommandError, ImageError
from harness.images.artifact import READY_MARKER
from harness.images.recipe import BuildResult, Option, Plan, Recipe
from harness.timeouts import active as active_timeouts

SEED_VOLUME_ID = "cidata"  # what cloud-init's NoCloud datasource looks for


class CloudRecipe(Recipe):
    name = "cloud"
    summary = "your own qcow2 (option base=PATH) + a cloud-init NoCloud seed with the harness's SSH key"
    sources = ("harness/images/cloud.py",)
    options: ClassVar[Mapping[str, Option]] = {
        "base": Option("path of the qcow2 cloud image to boot (never written: guests get overlays)"),
        "authorized_key": Option("SSH public key line installed for the login user"),
        "user": Option("login user the key is installed for", "root"),
        "hostname": Option("guest hostname", "klh-cloud"),
    }

    def plan(self, options: Mapping[str, str]) -> Plan:
        opts = self.check_options(options)
        for required in ("base", "authorized_key"):
            if not opts.get(required):
                raise ImageError(f"image cloud: option {required!r} is required "
                                 f"(e.g. -o base=/srv/debian-12-genericcloud-amd64.qcow2 -o authorized_key=\"$(cat "
                                 "~/.ssh/id_ed25519.pub)\")")
        base = Path(opts["base"]).expanduser().resolve()
        try:
            base.stat()
        except OSError as err:
            raise ImageError(f"image cloud: base image {base}: {err.strerror}") from err
        _check_key(opts["authorized_key"])
        inputs = {
            "sources": self.source_hashes(),
            # The path only: the seed does not depend on the base's content, and a base that
            # changes after the build is caught on use (manifest "external": size + mtime).
            "base": str(base),
            "authorized_key": opts["authorized_key"].strip(),
            "user": opts["user"],
            "hostname": opts["hostname"],
        }
        return Plan(self.name, {**opts, "base": str(base)}, inputs)

    def build(self, plan: Plan, out: Path, work: Path) -> BuildResult:
        base = Path(plan.options["base"])
        fmt = _image_format(base)
        if fmt != "qcow2":
            raise ImageError(f"image cloud: {base} is {fmt}, not qcow2 (convert it: "
                             f"qemu-img convert -O qcow2 {base} {base.with_suffix('.qcow2')})")
        write_seed_iso(out / "seed.iso", authorized_keys=[plan.options["authorized_key"]],
                       user=plan.options["user"], hostname=plan.options["hostname"],
                       instance_id=f"klh-{plan.key[:12]}", work=work)
        return BuildResult(
            artifact={
                "disk": str(base),
                "seed_iso": "seed.iso",
                "host_key": None,
                "ssh_user": plan.options["user"],
                "ready_marker": READY_MARKER,
                "features": ["cloud-init"],
            },
            external=(base,),
        )


def _check_key(key: str) -> None:
    parts = key.split()
    if len(parts) < 2 or not (parts[0].startswith("ssh-") or parts[0].startswith("ecdsa-")):
        raise ImageError(f"image cloud: authorized_key {key[:40]!r}… is not an OpenSSH public key line "
                         "(expected 'ssh-ed25519 AAAA… comment')")


def _image_format(path: Path) -> str:
    try:
        info = proc.run(["qemu-img", "info", "--output=json", "-U", str(path)], timeout=active_timeouts().build_step)
        return str(json.loads(info.stdout).get("format", "unknown"))
    except (CommandError, ValueError) as err:
        raise ImageError(f"image cloud: cannot read {path} with qemu-img (package qemu-utils): {err}") from err


def user_data(*, authorized_keys: Sequence[str], user: str) -> dict[str, Any]:
    """The ``#cloud-config`` document: the key for ``user`` (root allowed), no passwords, a ready line."""
    keys = [k.strip() for k in authorized_keys]
    doc: dict[str, Any] = {"ssh_pwauth": False, "disable_root": user != "root"}
    if user == "root":
        doc["users"] = [{"name": "root", "ssh_authorized_keys": keys}]
    else:
        doc["users"] = [{"name": user, "ssh_authorized_keys": keys, "lock_passwd": True, "shell": "/bin/sh",
                         "sudo": "ALL=(ALL) NOPASSWD:ALL"}]
    # cloud-final runs after sshd was started; the harness still waits for the SSH greeting.
    doc["runcmd"] = [["sh", "-c", f"echo '{READY_MARKER}' > /dev/console"]]
    return doc


def write_seed_iso(dest: Path, *, authorized_keys: Sequence[str], user: str = "root", hostname: str = "klh-cloud",
                   instance_id: str, work: Path) -> Path:
    """Write a NoCloud seed ISO to ``dest`` (usable per run too, with a run's own key)."""
    work.mkdir(parents=True, exist_ok=True)
    (work / "user-data").write_text("#cloud-config\n" + yaml.safe_dump(
        user_data(authorized_keys=authorized_keys, user=user), sort_keys=True))
    (work / "meta-data").write_text(yaml.safe_dump({"instance-id": instance_id, "local-hostname": hostname},
                                                   sort_keys=True))
    argv = ["genisoimage", "-quiet", "-output", str(dest), "-volid", SEED_VOLUME_ID, "-joliet", "-rock",
            "user-data", "meta-data"]
    try:
        proc.run(argv, cwd=work, timeout=active_timeouts().build_step)
    except CommandError as err:
        raise ImageError(f"writing the cloud-init seed {dest} failed (package genisoimage): {err}") from err
    return dest
