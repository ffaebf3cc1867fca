"""Turn an extracted Debian kernel package into what QEMU boots fastest.

Why: under TCG a stock bzImage spends seconds decompressing itself.  Debian
kernels are built with ``CONFIG_PVH=y``, so QEMU can boot the uncompressed
ELF ``vmlinux`` directly (PVH entry point).  We cut that ELF out of the
bzImage: the setup header gives the offset and length of the compressed
payload, whose last four bytes are its uncompressed size.  The bzImage is
kept too, because suspend-to-RAM only comes back with the bzImage boot path.

Also here: checking the kernel config has what the guest side needs, and
resolving a module list to a load order through ``modules.dep``.
"""

from __future__ import annotations

import bz2
import gzip
import lzma
import shutil
import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from harness import proc
from harness.errors import CommandError, ImageError
from harness.images import debs
from harness.timeouts import active as active_timeouts

# Payload compressions by magic bytes.  The standard library decompresses xz, lzma, gzip and
# bzip2; zstd and lz4 (the Debian cloud kernels' choices) go through their CLI tools.
_MAGICS: tuple[tuple[bytes, str], ...] = (
    (b"\x28\xb5\x2f\xfd", "zstd"),
    (b"\x02\x21\x4c\x18", "lz4"),
    (b"\xfd7zXZ\x00", "xz"),
    (b"\x1f\x8b", "gzip"),
    (b"\x5d\x00\x00", "lzma"),
    (b"BZh", "bzip2"),
)


@dataclass(frozen=True)
class KernelTree:
    """A kernel package unpacked with ``dpkg-deb -x`` into ``root``."""

    root: Path
    version: str  # e.g. 6.12.117+deb12-cloud-amd64

    @property
    def bzimage(self) -> Path:
        return self.root / "boot" / f"vmlinuz-{self.version}"

    @property
    def config(self) -> Path:
        return self.root / "boot" / f"config-{self.version}"

    @property
    def modules(self) -> Path:
        return self.root / "lib" / "modules" / self.version


def find_kernel(root: Path) -> KernelTree:
    """Find the one kernel unpacked under ``root`` (``boot/vmlinuz-VERSION``)."""
    found = sorted((root / "boot").glob("vmlinuz-*"))
    if len(found) != 1:
        raise ImageError(f"expected one boot/vmlinuz-* in the unpacked kernel package {root}, found {len(found)} "
                         "(is the package a real kernel image and not a metapackage?)")
    tree = KernelTree(root, found[0].name.removeprefix("vmlinuz-"))
    if not tree.config.is_file() or not tree.modules.is_dir():
        raise ImageError(f"kernel package for {tree.version} lacks {tree.config.name} or lib/modules/{tree.version}")
    return tree


def read_config(path: Path) -> dict[str, str]:
    """Parse a kernel ``.config`` into {``CONFIG_X``: ``y``/``m``/value}; unset options are absent."""
    options: dict[str, str] = {}
    for line in path.read_text(errors="replace").splitlines():
        if line.startswith("CONFIG_") and "=" in line:
            key, _, value = line.partition("=")
            options[key] = value
    return options


def check_config(config: Mapping[str, str], requirements: Mapping[str, str], *, source: Path) -> None:
    """Fail unless each required option is set as asked ("y", "m" or "ym" = either)."""
    missing = [f"{opt} (need {'y or m' if want == 'ym' else want}, have {config.get(opt, 'unset')})"
               for opt, want in requirements.items() if config.get(opt, "n") not in want]
    if missing:
        raise ImageError(f"{source}: kernel lacks what the guest needs: {', '.join(missing)}; "
                         "choose another kernel package (image option kernel_package=...)")


def extract_vmlinux(bzimage: Path, dest: Path) -> str:
    """Write the uncompressed ELF kernel inside ``bzimage`` to ``dest``; return the compression name."""
    data = bzimage.read_bytes()
    if len(data) < 0x250 or data[0x202:0x206] != b"HdrS":
        raise ImageError(f"{bzimage}: not a bzImage (no 'HdrS' setup header)")
    setup_sects = data[0x1F1] or 4
    payload_offset, payload_length = struct.unpack_from("<II", data, 0x248)
    start = (setup_sects + 1) * 512 + payload_offset
    payload = data[start:start + payload_length]
    if len(payload) != payload_length or payload_length < 8:
        raise ImageError(f"{bzimage}: payload ({payload_length} bytes at {start}) runs past the end of the file")
    (expected_size,) = struct.unpack("<I", payload[-4:])
    stream = payload[:-4]  # the trailing size word is not part of the compressed stream
    name = next((n for magic, n in _MAGICS if payload.startswith(magic)), None)
    if name is None:
        raise ImageError(f"{bzimage}: unknown kernel compression (payload starts {payload[:6].hex()})")
    _decompress(name, stream, dest, what=str(bzimage))
    size = dest.stat().st_size
    with dest.open("rb") as f:
        is_elf = f.read(4) == b"\x7fELF"
    if size != expected_size or not is_elf:
        raise ImageError(f"{bzimage}: decompressed kernel is {size} bytes, header says {expected_size}, "
                         f"or it is not an ELF file (ELF magic: {is_elf})")
    return name


