"""The ``tailor`` command line. Each command group lives in its own module with a
``register(sub, common)`` that adds its parsers.

Exit codes: 0 success, 1 the command ran but found problems (e.g. rejected rows), 2 bad usage or
input that could not be read at all.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from gateway.cli import (
    admin,
    backup,
    clients,
    common,
    data,
    db,
    experiments,
    lake,
    serve,
    train,
    worker,
)
from gateway.cli.common import common_options, console
from gateway.settings import SettingsError, load_settings
from observability.logs import configure_logging
from storage.types import StorageError

GROUPS = (serve, data, train, lake, admin, db, worker, backup, clients, experiments)


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
    configure_cli_logging(args)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args))
    except (SettingsError, StorageError) as exc:
        label = "configuration error" if isinstance(exc, SettingsError) else "error"
        console.print(f"[red]{label}:[/red] {exc}")
        return 2


def configure_cli_logging(args: argparse.Namespace) -> None:
    """Logging, once for the process: the settings' ``log_format`` and ``log_level`` (JSON in
    production); settings that do not load are reported by the command itself."""
    try:
        settings = load_settings(getattr(args, "config", None))
        fmt, level, production = settings.log_format, settings.log_level, settings.production
        common.progress_interval_s = settings.progress_interval_s
    except SettingsError:
        fmt, level, production = "auto", "info", False
    configure_logging("debug" if args.verbose else level, fmt, production=production)


if __name__ == "__main__":
    sys.exit(main())
