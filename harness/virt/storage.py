"""Stage files on a libvirt host through its storage API: images and fw_cfg blobs for remote hosts.

Why: a lab host reached as ``qemu+ssh://lab1/system`` cannot read the
harness's cache or work directories, and the harness has no other channel to
it than libvirt (ARCHITECTURE.md §3.7: no home-made cluster layer).  Files go
into a directory pool ``klharness`` on that host as volumes; image volumes are
named by content hash and reused, fw_cfg volumes (they may hold the per-VM
secret) are created 0600 and deleted with the guest's run.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import libvirt

from harness.errors import VirtError
from harness.images.artifact import ImageArtifact

log = logging.getLogger(__name__)

POOL_NAME = "klharness"
POOL_PATH = "/var/lib/libvirt/images/klharness"
STAGED_FEATURE = "staged"  # ImageArtifact.features: paths are the host's, not ours
RUN_VOLUME_KINDS = ("fw", "save", "ovl", "tag")  # a run's own volumes: fw_cfg blobs, save images, overlays, its tag
OWNER_TAG = "owner.json"


def run_volume(kind: str, domain: str, name: str) -> str:
    """A run's own volume (one of RUN_VOLUME_KINDS: a fw_cfg blob, a save image, an overlay, the run's tag),
    named so that the run's end can find it: ``<kind>-<domain>-<name>``, and the domain is
    ``klh-<run>-<guest>``."""
    return f"{kind}-{domain}-{name}"


def run_volume_prefixes(run_id: str) -> tuple[str, ...]:
    """The name prefixes of every volume :func:`run_volume` makes for run ``run_id``."""
    return tuple(f"{kind}-klh-{run_id}-" for kind in RUN_VOLUME_KINDS)


def tag_run(conn: Any, run_id: str, owner: dict[str, Any], scratch: Path) -> None:
    """Upload the run's owner tag (``tag-klh-<run>-owner.json``: run id, harness pid and start, hostname),
    so that a later cleanup can tell a dead run's volumes from a live one's (the reaper reads it)."""
    path = scratch / f"tag-{run_id}.json"
    path.write_text(json.dumps(owner) + "\n")
    stage_file(conn, path, run_volume("tag", f"klh-{run_id}", OWNER_TAG), mode=0o600)


def run_tags(conn: Any) -> dict[str, dict[str, Any]]:
    """Every run tag on the host's pool: run id -> its owner (an unreadable tag maps to {})."""
    try:
        pool = conn.storagePoolLookupByName(POOL_NAME)
        pool.refresh(0)
        vols = pool.listAllVolumes(0)
    except libvirt.libvirtError:
        return {}
    tags: dict[str, dict[str, Any]] = {}
    head, tail = "tag-klh-", f"-{OWNER_TAG}"
    for vol in vols:
        name = vol.name()
        if name.startswith(head) and name.endswith(tail):
            try:
                tags[name[len(head):-len(tail)]] = json.loads(_download(conn, vol))
            except (libvirt.libvirtError, ValueError):
                tags[name[len(head):-len(tail)]] = {}
    return tags


def _download(conn: Any, vol: Any, limit: int = 65536) -> bytes:
    size = min(int(vol.info()[1]), limit)
    stream = conn.newStream(0)
    vol.download(stream, 0, size, 0)
    chunks: list[bytes] = []
    stream.recvAll(lambda _st, data, acc: acc.append(data), chunks)
    stream.finish()
    return b"".join(chunks)


def ensure_pool(conn: Any) -> Any:
    """The host's ``klharness`` directory pool, defined, built and started on first use."""
    try:
        pool = conn.storagePoolLookupByName(POOL_NAME)
    except libvirt.libvirtError:
        xml = ET.Element("pool", type="dir")
        ET.SubElement(xml, "name").text = POOL_NAME
        target = ET.SubElement(xml, "target")
        ET.SubElement(target, "path").text = POOL_PATH
        perms = ET.SubElement(target, "permissions")
        ET.SubElement(perms, "mode").text = "0711"
        try:
            pool = conn.storagePoolDefineXML(ET.tostring(xml, encoding="unicode"), 0)
            pool.build(0)
        except libvirt.libvirtError as err:
            raise VirtError(f"creating storage pool {POOL_NAME!r} at {POOL_PATH} on {conn.getURI()}: "
                            f"{err.get_error_message()}") from err
    if not pool.isActive():
        pool.create(0)  # starting a dir pool scans it: the volumes of earlier runs are known from here on
    return pool


def stage_file(conn: Any, local: Path, volume: str, *, mode: int = 0o644, reuse: bool = False) -> Path:
    """Upload ``local`` as volume ``volume``; its path on the host.

    ``reuse``: the name says the content (an image file named by its content key), so a volume that
    was uploaded whole before — its ``<volume>.staged`` marker exists and its file has ``local``'s size —
    is used as it is.  The size is the file's (``physical``), not the capacity, which for an uploaded
    qcow2 is its virtual size once the pool has probed it.  Without ``reuse`` any old volume of that
    name is replaced.
    """
    pool = ensure_pool(conn)
    size = local.stat().st_size
    marker = f"{volume}.staged"
    if reuse and _file_size(pool, volume) == size and _file_size(pool, marker) is not None:
        return Path(pool.storageVolLookupByName(volume).path())
    for old in (volume, marker):
        with contextlib.suppress(libvirt.libvirtError):
            pool.storageVolLookupByName(old).delete(0)
    vol = _upload(conn, pool, local, volume, mode)
    if reuse:  # only now: an upload cut short leaves no marker, so the next run uploads again
        _create_raw(pool, marker, 0, mode)
    log.info("staged %s on %s as %s", local.name, conn.getURI(), vol.path())
    return Path(vol.path())


