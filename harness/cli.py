"""The ``klharness`` command line: parse, dispatch, and map errors to exit codes.

Exit codes: 0 success, 1 checks failed, 2 usage or configuration error,
3 host/infrastructure error (daemon down, build failed, guest unreachable).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

from harness import __version__
from harness.commands import load_all
from harness.errors import ConfigError, KlharnessError, ProbeOutputError

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INFRA = 3


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="klharness", description=__doc__)
    parser.add_argument("--version", action="version", version=f"klharness {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv: debug)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for mod in load_all():
        mod.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.command_line = ["klharness", *(sys.argv[1:] if argv is None else argv)]  # recorded by run and rerun
    level = logging.WARNING - 10 * min(args.verbose, 2)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return int(args.func(args))
    except (ConfigError, ProbeOutputError) as err:
        print(f"klharness: error: {err}", file=sys.stderr)
        return EXIT_USAGE
    except KlharnessError as err:
        print(f"klharness: error: {err}", file=sys.stderr)
        return EXIT_INFRA
    except KeyboardInterrupt:
        print("klharness: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (e.g. `klharness image list | head`): not an error of ours.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