def _decompress(name: str, stream: bytes, dest: Path, *, what: str) -> None:
    try:
        if name == "zstd":
            proc.run(["zstd", "-dqf", "-o", str(dest), "-"], input_bytes=stream, timeout=active_timeouts().build_step)
        elif name == "lz4":
            proc.run(["lz4", "-dqf", "-", str(dest)], input_bytes=stream, timeout=active_timeouts().build_step)
        elif name in ("xz", "lzma"):
            dest.write_bytes(lzma.decompress(stream, format=lzma.FORMAT_AUTO))
        elif name == "gzip":
            dest.write_bytes(gzip.decompress(stream))
        else:
            dest.write_bytes(bz2.decompress(stream))
    except CommandError as err:
        raise ImageError(f"{what}: decompressing the {name} payload failed (is `{name}` installed? "
                         f"run scripts/setup-host): {err}") from err
    except (lzma.LZMAError, OSError, EOFError) as err:
        raise ImageError(f"{what}: decompressing the {name} payload failed: {err}") from err


def decompress_module(path: Path) -> Path:
    """Replace ``x.ko.xz`` by ``x.ko`` (busybox insmod and a TCG guest are both faster on plain modules)."""
    if path.suffix != ".xz":
        return path
    plain = path.with_suffix("")
    plain.write_bytes(lzma.decompress(path.read_bytes()))
    path.unlink()
    return plain


def parse_modules_dep(text: str) -> dict[str, list[str]]:
    """``modules.dep`` → {module name: [its path, then dependency paths]} (paths relative to the tree)."""
    deps: dict[str, list[str]] = {}
    for line in text.splitlines():
        if ":" not in line:
            continue
        path, _, rest = line.partition(":")
        deps[module_name(path)] = [path, *rest.split()]
    return deps


def module_name(path: str) -> str:
    base = path.rsplit("/", 1)[-1]
    for suffix in (".xz", ".zst", ".gz", ".ko"):
        base = base.removesuffix(suffix)
    return base.replace("-", "_")


def load_order(deps: Mapping[str, list[str]], wanted: Iterable[str], builtin: Iterable[str] = ()) -> list[str]:
    """Module paths to ``insmod`` in order (dependencies first) for the ``wanted`` modules.

    Modules in ``builtin`` (names from ``modules.builtin``) need no loading.
    An unknown module is an error naming it.
    """
    built_in = {module_name(b) for b in builtin}
    by_path = {paths[0]: name for name, paths in deps.items()}
    order: list[str] = []

    def visit(name: str, chain: tuple[str, ...]) -> None:
        if name in built_in:
            return
        if name not in deps:
            raise ImageError(f"kernel module {name!r} is neither in modules.dep nor built in "
                             f"(needed by {' -> '.join(chain) or 'the recipe'})")
        path, *requires = deps[name]
        if path in order:
            return
        for dep in requires:
            visit(by_path.get(dep, module_name(dep)), (*chain, name))
        if path not in order:
            order.append(path)

    for name in wanted:
        visit(module_name(name), ())
    return order


def prepare_boot_kernel(deb: Path, unpack: Path, out: Path, requirements: Mapping[str, str]) -> tuple[KernelTree, str]:
    """Unpack a kernel ``.deb``, check its config, and write ``out/vmlinux`` (PVH ELF) and
    ``out/bzImage``; return the unpacked tree and the payload compression."""
    debs.extract(deb, unpack)
    tree = find_kernel(unpack)
    check_config(read_config(tree.config), requirements, source=tree.config)
    compression = extract_vmlinux(tree.bzimage, out / "vmlinux")
    shutil.copyfile(tree.bzimage, out / "bzImage")
    return tree, compression
