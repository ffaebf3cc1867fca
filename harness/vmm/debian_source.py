"""Fetch and unpack a Debian source package through the machine's own package registry.

Why this way: the only sources reachable here are the distribution's package
registries, and the machine's apt configuration already names them.  A
``deb-src`` entry is derived from each ``deb`` entry (same URIs, suites,
components and keyring) into a private apt directory, so the machine's own
apt state is never changed and no mirror's name is written anywhere.  Both
apt source formats are read: deb822 ``*.sources`` and one-line ``*.list``.

``apt-get source --download-only`` fetches the ``.dsc`` and its tarballs;
``dpkg-source -x`` unpacks them with the Debian patches applied.
"""

from __future__ import annotations

import logging
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from harness import proc
from harness.errors import BuildError, CommandError
from harness.timeouts import active as active_timeouts

log = logging.getLogger(__name__)

APT_SOURCES = Path("/etc/apt/sources.list.d")
APT_SOURCES_LIST = Path("/etc/apt/sources.list")
_VERSION_LINE = re.compile(r"^Version:\s*(\S+)\s*$", re.MULTILINE)


@dataclass(frozen=True)
class SourcePackage:
    """One downloaded source package: its version, its ``.dsc``, and how the version was chosen."""

    name: str
    version: str
    dsc: Path
    note: str


def derive_deb_src(sources_dir: Path = APT_SOURCES, sources_list: Path = APT_SOURCES_LIST) -> str:
    """deb822 text with one ``Types: deb-src`` stanza per ``deb`` entry of the machine's apt config."""
    stanzas: list[str] = []
    for path in sorted(sources_dir.glob("*.sources")) if sources_dir.is_dir() else []:
        for block in re.split(r"\n\s*\n", path.read_text()):
            fields = _deb822_fields(block)
            if "deb" in fields.get("Types", "").split() and fields.get("Enabled", "yes") != "no":
                stanzas.append(_stanza(fields))
    list_files = [sources_list] if sources_list.is_file() else []
    list_files += sorted(sources_dir.glob("*.list")) if sources_dir.is_dir() else []
    for path in list_files:
        for line in path.read_text().splitlines():
            one = _one_line_fields(line)
            if one:
                stanzas.append(_stanza(one))
    if not stanzas:
        raise BuildError(f"no 'deb' entries in {sources_dir}/*.sources or {sources_list}: apt cannot reach the "
                         "distribution's package registry, so its source packages cannot be fetched")
    return "\n".join(stanzas)


def _deb822_fields(block: str) -> dict[str, str]:
    fields: dict[str, str] = {}
    key = None
    for line in block.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if line[0] in " \t" and key:
            fields[key] += " " + line.strip()
            continue
        key, _, value = line.partition(":")
        key = key.strip()
        fields[key] = value.strip()
    return fields


def _one_line_fields(line: str) -> dict[str, str] | None:
    """``deb [signed-by=K] URI SUITE COMP...`` as deb822 fields (None for anything else)."""
    words = line.split("#", 1)[0].split()
    if not words or words[0] != "deb":
        return None
    words = words[1:]
    options: dict[str, str] = {}
    if words and words[0].startswith("["):
        opts = []
        while words:
            opts.append(words.pop(0))
            if opts[-1].endswith("]"):
                break
        for opt in " ".join(opts).strip("[]").split():
            k, _, v = opt.partition("=")
            options[k] = v
    if len(words) < 2:
        return None
    fields = {"URIs": words[0], "Suites": words[1], "Components": " ".join(words[2:])}
    if "signed-by" in options:
        fields["Signed-By"] = options["signed-by"]
    return fields


def _stanza(fields: dict[str, str]) -> str:
    keep = ("URIs", "Suites", "Components", "Signed-By")
    lines = ["Types: deb-src", *(f"{k}: {fields[k]}" for k in keep if fields.get(k))]
    return "\n".join(lines) + "\n"


