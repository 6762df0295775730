"""The `webhooks` command. Every flag can also come from WEBHOOKS_<FLAG>."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import sys
from collections.abc import Sequence
from typing import Any

from webhook_service import __version__
from webhook_service.dispatch.settings import DEFAULT_RETRY_SCHEDULE, DispatchSettings
from webhook_service.domain.durations import parse_duration, parse_schedule
from webhook_service.receiver import receive
from webhook_service.server import DispatchProcess, Server, ServerSettings, run_until_signalled

DEFAULT_DATABASE = "sqlite:///data/webhooks.db"


def env_name(flag: str) -> str:
    return "WEBHOOKS_" + flag.lstrip("-").upper().replace("-", "_")


def add_flag(parser: argparse.ArgumentParser, flag: str, help: str, default: Any = None, **kwargs: Any) -> None:
    """A flag whose default comes from its environment variable when that is set."""
    env = env_name(flag)
    parser.add_argument(
        flag, default=os.environ.get(env, default), help=f"{help} (env {env}; default %(default)s)", **kwargs
    )


def count(text: str) -> int:
    value = int(text)
    if value < 0:
        raise ValueError(f"{text} is negative")
    return value


def positive_count(text: str) -> int:
    value = int(text)
    if value < 1:
        raise ValueError(f"{text} is not a positive whole number")
    return value


def duration(text: str) -> float:
    return parse_duration(text)


def schedule(text: str) -> tuple[float, ...]:
    return parse_schedule(text)


def add_dispatch_flags(parser: argparse.ArgumentParser) -> None:
    add_flag(parser, "--database", "peewee database URL", DEFAULT_DATABASE)
    add_flag(
        parser,
        "--dispatch-concurrency",
        "deliveries in flight at once, all webhooks together",
        "64",
        type=count,
    )
    add_flag(
        parser, "--webhook-concurrency", "deliveries in flight at once to any one webhook", "16", type=positive_count
    )
    add_flag(parser, "--delivery-timeout", "time allowed for one HTTP attempt", "15s", type=duration)
    add_flag(
        parser,
        "--retry-schedule",
        "delays before each attempt, comma-separated",
        DEFAULT_RETRY_SCHEDULE,
        type=schedule,
    )
    add_flag(parser, "--disable-after", "continuous failure before a webhook is deactivated", "5d", type=duration)
    add_flag(parser, "--retention", "how long events and deliveries are kept", "30d", type=duration)
    add_flag(parser, "--grace", "time given to in-flight calls and deliveries on shutdown", "10s", type=duration)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="webhooks", description="Pulumi-style webhook delivery over gRPC.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the gRPC server and a dispatcher")
    add_flag(serve, "--listen", "gRPC address HOST:PORT; port 0 picks a free port", "127.0.0.1:50051")
    add_dispatch_flags(serve)

    serve.epilog = "--dispatch-concurrency 0 serves the API only, for deployments with separate `webhooks dispatch`."
    dispatch = commands.add_parser("dispatch", help="run only a dispatcher against the database")
    add_dispatch_flags(dispatch)

    receive = commands.add_parser("receive", help="print deliveries posted to HOST:PORT, checking signatures")
    add_flag(receive, "--listen", "HTTP address HOST:PORT to receive on", "127.0.0.1:8000")
    add_flag(receive, "--secret", "the webhook's secret, to check Pulumi-Webhook-Signature", "")
    return parser


def settings_from(args: argparse.Namespace) -> ServerSettings:
    return ServerSettings(
        listen=getattr(args, "listen", ""),
        database=args.database,
        grace=args.grace,
        dispatch=DispatchSettings(
            concurrency=args.dispatch_concurrency,
            per_webhook=args.webhook_concurrency,
            delivery_timeout=args.delivery_timeout,
            retry_schedule=args.retry_schedule,
            disable_after=args.disable_after,
            retention=args.retention,
        ),
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "dispatch" and args.dispatch_concurrency == 0:
        parser.error("webhooks dispatch needs --dispatch-concurrency of at least 1")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    if args.command == "receive":
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(receive(args.listen, args.secret))
        return 0
    settings = settings_from(args)
    process = Server(settings) if args.command == "serve" else DispatchProcess(settings)
    try:
        asyncio.run(run_until_signalled(process))
    except RuntimeError as error:
        logging.getLogger("webhooks").error("%s", error)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
