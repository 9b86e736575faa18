"""The ``optout-gateway`` command line: serve, keys, suppressions.

Tables for people, ``--json`` for scripts. Errors are one line on stderr
naming the problem, exit status 2 for bad input, 1 for an unavailable store.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from suppression.apikeys import parse_scopes
from suppression.errors import GatewayError, StoreUnavailable
from suppression.identifiers import normalize
from suppression.models import Channel, Reason, Source

from .components import Components
from .embedded_redis import EmbeddedRedisError
from .logs import setup_logging
from .settings import MAX_WORKERS, Settings, SettingsError, load_settings

EXIT_USAGE, EXIT_UNAVAILABLE = 2, 1


@asynccontextmanager
async def components(settings: Settings) -> AsyncIterator[Components]:
    parts = await Components.start(settings, retention=False)  # serve sweeps
    try:
        yield parts
    finally:
        await parts.close()


def _print_table(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> None:
    widths = {c: max([len(c)] + [len(str(r.get(c, ""))) for r in rows]) for c in columns}
    print("  ".join(c.upper().ljust(widths[c]) for c in columns))
    for r in rows:
        print("  ".join(str(r.get(c, "") if r.get(c) is not None else "-").ljust(widths[c])
                        for c in columns))


def _emit(args: argparse.Namespace, rows: list[dict[str, Any]], columns: Sequence[str]) -> None:
    if args.json:
        for row in rows:
            print(json.dumps(row))
    else:
        _print_table(rows, columns)


def _tenant(settings: Settings, tenant: str) -> str:
    if settings.tenant(tenant) is None:
        known = ", ".join(sorted(settings.tenants))
        raise GatewayError(f"unknown tenant '{tenant}' (configured: {known})", field="tenant")
    return tenant


def _region(settings: Settings, tenant: str) -> str:
    t = settings.tenant(tenant)
    return t.default_region if t else "US"


# -- commands -------------------------------------------------------------------


async def cmd_keys_create(settings: Settings, args: argparse.Namespace) -> int:
    async with components(settings) as c:
        plaintext, _ = await c.apikeys.create(
            _tenant(settings, args.tenant), parse_scopes(args.scopes),
            transactional=args.transactional, name=args.name or "")
    print(plaintext)
    return 0


async def cmd_keys_list(settings: Settings, args: argparse.Namespace) -> int:
    async with components(settings) as c:
        found = await c.apikeys.list(args.tenant)
    rows = [{"id": k.id, "tenant": k.tenant, "name": k.name,
             "scopes": ",".join(sorted(s.value for s in k.scopes)),
             "transactional": k.transactional, "revoked": k.revoked} for k in found]
    _emit(args, rows, ["id", "tenant", "name", "scopes", "transactional", "revoked"])
    return 0


async def cmd_keys_revoke(settings: Settings, args: argparse.Namespace) -> int:
    async with components(settings) as c:
        if not await c.apikeys.revoke(args.key_id):
            print(f"error: no API key with id '{args.key_id}'", file=sys.stderr)
            return EXIT_USAGE
    print(f"revoked {args.key_id}")
    return 0


async def cmd_list(settings: Settings, args: argparse.Namespace) -> int:
    tenant = _tenant(settings, args.tenant)
    async with components(settings) as c:
        items, cursor = await c.store.list_page(tenant, Channel(args.channel), cursor=args.cursor,
                                                limit=args.limit, query=args.q)
    _emit(args, [i.to_json() for i in items],
          ["identifier", "reason", "source", "scope", "created_at"])
    if cursor:  # on stderr, so --json's stdout stays one JSON object per line
        print(f"more: --cursor {cursor}", file=sys.stderr)
    return 0


async def cmd_check(settings: Settings, args: argparse.Namespace) -> int:
    tenant = _tenant(settings, args.tenant)
    async with components(settings) as c:
        results = await c.service.check(tenant, Channel(args.channel), args.identifiers,
                                        default_region=_region(settings, tenant))
    rows = [{"identifier": r.identifier, "normalized": r.normalized, "suppressed": r.suppressed,
             "error": r.error} for r in results]
    _emit(args, rows, ["identifier", "normalized", "suppressed", "error"])
    return 0


async def cmd_add(settings: Settings, args: argparse.Namespace) -> int:
    tenant = _tenant(settings, args.tenant)
    channel = Channel(args.channel)
    ident = normalize(channel, args.identifier, default_region=_region(settings, tenant))
    async with components(settings) as c:
        await c.service.opt_out(tenant, channel, ident, reason=Reason(args.reason),
                                source=Source.CLI, detail={"actor": "cli"})
    print(f"suppressed {ident}")
    return 0


async def cmd_remove(settings: Settings, args: argparse.Namespace) -> int:
    tenant = _tenant(settings, args.tenant)
    channel = Channel(args.channel)
    ident = normalize(channel, args.identifier, default_region=_region(settings, tenant))
    async with components(settings) as c:
        if await c.service.get(tenant, channel, ident) is None:
            print(f"error: {ident} is not suppressed on {channel.value}", file=sys.stderr)
            return EXIT_USAGE
        await c.service.opt_in(tenant, channel, ident, reason=Reason.OPT_IN_MANUAL,
                               source=Source.CLI, detail={"actor": "cli"})
    print(f"removed {ident}")
    return 0


async def cmd_serve(settings: Settings, args: argparse.Namespace) -> int:
    from .server import serve, supervise

    if args.worker_index is not None:  # started by supervise()
        return await serve(settings, worker=args.worker_index)
    workers = args.workers or settings.workers
    if workers > 1:
        return await supervise(settings, workers, config=args.config)
    return await serve(settings)


# -- parser ---------------------------------------------------------------------

Command = Callable[[Settings, argparse.Namespace], Coroutine[Any, Any, int]]


def _workers(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= MAX_WORKERS:
        raise argparse.ArgumentTypeError(f"must be a whole number from 1 to {MAX_WORKERS}")
    return int(text)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="optout-gateway", description=__doc__)
    parser.add_argument("--config", type=Path, help="TOML settings/tenants file (OPTOUT_CONFIG)")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the HTTP and SMTP listeners")
    serve.add_argument("--workers", type=_workers, default=None,
                       help="worker processes sharing the HTTP port (OPTOUT_WORKERS, default 1)")
    serve.add_argument("--worker-index", type=int, default=None, help=argparse.SUPPRESS)
    serve.set_defaults(func=cmd_serve)

    keys = sub.add_parser("keys", help="create, list and revoke API keys").add_subparsers(
        dest="keys_command", required=True)
    create = keys.add_parser("create", help="create a key; prints it alone on stdout, once")
    create.add_argument("--tenant", required=True)
    create.add_argument("--scopes", required=True,
                        help="comma-separated: send,read,write,inbound,export")
    create.add_argument("--transactional", action="store_true",
                        help="may send category 'transactional'")
    create.add_argument("--name", default="")
    create.set_defaults(func=cmd_keys_create)
    klist = keys.add_parser("list", help="list keys (never their secrets)")
    klist.add_argument("--tenant")
    klist.add_argument("--json", action="store_true")
    klist.set_defaults(func=cmd_keys_list)
    revoke = keys.add_parser("revoke", help="revoke a key by id")
    revoke.add_argument("key_id")
    revoke.set_defaults(func=cmd_keys_revoke)

    sup = sub.add_parser("suppressions", help="inspect and manage suppression lists"
                         ).add_subparsers(dest="sup_command", required=True)

    def common(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument("--tenant", default="default")
        p.add_argument("--channel", required=True, choices=[c.value for c in Channel])
        p.add_argument("--json", action="store_true", help="JSON lines for scripts")
        return p

    slist = common(sup.add_parser("list", help="list suppressions"))
    slist.add_argument("--q", help="substring filter")
    slist.add_argument("--limit", type=int, default=100)
    slist.add_argument("--cursor")
    slist.set_defaults(func=cmd_list)
    check = common(sup.add_parser("check", help="check identifiers"))
    check.add_argument("identifiers", nargs="+")
    check.set_defaults(func=cmd_check)
    add = common(sup.add_parser("add", help="suppress an identifier"))
    add.add_argument("identifier")
    add.add_argument("--reason", default=Reason.MANUAL.value,
                     choices=[r.value for r in Reason if not r.value.startswith("opt_in")])
    add.set_defaults(func=cmd_add)
    remove = common(sup.add_parser("remove", help="lift a suppression"))
    remove.add_argument("identifier")
    remove.set_defaults(func=cmd_remove)
    from .cli_transfer import add_transfer_commands

    add_transfer_commands(sup, common)
    _config_after_command(parser)
    return parser


def _config_after_command(parser: argparse.ArgumentParser) -> None:
    """Accept ``--config`` after the command too (``optout-gateway serve --config f``), as
    operators write it. SUPPRESS: a command parser that did not see it leaves the value
    given before the command in place."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for command in action.choices.values():
                command.add_argument("--config", type=Path, default=argparse.SUPPRESS,
                                     help="TOML settings/tenants file (OPTOUT_CONFIG)")
                _config_after_command(command)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = load_settings(args.config)
    except SettingsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    setup_logging(settings.log_level if args.command == "serve" else "WARNING")
    func: Command = args.func
    try:
        return asyncio.run(func(settings, args))
    except StoreUnavailable as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    except GatewayError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return EXIT_USAGE
    except EmbeddedRedisError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
