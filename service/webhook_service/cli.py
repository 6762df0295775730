"""The `webhooks` command. Every flag can also come from WEBHOOKS_<FLAG>."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from webhook_service import __version__, handshakes, logs
from webhook_service.dispatch.settings import DEFAULT_RETRY_SCHEDULE, DispatchSettings
from webhook_service.domain.access import Role, parse_organizations
from webhook_service.domain.errors import NotFound
from webhook_service.domain.network import parse_networks
from webhook_service.flags import add_flag, count, duration, one_of, positive_count, rate, schedule

# The server, the database drivers and aiohttp take a second or more to import; the operator commands, which
# need none of them, start without them, so the functions below import them where they are used. gRPC must
# not be imported before handshakes.trace_if_serving_tls runs either.
if TYPE_CHECKING:
    from webhook_service.process import ServerSettings
    from webhook_service.store.tokens import TokenInfo

DEFAULT_DATABASE = "sqlite:///data/webhooks.db"
# `receive` is a tool for trying things out: its variables never change what `serve` does.
RECEIVE_PREFIX = "WEBHOOKS_RECEIVE_"
DURATIONS = "Durations are written 500ms, 15s, 5m, 2h or 5d; a retry schedule is a comma-separated list of them."


def add_database_flag(parser: argparse.ArgumentParser) -> None:
    add_flag(
        parser,
        "--database",
        "database URL: sqlite:///relative.db, sqlite:////abs/path.db or postgresql://user:pw@host:port/db",
        DEFAULT_DATABASE,
        metavar="URL",
    )


def add_key_flag(parser: argparse.ArgumentParser) -> None:
    add_flag(parser, "--secret-key-file", "key that encrypts webhook secrets at rest", "data/secret.key", type=Path)


def add_dispatch_flags(parser: argparse.ArgumentParser) -> None:
    add_database_flag(parser)
    add_flag(
        parser,
        "--database-pool-size",
        "connections to a PostgreSQL database (SQLite uses one)",
        "4",
        type=positive_count,
    )
    add_flag(parser, "--dispatch-concurrency", "deliveries in flight at once, all webhooks together", "512", type=count)
    add_flag(
        parser, "--webhook-concurrency", "deliveries in flight at once to any one webhook", "16", type=positive_count
    )
    add_flag(
        parser,
        "--organization-concurrency",
        "deliveries in flight at once to the webhooks of any one organization",
        "128",
        type=positive_count,
    )
    add_flag(parser, "--delivery-timeout", "time allowed for one HTTP attempt", "15s", type=duration)
    add_flag(
        parser, "--retry-schedule", "delays before each attempt, comma-separated", DEFAULT_RETRY_SCHEDULE, type=schedule
    )
    add_flag(parser, "--disable-after", "continuous failure before a webhook is deactivated", "5d", type=duration)
    add_flag(parser, "--retention", "how long events and deliveries are kept", "30d", type=duration)
    add_flag(parser, "--grace", "time given to in-flight calls and deliveries on shutdown", "10s", type=duration)
    add_key_flag(parser)
    add_flag(
        parser,
        "--take-over-settings",
        "start even if the processes sharing the database use other --allow-network, --retry-schedule, "
        "--delivery-timeout or --disable-after values, and make this process's values theirs",
        action="store_true",
    )
    add_flag(
        parser,
        "--allow-network",
        "a network the request-forgery guard lets deliveries reach (repeatable; env comma-separated)",
        [],
        action="append",
        metavar="CIDR",
    )


def add_log_flags(parser: argparse.ArgumentParser) -> None:
    add_flag(parser, "--log-format", "text, or json: one object a line", "text", type=one_of(logs.FORMATS, "format"))
    add_flag(
        parser,
        "--log-level",
        f"least severe lines logged, {'|'.join(logs.LEVELS)}; debug adds a line per call and per attempt",
        "info",
        type=one_of(logs.LEVELS, "level"),
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="webhooks", description="Pulumi-style webhook delivery over gRPC.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser(
        "serve",
        help="run the gRPC server and a dispatcher",
        epilog="--dispatch-concurrency 0 serves the API only, for deployments with separate `webhooks dispatch`. "
        + DURATIONS,
    )
    add_flag(serve, "--listen", "gRPC address; port 0 picks a free port", "127.0.0.1:50051", metavar="HOST:PORT")
    add_flag(
        serve,
        "--http-listen",
        "HTTP address for the REST API, the web console, /metrics, /healthz and /readyz; port 0 picks a free "
        "port; off turns it off",
        "127.0.0.1:8080",
        metavar="HOST:PORT",
    )
    add_dispatch_flags(serve)
    add_flag(
        serve,
        "--dispatch-processes",
        "dispatcher processes beside the API process, each with --dispatch-concurrency of its own; 0 dispatches "
        "in the API process",
        "1",
        type=count,
    )
    add_flag(
        serve, "--insecure-no-auth", "serve without authentication (every caller is an admin)", action="store_true"
    )
    add_flag(serve, "--admin-token-file", "where the first start writes its admin token", "data/admin-token", type=Path)
    add_flag(serve, "--rate-limit", "requests a second allowed per token; 0 for no limit", "1000", type=rate)
    add_flag(
        serve,
        "--max-concurrent-rpcs",
        "service calls in progress at once; past it RESOURCE_EXHAUSTED (health checks exempt)",
        "256",
        type=positive_count,
    )
    add_flag(serve, "--tls-cert", "PEM certificate chain: serve TLS", type=Path)
    add_flag(serve, "--tls-key", "PEM private key of --tls-cert", type=Path)
    add_flag(serve, "--tls-client-ca", "PEM CA bundle: require client certificates it signed", type=Path)
    add_log_flags(serve)

    dispatch = commands.add_parser("dispatch", help="run only a dispatcher against the database", epilog=DURATIONS)
    add_dispatch_flags(dispatch)
    add_flag(
        dispatch, "--http-listen", "HTTP address for /metrics, /healthz and /readyz, or off", "off", metavar="HOST:PORT"
    )
    add_log_flags(dispatch)

    token_commands = commands.add_parser("tokens", help="manage API tokens").add_subparsers(
        dest="tokens_command", required=True
    )
    create = token_commands.add_parser("create", help="make a token; it is printed once, on the last line")
    add_database_flag(create)
    create.add_argument(
        "--role",
        required=True,
        choices=[role.value for role in Role],
        help="admin may call everything; publisher only PublishEvent; reader the Get and List calls and TestEventMatch",
    )
    create.add_argument(
        "--organization", action="append", default=[], help="an organization it may touch (repeatable); * for all"
    )
    create.add_argument("--description", default="", help="a note saying what the token is for")
    listing = token_commands.add_parser("list", help="show tokens (never the tokens themselves)")
    add_database_flag(listing)
    revoke = token_commands.add_parser("revoke", help="revoke a token by its ID")
    add_database_flag(revoke)
    revoke.add_argument("token_id")

    key_commands = commands.add_parser("keys", help="manage the key that encrypts webhook secrets").add_subparsers(
        dest="keys_command", required=True
    )
    add_key_flag(key_commands.add_parser("create", help="make the key of a new deployment; never replaces a key"))

    receive_command = commands.add_parser("receive", help="print deliveries posted to HOST:PORT, checking signatures")
    add_flag(
        receive_command,
        "--listen",
        "HTTP address to receive on",
        "127.0.0.1:8000",
        prefix=RECEIVE_PREFIX,
        metavar="HOST:PORT",
    )
    add_flag(
        receive_command,
        "--secret",
        "the webhook's secret, to check Pulumi-Webhook-Signature",
        "",
        prefix=RECEIVE_PREFIX,
        secret=True,
        metavar="TEXT",
    )
    from webhook_service import operator  # imports gRPC: see handshakes.trace_if_serving_tls

    operator.register(commands)
    return parser


def settings_from(args: argparse.Namespace, parser: argparse.ArgumentParser) -> ServerSettings:
    from webhook_service.process import ServerSettings, TlsSettings

    tls = None
    if getattr(args, "tls_cert", None) or getattr(args, "tls_key", None):
        if not (args.tls_cert and args.tls_key):
            parser.error("--tls-cert and --tls-key go together")
        tls = TlsSettings(args.tls_cert, args.tls_key, args.tls_client_ca)
    elif getattr(args, "tls_client_ca", None):
        parser.error("--tls-client-ca needs --tls-cert and --tls-key")
    try:
        allowed = parse_networks(args.allow_network)
    except ValueError as error:
        parser.error(f"--allow-network: {error}")
    return ServerSettings(
        listen=getattr(args, "listen", ""),
        http_listen=args.http_listen,
        take_over_settings=args.take_over_settings,
        database=args.database,
        database_pool_size=args.database_pool_size,
        grace=args.grace,
        secret_key_file=args.secret_key_file,
        admin_token_file=None if getattr(args, "insecure_no_auth", False) else getattr(args, "admin_token_file", None),
        rate_limit=getattr(args, "rate_limit", 0.0),
        max_concurrent_rpcs=getattr(args, "max_concurrent_rpcs", ServerSettings.max_concurrent_rpcs),
        dispatch_processes=getattr(args, "dispatch_processes", 0),
        log_format=args.log_format,
        log_level=args.log_level,
        tls=tls,
        dispatch=DispatchSettings(
            concurrency=args.dispatch_concurrency,
            per_webhook=args.webhook_concurrency,
            per_organization=args.organization_concurrency,
            delivery_timeout=args.delivery_timeout,
            retry_schedule=args.retry_schedule,
            disable_after=args.disable_after,
            retention=args.retention,
            allow_network=allowed,
        ),
    )


def run_tokens(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    if args.tokens_command == "create":
        try:
            organizations = parse_organizations(args.organization)
        except ValueError as error:
            parser.error(str(error))
    from webhook_service.store import tokens
    from webhook_service.store.database import open_database

    db = open_database(args.database)
    with db.connection_context():
        if args.tokens_command == "create":
            info, token = tokens.create(Role(args.role), organizations, args.description)
            print(f"created token {info.principal.token_id}: role {info.principal.role}, {_scope(info)}")
            print("the token is shown once; keep it safe:")
            print(token)
        elif args.tokens_command == "list":
            print(f"{'ID':14} {'ROLE':10} {'ORGANIZATIONS':24} {'CREATED':26} {'REVOKED':26} DESCRIPTION")
            for info in tokens.list_all():
                print(
                    f"{info.principal.token_id:14} {info.principal.role:10} {_scope(info):24} "
                    f"{_when(info.create_time):26} {_when(info.revoke_time):26} {info.description}"
                )
        else:
            try:
                info = tokens.revoke(args.token_id)
            except NotFound as error:
                print(f"webhooks tokens revoke: {error}", file=sys.stderr)
                return 1
            print(f"revoked token {info.principal.token_id}")
    return 0


def run_keys(args: argparse.Namespace) -> int:
    from webhook_service.store.secrets import create_key

    key_file = args.secret_key_file
    if not create_key(key_file):
        print(
            f"webhooks keys create: {key_file} exists and is kept: a new key would leave the secrets sealed with it "
            "unreadable",
            file=sys.stderr,
        )
        return 1
    print(f"created the key that encrypts webhook secrets: {key_file} (readable by its owner only)")
    print("every `webhooks serve` and `webhooks dispatch` of this deployment needs a copy of it")
    return 0


def _scope(info: TokenInfo) -> str:
    organizations = info.principal.organizations
    return "*" if organizations is None else ",".join(sorted(organizations))


def _when(moment: Any) -> str:
    return "-" if moment is None else moment.isoformat(timespec="seconds")


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    relay_handshakes = handshakes.trace_if_serving_tls(argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    from webhook_service import operator

    if args.command in operator.COMMANDS:
        return operator.run(args)
    log_format, log_level = getattr(args, "log_format", "text"), getattr(args, "log_level", "info")
    if relay_handshakes:
        handshakes.start_relay(log_format, log_level)
    from webhook_service.receiver import receive

    logs.configure(log_format, log_level)
    if args.command == "receive":
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(receive(args.listen, args.secret))
        return 0
    if args.command == "dispatch" and args.dispatch_concurrency == 0:
        parser.error("webhooks dispatch needs --dispatch-concurrency of at least 1")
    from webhook_service.process import DispatchProcess, run, told

    if args.command == "keys":
        return told("", lambda: run_keys(args))
    if args.command == "tokens":
        return told(args.database, lambda: run_tokens(args, parser))
    settings = settings_from(args, parser)
    if args.command == "serve":
        from webhook_service.server import Server

        return run(Server(settings))
    return run(DispatchProcess(settings))


if __name__ == "__main__":
    sys.exit(main())
