"""``tailor experiments create|list|stop|report`` and ``tailor flags set|list``.

They edit the definitions file (``TAILOR_EXPERIMENTS_FILE``, default ``<data dir>/
experiments.json``) atomically; running gateways pick the change up within
``TAILOR_EXPERIMENTS_POLL_S``. ``report`` reads exposures and attributions from the store.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from rich.table import Table

from experiments import definitions as defs_file
from experiments import report as reports
from experiments.definitions import DefinitionError
from experiments.editing import create_experiment, set_flag, stop_experiment
from gateway.cli.common import Common, console, dumps, settings_from


def _json_arg(text: str, what: str) -> Any:
    try:
        return json.loads(text)
    except ValueError as exc:
        raise DefinitionError(f"{what}: not valid JSON ({exc})") from None


def _variant(text: str) -> tuple[str, Any]:
    name, sep, value = text.partition("=")
    if not sep:
        raise DefinitionError(f"--variant {text!r}: use NAME=JSON, e.g. trending='{{}}'")
    return name.strip(), _json_arg(value, f"--variant {name}")


def _fraction(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError("between 0 and 1")
    return value


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser], common: Common) -> None:
    p = sub.add_parser("experiments", help="A/B tests: create, list, stop, report")
    esub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    r = esub.add_parser(
        "create",
        help="add an experiment to the definitions file",
        description="Variants are NAME=JSON; the first is the control. On the "
        "`recommendations` feature a variant's JSON sets recommendation parameters "
        '(e.g. trending=\'{"strategy": "trending"}\'); on any other feature it is the flag '
        "value the variant serves.",
    )
    r.add_argument("key")
    r.add_argument("--variant", action="append", required=True, help="NAME=JSON, repeatable")
    r.add_argument("--feature", default="recommendations", help="default: recommendations")
    r.add_argument("--weights", help="comma-separated, e.g. 50,50 (default: equal)")
    r.add_argument("--coverage", type=_fraction, default=1.0, help="share of subjects in it")
    r.add_argument("--condition", help="GrowthBook targeting condition (JSON)")
    common(r)
    r.set_defaults(func=cmd_create)
    r = esub.add_parser("list", help="every experiment (running and stopped)")
    r.add_argument("--json", action="store_true")
    common(r)
    r.set_defaults(func=cmd_list)
    r = esub.add_parser("stop", help="stop an experiment (everyone gets the default)")
    r.add_argument("key")
    common(r)
    r.set_defaults(func=cmd_stop)
    r = esub.add_parser(
        "report",
        help="exposures, CTR, lift with CI, p-value, SRM, revenue per user",
        description="A terminal table by default; --json prints the report as JSON; --html "
        "writes a self-contained page with plots.",
    )
    r.add_argument("key")
    r.add_argument("--json", action="store_true", help="print JSON")
    r.add_argument("--html", type=Path, help="write an HTML page here")
    r.add_argument("--level", type=float, default=0.95, help="confidence level (default 0.95)")
    common(r)
    r.set_defaults(func=cmd_report)

    p = sub.add_parser("flags", help="feature flags: set, list")
    fsub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    r = fsub.add_parser(
        "set",
        help="set a flag's value (default, or for a condition / a rollout share)",
        description="VALUE is JSON (a bare word is taken as a string).",
    )
    r.add_argument("key")
    r.add_argument("value")
    r.add_argument("--condition", help="GrowthBook targeting condition (JSON)")
    r.add_argument("--coverage", type=_fraction, help="percentage rollout, 0-1")
    common(r)
    r.set_defaults(func=cmd_flag_set)
    r = fsub.add_parser("list", help="every flag with its default and rules")
    r.add_argument("--json", action="store_true")
    common(r)
    r.set_defaults(func=cmd_flag_list)


def _path(args: argparse.Namespace) -> Path:
    return settings_from(args).experiments_path


def _edit(args: argparse.Namespace, fn: Any) -> int:
    path = _path(args)
    try:
        new = fn(defs_file.load(path))
        defs_file.save(path, new)
    except DefinitionError as exc:
        console.print(f"[red]{exc}[/red]")
        return 2
    console.print(f"wrote {path} (revision {new.revision})")
    return 0


def cmd_create(args: argparse.Namespace) -> int:
    try:
        variants = [_variant(v) for v in args.variant]
        weights = [float(w) for w in args.weights.split(",")] if args.weights else None
        condition = _json_arg(args.condition, "--condition") if args.condition else None
    except (DefinitionError, ValueError) as exc:
        console.print(f"[red]{exc}[/red]")
        return 2
    return _edit(
        args,
        lambda d: create_experiment(
            d,
            args.key,
            variants,
            feature=args.feature,
            weights=weights,
            coverage=args.coverage,
            condition=condition,
        ),
    )


def cmd_stop(args: argparse.Namespace) -> int:
    return _edit(args, lambda d: stop_experiment(d, args.key, time.time()))


def cmd_flag_set(args: argparse.Namespace) -> int:
    try:
        value = json.loads(args.value)
    except ValueError:
        value = args.value
    try:
        condition = _json_arg(args.condition, "--condition") if args.condition else None
    except DefinitionError as exc:
        console.print(f"[red]{exc}[/red]")
        return 2
    return _edit(
        args,
        lambda d: set_flag(d, args.key, value, condition=condition, coverage=args.coverage),
    )


def _load(args: argparse.Namespace) -> defs_file.Definitions | None:
    try:
        return defs_file.load(_path(args))
    except DefinitionError as exc:
        console.print(f"[red]{exc}[/red]")
        return None


def cmd_list(args: argparse.Namespace) -> int:
    defs = _load(args)
    if defs is None:
        return 2
    rows: list[dict[str, Any]] = [
        {
            "key": e.key,
            "feature": e.feature,
            "status": "running" if e.running else "stopped",
            "variants": dict(zip(e.variants, e.weights, strict=True)),
            "coverage": e.coverage,
            "condition": e.condition,
        }
        for e in sorted(defs.experiments.values(), key=lambda e: e.key)
    ]
    if args.json:
        print(dumps(rows))
        return 0
    table = Table("experiment", "feature", "status", "variants (weight)", "coverage", "condition")
    for row in rows:
        variants = ", ".join(f"{k} ({w:.0%})" for k, w in row["variants"].items())
        table.add_row(
            row["key"],
            row["feature"],
            row["status"],
            variants,
            f"{row['coverage']:.0%}",
            json.dumps(row["condition"]) if row["condition"] else "-",
        )
    console.print(table)
    return 0


def cmd_flag_list(args: argparse.Namespace) -> int:
    defs = _load(args)
    if defs is None:
        return 2
    rows: list[dict[str, Any]] = [
        {"key": k, "default": f.get("defaultValue"), "rules": list(f.get("rules") or [])}
        for k, f in sorted(defs.features.items())
    ]
    if args.json:
        print(dumps(rows))
        return 0
    table = Table("flag", "default", "rules")
    for row in rows:
        table.add_row(row["key"], json.dumps(row["default"]), str(len(row["rules"])))
    console.print(table)
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from storage import open_store

    defs = _load(args)
    if defs is None:
        return 2
    info = defs.experiments.get(args.key)
    if info is None:
        console.print(f"[red]no experiment {args.key!r} in {_path(args)}[/red]")
        return 2
    if not 0.5 <= args.level < 1.0:
        console.print("[red]--level must be in [0.5, 1)[/red]")
        return 2
    settings = settings_from(args)
    store = open_store(settings.db_path)
    try:
        report = reports.build(info, store, level=args.level)
    finally:
        store.close()
    if args.html is not None:
        args.html.write_text(reports.to_html(report), encoding="utf-8")
        console.print(f"wrote {args.html}")
    if args.json:
        print(dumps(report))
        return 0
    header, rows = reports.table_rows(report)
    table = Table(*header, title=f"experiment {info.key} ({report['status']})")
    for row in rows:
        table.add_row(*row)
    console.print(table)
    console.print(reports.srm_line(report))
    return 0
