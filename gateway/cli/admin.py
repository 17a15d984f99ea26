"""`tailor` commands: token, persisted-queries, apikey, forget, retention."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from gateway.cli.common import Common, console, dumps, open_services, settings_from


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser], common: Common) -> None:
    p = sub.add_parser(
        "token",
        help="issue a JWT for a user (development and tests)",
        description="Print an HS256 JWT signed with TAILOR_JWT_SECRET.",
    )
    p.add_argument("--user", required=True, help="the user id (the token's sub)")
    p.add_argument("--scope", action="append", choices=["admin", "service"], help="repeatable")
    p.add_argument("--ttl", type=int, default=3600, help="seconds until expiry (default 3600)")
    p.set_defaults(func=cmd_token)

    p = sub.add_parser("persisted-queries", help="manage the persisted-query safelist")
    qsub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    r = qsub.add_parser(
        "register",
        help="register the operations of a manifest file",
        description="Register operations from an Apollo persisted-query manifest "
        "or a {sha256: query} JSON map (safelist mode runs only these).",
    )
    r.add_argument("file")
    common(r)
    r.set_defaults(func=cmd_persisted_queries)

    p = sub.add_parser("apikey", help="create, revoke or list API keys (server-to-server callers)")
    ksub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    r = ksub.add_parser("create", help="create a key; prints it once")
    r.add_argument("--name", required=True, help="who uses it, e.g. edge-worker")
    r.add_argument(
        "--scope", action="append", choices=["admin", "service", "read"], help="repeatable"
    )
    common(r)
    r.set_defaults(func=cmd_apikey)
    r = ksub.add_parser("revoke", help="revoke a key by id")
    r.add_argument("id")
    common(r)
    r.set_defaults(func=cmd_apikey)
    r = ksub.add_parser("list", help="list keys (ids, names, scopes; never secrets)")
    common(r)
    r.set_defaults(func=cmd_apikey)

    p = sub.add_parser("forget", help="erase everything about a user and print the receipt")
    p.add_argument("user")
    common(p)
    p.set_defaults(func=cmd_forget)

    p = sub.add_parser("retention", help="delete events older than the retention period")
    p.add_argument("--days", type=float, help="default: TAILOR_RETENTION_DAYS (365)")
    common(p)
    p.set_defaults(func=cmd_retention)


def cmd_token(args: argparse.Namespace) -> int:
    from gateway.security.auth import issue_token
    from storage.fields import FieldError, ident

    settings = settings_from(args)
    try:
        ident({"user": args.user}, "user")
    except FieldError as exc:
        console.print(f"[red]--user {exc.reason}[/red]")
        return 2
    if not 0 < args.ttl <= settings.max_token_ttl_s:
        console.print(
            f"[red]--ttl must be between 1 and {settings.max_token_ttl_s} seconds "
            "(TAILOR_MAX_TOKEN_TTL_S): longer-lived tokens are refused[/red]"
        )
        return 2
    print(
        issue_token(
            settings.jwt_secret,
            args.user,
            scopes=args.scope or [],
            ttl_s=args.ttl,
            issuer=settings.jwt_issuer,
            audience=settings.jwt_audience,
        )
    )
    return 0


def cmd_persisted_queries(args: argparse.Namespace) -> int:
    from gateway.edge.apq import parse_manifest
    from gateway.wiring import open_configured_store

    settings = settings_from(args)
    try:
        rows = parse_manifest(json.loads(Path(args.file).read_text(encoding="utf-8")))
    except (OSError, ValueError) as exc:  # JSON and manifest errors are ValueErrors
        console.print(f"[red]{args.file}: {exc}[/red]")
        return 2
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    store = open_configured_store(settings)
    try:
        added = store.put_persisted_queries(rows)
        console.print(
            f"registered {added} new of {len(rows)} operations "
            f"({store.count_persisted_queries()} in the safelist)"
        )
    finally:
        store.close()
    return 0


def cmd_apikey(args: argparse.Namespace) -> int:
    from gateway.security.apikeys import ApiKeyError, ApiKeyRegistry
    from gateway.wiring import open_configured_store

    settings = settings_from(args)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    store = open_configured_store(settings)
    try:
        registry = ApiKeyRegistry(store)
        if args.action == "create":
            try:
                key, plaintext = registry.create(args.name, args.scope or [])
            except ApiKeyError as exc:
                console.print(f"[red]{exc}[/red]")
                return 2
            console.print(
                f"created API key {key.id} ({key.name}, scopes: "
                f"{' '.join(key.scopes) or '-'}); it is shown only once:"
            )
            print(plaintext, flush=True)  # plain print: one line to copy
            return 0
        if args.action == "revoke":
            if registry.revoke(args.id):
                console.print(f"revoked API key {args.id}")
                return 0
            console.print(f"[red]no active API key {args.id}[/red]")
            return 1
        rows = [
            {
                "id": k.id,
                "name": k.name,
                "scopes": list(k.scopes),
                "created_at": k.created_at,
                "revoked_at": k.revoked_at,
            }
            for k in registry.list()
        ]
        print(dumps(rows))
        return 0
    finally:
        store.close()


def cmd_forget(args: argparse.Namespace) -> int:
    from storage.fields import FieldError, ident

    try:
        ident({"user": args.user}, "user")
    except FieldError as exc:
        console.print(f"[red]USER {exc.reason}[/red]")
        return 2
    settings = settings_from(args)
    with open_services(settings) as services:
        receipt = services.privacy.erase(args.user)
    # The erasure is logged in the store with the deletion: every running gateway on this
    # store reads the log within erasure_poll_s and drops the person's cached answers, segment
    # membership and in-memory state, and refuses tokens issued before now.
    print(
        dumps(
            {
                "userId": receipt.user_id,
                "total": receipt.total,
                "counts": dict(receipt.counts),
                "runningGatewaysWithinS": settings.erasure_poll_s,
            }
        )
    )
    return 0


def cmd_retention(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    days = settings.retention_days if args.days is None else args.days
    with open_services(settings) as services:
        counts = services.privacy.prune(days)
    console.print(
        f"retention {days} days: deleted {counts['events']} events and "
        f"{counts['profiles']} profiles left without events"
    )
    return 0
