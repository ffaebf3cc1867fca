"""Find and fetch Debian packages for guest images, without installing them on the host.

Why: guest kernels come from the distribution (signed, with modules and
headers that match), but must never be installed on the host.  ``apt-get
download`` fetches a ``.deb`` as the host's apt sources and keys allow; we
keep each under ``cache_dir()/debs`` and reuse it while its SHA256 still
matches the package index, so a rebuild needs no network.
"""

from __future__ import annotations

import json
import logging
import os
import re
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from harness import proc
from harness.errors import CommandError, ImageError
from harness.images.manifest import sha256_file
from harness.paths import cache_dir
from harness.timeouts import active as active_timeouts

log = logging.getLogger(__name__)

APT_LISTS = "/var/lib/apt/lists"


@dataclass(frozen=True)
class Package:
    """One exact binary package version, as the apt index describes it."""

    name: str
    version: str
    sha256: str
    size: int
    arch: str = "amd64"

    @property
    def filename(self) -> str:
        # apt-get download's naming: NAME_VERSION_ARCH.deb with ':' (epochs) escaped as %3a.
        return f"{self.name}_{self.version.replace(':', '%3a')}_{self.arch}.deb"

    def __str__(self) -> str:
        return f"{self.name}={self.version}"


def debs_dir() -> Path:
    path = cache_dir() / "debs"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _apt_cache(*args: str, check: bool = True) -> str:
    try:
        return proc.run(["apt-cache", *args], timeout=active_timeouts().package_index, check=check).stdout
    except CommandError as err:
        raise ImageError(f"apt-cache {' '.join(args)} failed: {err}") from err


def resolve(name: str) -> Package:
    """The candidate version of package ``name`` (what ``apt-get download NAME`` would fetch)."""
    fields = _show(name)
    if not fields.get("Version") or not fields.get("SHA256"):
        raise ImageError(f"package {name!r} is not in the apt index; run `apt-get update` (scripts/setup-host "
                         f"does it) and check `apt-cache policy {name}`")
    return Package(name, fields["Version"], fields["SHA256"], int(fields.get("Size", "0")),
                   fields.get("Architecture", "amd64"))


def depends(name: str) -> list[str]:
    """Names in the candidate's ``Depends`` (first alternative of each, versions dropped)."""
    field = _show(name).get("Depends", "")
    return [dep.split("|")[0].split("(")[0].strip() for dep in field.split(",") if dep.strip()]


def _show(name: str) -> dict[str, str]:
    text = _memo(f"show {name}", lambda: _apt_cache("show", "--no-all-versions", name, check=False))
    return _first_stanza(text)


def _memo(query: str, compute: Callable[[], str]) -> str:
    """``compute()``, remembered until the apt lists change (``apt-cache`` costs ~0.4 s a call)."""
    try:
        stamp = str(Path(APT_LISTS).stat().st_mtime_ns)
    except OSError:
        return compute()
    memo_file = cache_dir() / "apt-memo.json"
    try:
        memo = json.loads(memo_file.read_text())
    except (OSError, ValueError):
        memo = {}
    if not isinstance(memo, dict) or memo.get("stamp") != stamp:
        memo = {"stamp": stamp, "answers": {}}
    answers = memo["answers"]
    if query not in answers:
        answers[query] = compute()
        tmp = memo_file.with_name(f".apt-memo.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(memo))
        tmp.replace(memo_file)
    return str(answers[query])


def _first_stanza(text: str) -> dict[str, str]:
    fields: dict[str, str] = {}
    for line in text.split("\n\n", 1)[0].splitlines():
        if line and not line[0].isspace() and ":" in line:
            key, _, value = line.partition(":")
            fields[key] = value.strip()
    return fields


def default_kernel(flavour: str = "cloud-amd64") -> str:
    """The kernel the distribution's ``linux-image-FLAVOUR`` metapackage installs (Debian 12: 6.1).

    Why not the newest in the index: backported 6.12 kernels ignore the extra
    CPU slots QEMU 7.2 describes ("Allowing N present CPUs plus 0 hotplug
    CPUs"), so vCPU hotplug never reaches the guest; the stable 6.1 kernel
    sees hot-added CPUs and boots as fast.  Falls back to :func:`newest_kernel`.
    """
    meta = f"linux-image-{flavour}"
    for dep in depends(meta) if _show(meta).get("Version") else []:
        if dep.startswith("linux-image-") and dep.endswith(flavour) and dep != meta:
            return dep
    return newest_kernel(flavour)


def newest_kernel(flavour: str = "cloud-amd64") -> str:
    """Name of the newest real kernel image package of ``flavour`` in the apt index.

    Metapackages (``linux-image-cloud-amd64``, ``linux-image-6.12-cloud-amd64``),
    ``-dbg`` and ``-unsigned`` packages are skipped: only names with a full
    ``X.Y.Z`` version qualify.  Ordered by the kernel version in the name.
    """
    query = f"^linux-image-.*-{re.escape(flavour)}$"
    text = _memo(f"search {query}", lambda: _apt_cache("search", "--names-only", query))
    pattern = re.compile(rf"^linux-image-(\d+)\.(\d+)\.(\d+)([-+][0-9a-z]+)?-{re.escape(flavour)}$")
    best: tuple[tuple[int, ...], str] | None = None
    for line in text.splitlines():
        name = line.split(" ", 1)[0]
        match = pattern.match(name)
        if not match:
            continue
        abi = re.findall(r"\d+", match.group(4) or "")
        rank = (int(match.group(1)), int(match.group(2)), int(match.group(3)), *(int(n) for n in abi[:1]))
        if best is None or rank > best[0]:
            best = (rank, name)
    if best is None:
        raise ImageError(f"no linux-image-*-{flavour} package in the apt index; run `apt-get update` "
                         "(scripts/setup-host) or set the image option kernel_package=NAME")
    return best[1]


def fetch(pkg: Package) -> Path:
    """The cached ``.deb`` of ``pkg``, downloading it first if missing or damaged."""
    dest = debs_dir() / pkg.filename
    if dest.is_file() and sha256_file(dest) == pkg.sha256:
        return dest
    with tempfile.TemporaryDirectory(dir=debs_dir(), prefix=".dl-") as tmp:
        argv = ["apt-get", "download", "-q", "-o", "APT::Sandbox::User=root", str(pkg)]
        log.info("downloading %s", pkg)
        try:
            proc.run(argv, cwd=tmp, timeout=active_timeouts().package_download)
        except CommandError as err:
            raise ImageError(f"downloading package {pkg} failed; try by hand: `cd /tmp && apt-get download {pkg}` "
                             f"(after `apt-get update`): {err}") from err
        got = Path(tmp) / pkg.filename
        if not got.is_file():
            found = ", ".join(p.name for p in Path(tmp).iterdir()) or "nothing"
            raise ImageError(f"apt-get download {pkg} produced {found}, expected {pkg.filename}")
        if sha256_file(got) != pkg.sha256:
            raise ImageError(f"downloaded {pkg.filename} does not match the SHA256 in the apt index; "
                             "run `apt-get update` and retry")
        got.replace(dest)
    return dest


def extract(deb: Path, dest: Path) -> None:
    """Unpack ``deb``'s files (not its maintainer scripts) under ``dest``."""
    dest.mkdir(parents=True, exist_ok=True)
    try:
        proc.run(["dpkg-deb", "-x", str(deb), str(dest)], timeout=active_timeouts().package_extract)
    except CommandError as err:
        raise ImageError(f"unpacking {deb} failed (delete it to download again): {err}") from err
