"""`tailor` commands for client developers: ``schema`` (SDL or introspection JSON for codegen)
and ``persisted-queries import|export`` (Apollo's persisted query manifest; docs/clients.md)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from gateway.cli.common import Common, console, settings_from

MANIFEST_FORMAT = "apollo-persisted-query-manifest"


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser], common: Common) -> None:
    p = sub.add_parser(
        "schema",
        help="print the GraphQL schema (SDL, or --json introspection) for codegen",
        description="Print the schema the gateway serves: SDL (with @cacheControl) by default, "
        "or the introspection result with --json (Apollo iOS/Kotlin, graphql-codegen). The "
        "repository's schema.graphql is this output.",
    )
    p.add_argument("--json", action="store_true", help="the introspection result as JSON")
    p.add_argument("-o", "--output", type=Path, help="write to this file instead of stdout")
    p.set_defaults(func=cmd_schema)


def register_persisted(
    qsub: argparse._SubParsersAction[argparse.ArgumentParser], common: Common
) -> None:
    """``persisted-queries import MANIFEST`` and ``persisted-queries export MANIFEST``."""
    r = qsub.add_parser(
        "import",
        help="register the operations of an Apollo persisted query manifest",
        description="Register every operation of MANIFEST (Apollo's "
        '{"format": "apollo-persisted-query-manifest", "version": 1, "operations": [...]} or a '
        "{sha256: query} map). Each id must be the sha256 of its body and each body must be "
        "valid against the schema; nothing is registered otherwise.",
    )
    r.add_argument("manifest", type=Path)
    common(r)
    r.set_defaults(func=cmd_import)
    r = qsub.add_parser(
        "export",
        help="write the registered operations as an Apollo persisted query manifest",
        description="Write every registered operation to MANIFEST ('-' for stdout) in Apollo's "
        "persisted query manifest format, version 1.",
    )
    r.add_argument("manifest")
    common(r)
    r.set_defaults(func=cmd_export)


def cmd_schema(args: argparse.Namespace) -> int:
    from resolvers.schema import build_schema

    schema = build_schema()
    if args.json:
        text = json.dumps(introspection(schema._schema), indent=2) + "\n"
    else:
        text = schema.as_str() + "\n"
    if args.output:
        args.output.write_text(text, encoding="utf-8")
        console.print(f"wrote {args.output}")
    else:
        sys.stdout.write(text)
    return 0


def introspection(schema: Any) -> dict[str, Any]:
    """The full introspection result (``{"__schema": …}``, as ``buildClientSchema`` reads it),
    with what the default query leaves out: ``specifiedByURL``, repeatable directives,
    deprecated input values."""
    from graphql import get_introspection_query, graphql_sync

    query = get_introspection_query(
        descriptions=True,
        specified_by_url=True,
        directive_is_repeatable=True,
        input_value_deprecation=True,
    )
    result = graphql_sync(schema, query)
    if result.errors or result.data is None:
        raise RuntimeError(f"introspection failed: {result.errors}")
    return dict(result.data)


def operation_rows(
    operations: list[tuple[str, str, str | None]],
) -> tuple[list[dict[str, Any]], list[str]]:
    """Apollo manifest entries for ``(sha256, body, name)`` rows, and the problems found: each
    body must parse, hold exactly one operation and validate against the schema."""
    from graphql import OperationDefinitionNode, parse, validate
    from graphql.error import GraphQLError

    from resolvers.schema import build_schema

    schema = build_schema()._schema
    entries: list[dict[str, Any]] = []
    problems: list[str] = []
    for digest, body, name in operations:
        try:
            document = parse(body)
        except GraphQLError as exc:
            problems.append(f"{name or digest[:12]}: does not parse: {exc.message}")
            continue
        ops = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
        if len(ops) != 1:
            problems.append(f"{name or digest[:12]}: needs exactly one operation, has {len(ops)}")
            continue
        errors = validate(schema, document)
        if errors:
            problems.append(f"{name or digest[:12]}: {errors[0].message}")
            continue
        op = ops[0]
        entries.append(
            {
                "id": digest,
                "name": name or (op.name.value if op.name else ""),
                "type": op.operation.value,
                "body": body,
            }
        )
    return entries, problems


def cmd_import(args: argparse.Namespace) -> int:
    from gateway.edge.apq import parse_manifest
    from storage import open_store

    settings = settings_from(args)
    try:
        rows = parse_manifest(json.loads(args.manifest.read_text(encoding="utf-8")))
    except (OSError, ValueError) as exc:  # JSON and manifest errors are ValueErrors
        console.print(f"[red]{args.manifest}: {exc}[/red]")
        return 2
    entries, problems = operation_rows(rows)
    if problems:
        for problem in problems:
            console.print(f"[red]{args.manifest}: {problem}[/red]")
        console.print(f"[red]nothing registered: {len(problems)} invalid operation(s)[/red]")
        return 1
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    store = open_store(settings.db_path)
    try:
        added = store.put_persisted_queries(
            [(e["id"], e["body"], e["name"] or None) for e in entries]
        )
        console.print(
            f"registered {added} new of {len(entries)} operations "
            f"({store.count_persisted_queries()} in the safelist)"
        )
    finally:
        store.close()
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from storage import open_store

    settings = settings_from(args)
    if not settings.db_path.exists():
        console.print(f"[red]no data at {settings.data_dir}: nothing registered yet[/red]")
        return 2
    store = open_store(settings.db_path)
    try:
        rows = store.list_persisted_queries()
    finally:
        store.close()
    entries, problems = operation_rows(rows)
    for problem in problems:  # registered earlier, no longer valid against this schema
        console.print(f"[yellow]skipped {problem}[/yellow]")
    manifest = {"format": MANIFEST_FORMAT, "version": 1, "operations": entries}
    text = json.dumps(manifest, indent=2) + "\n"
    if args.manifest == "-":
        sys.stdout.write(text)
    else:
        Path(args.manifest).write_text(text, encoding="utf-8")
        console.print(f"wrote {len(entries)} operations to {args.manifest}")
    return 1 if problems else 0
