"""``klharness image``: build, list, remove and verify cached guest images.

    klharness image build [NAME] [--force] [-o KEY=VALUE ...]   (no NAME: the default images)
    klharness image list
    klharness image rm NAME|DIR|KEY
    klharness image verify NAME|DIR|KEY
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from harness import images
from harness.errors import ConfigError


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("image", help="build, list, remove and verify guest images",
                                   description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="image_command", metavar="ACTION")
    sub.required = True

    build = sub.add_parser("build", help="build an image (reused when its inputs are unchanged)")
    build.add_argument("name", nargs="?", help=f"image to build (default: {', '.join(images.default_images())})")
    build.add_argument("--force", action="store_true", help="rebuild even when a verified image is cached")
    build.add_argument("-o", "--option", action="append", default=[], metavar="KEY=VALUE",
                       help="recipe option, e.g. -o kernel_package=linux-image-6.1.0-28-cloud-amd64 (repeatable)")
    build.set_defaults(func=cmd_build)

    sub.add_parser("list", help="list cached images").set_defaults(func=cmd_list)

    rm = sub.add_parser("rm", help="remove cached images (all builds of NAME, or one by directory or key)")
    rm.add_argument("target", metavar="NAME|DIR|KEY")
    rm.set_defaults(func=cmd_rm)

    verify = sub.add_parser("verify", help="check every file of cached images against its SHA256")
    verify.add_argument("target", metavar="NAME|DIR|KEY")
    verify.set_defaults(func=cmd_verify)


def parse_options(pairs: list[str]) -> dict[str, str]:
    options = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ConfigError(f"-o {pair!r}: expected KEY=VALUE, e.g. -o flavour=amd64")
        options[key.strip()] = value
    return options


def _size(n: int) -> str:
    return f"{n / 2**20:.1f} MiB"


def cmd_build(args: argparse.Namespace) -> int:
    options = parse_options(args.option)
    known = images.known_images()
    if args.name and args.name not in known:
        raise ConfigError(f"unknown image {args.name!r}; known images: "
                          + "; ".join(f"{n} ({summary})" for n, summary in sorted(known.items())))
    for name in [args.name] if args.name else images.default_images():
        start, wall = time.monotonic(), time.time()
        art = images.build_image(name, force=args.force, options=options)
        took = time.monotonic() - start
        built = (art.directory / "manifest.json").stat().st_mtime >= wall
        how = f"built in {art.build_seconds:.1f}s" if built else "cached"
        print(f"{art.name}: {art.directory} ({how}, {took:.1f}s total, {_size(art.size_bytes)}, "
              f"kernel {art.kernel_version or '-'})")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    entries = images.list_images()
    if not entries:
        print("no cached images (build one: klharness image build mini)")
        return 0
    print(f"{'IMAGE':<26} {'SIZE':>10} {'BUILD':>7}  KERNEL")
    for entry in entries:
        m = entry.manifest
        if m is None:
            print(f"{entry.directory.name:<26} {'?':>10} {'?':>7}  broken: {entry.problem}")
        else:
            kernel = m.kernel_version or "-"
            print(f"{entry.directory.name:<26} {_size(m.size_bytes):>10} {m.build_seconds:>6.1f}s  {kernel}")
    return 0


def cmd_rm(args: argparse.Namespace) -> int:
    for path in images.remove_image(args.target):
        print(f"removed {path}")
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    start = time.monotonic()
    for entry in images.verify_image(args.target):
        size = _size(entry.manifest.size_bytes) if entry.manifest else "?"
        print(f"{entry.directory.name}: ok ({size})")
    print(f"verified in {time.monotonic() - start:.1f}s")
    return 0
