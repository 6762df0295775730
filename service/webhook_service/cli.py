"""The `webhooks` command. Every flag can also come from WEBHOOKS_<FLAG>."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Sequence
from typing import Any

from webhook_service import __version__
from webhook_service.server import ServerSettings, serve_until_signalled

DEFAULT_DATABASE = "sqlite:///data/webhooks.db"


def env_name(flag: str) -> str:
    return "WEBHOOKS_" + flag.lstrip("-").upper().replace("-", "_")


def add_flag(parser: argparse.ArgumentParser, flag: str, help: str, default: Any = None, **kwargs: Any) -> None:
    """A flag whose default comes from its environment variable when that is set."""
    env = env_name(flag)
    parser.add_argument(
        flag, default=os.environ.get(env, default), help=f"{help} (env {env}; default %(default)s)", **kwargs
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="webhooks", description="Pulumi-style webhook delivery over gRPC.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the gRPC server")
    add_flag(serve, "--listen", "gRPC address HOST:PORT; port 0 picks a free port", "127.0.0.1:50051")
    add_flag(serve, "--database", "peewee database URL", DEFAULT_DATABASE)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    if args.command == "serve":
        try:
            asyncio.run(serve_until_signalled(ServerSettings(listen=args.listen, database=args.database)))
        except RuntimeError as error:
            logging.getLogger("webhooks").error("%s", error)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
