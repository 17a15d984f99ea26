"""The ``tailor`` command line. Each command group lives in its own module with a
``register(sub, common)`` that adds its parsers.

Exit codes: 0 success, 1 the command ran but found problems (e.g. rejected rows), 2 bad usage or
input that could not be read at all.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from gateway.cli import admin, data, db, lake, serve, train, worker
from gateway.cli.common import common_options, console
from gateway.settings import SettingsError
from storage.types import StorageError

GROUPS = (serve, data, train, lake, admin, db, worker)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tailor",
        description="Tailor: a GraphQL personalization gateway with edge caching.",
        epilog="Settings come from TAILOR_* environment variables and an optional TOML file "
        "(--config); see the README.",
    )
    parser.add_argument("--config", help="TOML settings file (also TAILOR_CONFIG)")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for group in GROUPS:
        group.register(sub, common_options)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args))
    except (SettingsError, StorageError) as exc:
        label = "configuration error" if isinstance(exc, SettingsError) else "error"
        console.print(f"[red]{label}:[/red] {exc}")
        return 2


if __name__ == "__main__":
    sys.exit(main())