class PrivateApt:
    """apt with a private source list and state directory (the machine's apt is never touched)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        (root / "sources.list.d").mkdir(parents=True, exist_ok=True)
        (root / "lists" / "partial").mkdir(parents=True, exist_ok=True)
        (root / "cache" / "archives" / "partial").mkdir(parents=True, exist_ok=True)
        (root / "sources.list.d" / "klharness-src.sources").write_text(derive_deb_src())

    def options(self) -> list[str]:
        return ["-o", "Dir::Etc::SourceList=/dev/null", "-o", f"Dir::Etc::SourceParts={self.root}/sources.list.d",
                "-o", f"Dir::State::Lists={self.root}/lists", "-o", f"Dir::Cache={self.root}/cache",
                "-o", "APT::Sandbox::User=root"]

    def update(self) -> None:
        self._run("apt-get update", ["apt-get", *self.options(), "-q", "update"], active_timeouts().source_index)

    def versions(self, package: str) -> list[str]:
        """Every version of ``package``'s source the registry serves, as ``apt-cache showsrc`` lists them."""
        out = self._run(f"apt-cache showsrc {package}", ["apt-cache", *self.options(), "showsrc", package],
                        active_timeouts().source_index)
        return _VERSION_LINE.findall(out)

    def download(self, package: str, version: str, dest: Path) -> Path:
        dest.mkdir(parents=True, exist_ok=True)
        self._run(f"apt-get source {package}={version}",
                  ["apt-get", *self.options(), "-q", "source", "--download-only", f"{package}={version}"],
                  active_timeouts().source_download, cwd=dest)
        upstream = version.split(":", 1)[-1]
        dsc = dest / f"{package}_{upstream}.dsc"
        if not dsc.is_file():
            found = ", ".join(p.name for p in dest.iterdir()) or "nothing"
            raise BuildError(f"apt-get source {package}={version} left {found} in {dest}, not {dsc.name}")
        return dsc

    def _run(self, what: str, argv: list[str], timeout: float, cwd: Path | None = None) -> str:
        try:
            return proc.run(argv, timeout=timeout, cwd=cwd).stdout
        except CommandError as err:
            raise BuildError(f"{what} failed (is the distribution's package registry reachable?): {err}") from err


def choose_version(served: list[str], wanted: str) -> tuple[str, str]:
    """(version, note): ``wanted`` when served, else the newest served, with a note saying so."""
    if not served:
        raise BuildError("the package registry serves no version of this source package")
    if wanted in served:
        return wanted, f"{wanted} (the version the patches were made on)"
    newest = max(served, key=_debian_sort_key)
    return newest, (f"{newest}: the registry no longer serves {wanted}, the version the patches were made on; "
                    "trying the newest it serves")


def _debian_sort_key(version: str) -> list[tuple[int, str]]:
    """A good-enough ordering of Debian versions (epoch, then digit runs numerically)."""
    epoch, _, rest = version.rpartition(":")
    return [(int(epoch or 0), "")] + [(int(p), "") if p.isdigit() else (0, p) for p in re.findall(r"\d+|\D+", rest)]


def fetch(package: str, wanted: str, downloads: Path, work: Path) -> SourcePackage:
    """The source of ``package`` (``wanted`` if served), downloaded once into ``downloads``."""
    apt = PrivateApt(work / "apt")
    apt.update()
    version, note = choose_version(apt.versions(package), wanted)
    log.info("source %s %s", package, note)
    upstream = version.split(":", 1)[-1]
    cached = downloads / f"{package}_{upstream}.dsc"
    if cached.is_file():
        return SourcePackage(package, version, cached, note)
    tmp = downloads / f".dl-{package}-{upstream}"
    shutil.rmtree(tmp, ignore_errors=True)
    dsc = apt.download(package, version, tmp)
    for f in tmp.iterdir():
        f.replace(downloads / f.name)
    tmp.rmdir()
    return SourcePackage(package, version, downloads / dsc.name, note)


def unpack(source: SourcePackage, dest: Path) -> None:
    """``dpkg-source -x``: the upstream tree with the distribution's own patches applied."""
    if shutil.which("dpkg-source") is None:
        raise BuildError("dpkg-source is not installed (package dpkg-dev; scripts/setup-host installs it)")
    try:
        proc.run(["dpkg-source", "-x", str(source.dsc), str(dest)], timeout=active_timeouts().source_unpack)
    except CommandError as err:
        raise BuildError(f"unpacking {source.dsc.name} failed: {err}") from err