def _file_size(pool: Any, volume: str) -> int | None:
    """The size of a volume's file (``physical``; -1 when libvirt gives none, as for an empty file), or None
    when the pool has no such volume."""
    try:
        vol = pool.storageVolLookupByName(volume)
        desc = ET.fromstring(vol.XMLDesc(0))  # noqa: S314 - XML from the host's libvirt daemon
        return int(desc.findtext("physical") or -1)
    except libvirt.libvirtError:
        return None


def _create_raw(pool: Any, volume: str, size: int, mode: int) -> Any:
    xml = ET.Element("volume")
    ET.SubElement(xml, "name").text = volume
    ET.SubElement(xml, "capacity", unit="bytes").text = str(size)
    target = ET.SubElement(xml, "target")
    ET.SubElement(target, "format", type="raw")
    perms = ET.SubElement(target, "permissions")
    ET.SubElement(perms, "mode").text = f"{mode:04o}"
    return pool.createXML(ET.tostring(xml, encoding="unicode"), 0)


def _upload(conn: Any, pool: Any, local: Path, volume: str, mode: int) -> Any:
    size = local.stat().st_size
    try:
        vol = _create_raw(pool, volume, size, mode)
        stream = conn.newStream(0)
        vol.upload(stream, 0, size, 0)
        with local.open("rb") as f:
            stream.sendAll(lambda _st, nbytes, fh: fh.read(nbytes), f)
        stream.finish()
    except libvirt.libvirtError as err:
        raise VirtError(f"uploading {local} to {conn.getURI()} pool {POOL_NAME}: {err.get_error_message()}") from err
    return vol


def create_overlay_volume(conn: Any, base: Path, volume: str) -> Path:
    """A qcow2 overlay volume in the host's pool on the staged base disk ``base`` (its size is the base's: the
    pool probes the uploaded file's format); the base is never written.  Its path on the host."""
    pool = ensure_pool(conn)
    pool.refresh(0)  # the base as the pool probes it (qcow2, its virtual size), for the overlay to take
    xml = ET.Element("volume")
    ET.SubElement(xml, "name").text = volume
    target = ET.SubElement(xml, "target")
    ET.SubElement(target, "format", type="qcow2")
    perms = ET.SubElement(target, "permissions")
    ET.SubElement(perms, "mode").text = "0600"
    backing = ET.SubElement(xml, "backingStore")
    ET.SubElement(backing, "path").text = str(base)
    ET.SubElement(backing, "format", type="qcow2")
    try:
        vol = pool.createXML(ET.tostring(xml, encoding="unicode"), 0)
    except libvirt.libvirtError as err:
        raise VirtError(f"creating overlay {volume} on {base} in pool {POOL_NAME} of {conn.getURI()}: "
                        f"{err.get_error_message()}") from err
    return Path(vol.path())


def delete_named_volumes(conn: Any, names: list[str]) -> list[str]:
    """Delete exactly these volumes of the pool (one guest's own at its teardown); the ones deleted.

    Exact names, not a prefix: guest ``kl-full``'s prefix is also the start of ``kl-full-reboot``'s.
    """
    gone: list[str] = []
    try:
        pool = conn.storagePoolLookupByName(POOL_NAME)
        pool.refresh(0)  # a save image is written by libvirt's save, not through the pool: find it
    except libvirt.libvirtError:
        return gone
    errors = []
    for name in names:
        try:
            pool.storageVolLookupByName(name).delete(0)
            gone.append(name)
        except libvirt.libvirtError as err:
            if err.get_error_code() != libvirt.VIR_ERR_NO_STORAGE_VOL:
                errors.append(f"{name}: {err.get_error_message()}")
    if errors:
        raise VirtError(f"deleting volumes of pool {POOL_NAME}: {'; '.join(errors)} (the run's end tries again)")
    return gone


def delete_volumes(conn: Any, prefix: str | tuple[str, ...]) -> list[str]:
    """Delete the pool's volumes whose names start with ``prefix`` (a run's fw_cfg blobs and save images).

    Raises VirtError naming what is left: these blobs can hold the per-VM secret.
    """
    gone = []
    try:
        pool = conn.storagePoolLookupByName(POOL_NAME)
        pool.refresh(0)
        for vol in pool.listAllVolumes(0):
            if vol.name().startswith(prefix):
                vol.delete(0)
                gone.append(vol.name())
    except libvirt.libvirtError as err:
        if err.get_error_code() == libvirt.VIR_ERR_NO_STORAGE_POOL:
            return gone  # nothing was ever staged on this host
        shown = "|".join(prefix) if isinstance(prefix, tuple) else prefix
        raise VirtError(f"deleting the volumes {shown}* of pool {POOL_NAME} failed after {len(gone)}: "
                        f"{err.get_error_message()} (delete them with virsh vol-delete --pool {POOL_NAME})") from err
    return gone


def stage_image(conn: Any, image: ImageArtifact) -> ImageArtifact:
    """The image with its files (boot files, base disk, cloud-init seed) uploaded to the host once, named by
    the image's content key; paths replaced by the host's.  A guest's overlay on a staged base disk is made
    there too (:func:`create_overlay_volume`)."""
    changes: dict[str, Any] = {}
    for field in ("kernel", "initrd", "kernel_bzimage", "disk", "seed_iso"):
        path = getattr(image, field, None)
        if path is not None:
            digest = hashlib.sha256(f"{image.key}/{path.name}".encode()).hexdigest()[:16]
            changes[field] = stage_file(conn, path, f"img-{image.name}-{digest}-{path.name}", reuse=True)
    return dataclasses.replace(image, features=image.features | {STAGED_FEATURE}, **changes)
