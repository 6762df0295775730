"""What every operator command shares: where it connects, as whom and over what, how it shows its result,
and how a list follows its pages."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
from google.protobuf.message import Message

from webhook_service.flags import add_flag, duration, one_of, positive_count
from webhooks_client import DEFAULT_TIMEOUT, Client

# Where `make run` serves.
DEFAULT_SERVER = "127.0.0.1:50051"
OUTPUTS = ("table", "json")
PARENT_HELP = "organizations/ORG or organizations/ORG/projects/PROJECT/stacks/STACK"
WEBHOOK_HELP = "the webhook's name: PARENT/webhooks/ID, as `hooks list` shows it"
DELIVERY_HELP = "the delivery's name: WEBHOOK/deliveries/ID, as `deliveries list` shows it"


# What a command does: one call or a few, returning the response to show; a stream shows each answer as it
# comes, and returns None.
Call = Callable[[Client, argparse.Namespace], Message | None]
# How a person sees the response.
Show = Callable[[Any, argparse.Namespace], None]


class UsageError(Exception):
    """The command line, or a file it names, is wrong; nothing was sent."""


def command(
    commands: Any, name: str, help: str, call: Call, show: Show | None, epilog: str | None = None
) -> argparse.ArgumentParser:
    """A command that makes a call with `call` and shows its result with `show`, or as JSON; without `show`,
    a stream, whose call shows what it gets as it comes, a line at a time."""
    parser: argparse.ArgumentParser = commands.add_parser(name, help=help, description=help, epilog=epilog)
    parser.set_defaults(call=call, show=show, command_name=parser.prog)
    _add_common_flags(parser.add_argument_group("connection and output"), stream=show is None)
    return parser


def _add_common_flags(parser: argparse._ArgumentGroup, stream: bool) -> None:
    add_flag(parser, "--server", "the service's gRPC address", DEFAULT_SERVER, metavar="HOST:PORT")
    add_flag(parser, "--token", "API token, sent as `authorization: Bearer`", secret=True, metavar="TOKEN")
    add_flag(parser, "--token-file", "file holding the API token, such as serve's data/admin-token", type=Path)
    add_flag(parser, "--tls", "connect over TLS, trusting the system's certificate authorities", action="store_true")
    add_flag(parser, "--tls-ca", "PEM CA bundle to trust for the server's --tls-cert; implies --tls", type=Path)
    add_flag(
        parser,
        "--tls-client-cert",
        "PEM client certificate chain, for a server with --tls-client-ca; implies --tls",
        type=Path,
    )
    add_flag(parser, "--tls-client-key", "PEM private key of --tls-client-cert", type=Path)
    add_flag(
        parser,
        "--timeout",
        "time allowed for the watch to be in place" if stream else "time allowed for each call",
        f"{DEFAULT_TIMEOUT:g}s",
        type=duration,
    )
    add_flag(
        parser,
        "--output",
        "table for people, or json for scripts: "
        + ("each answer in proto JSON, one object a line" if stream else "the response in proto JSON, one document"),
        "table",
        type=one_of(OUTPUTS, "format"),
        metavar="FORMAT",
    )


def add_page_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--page-size", type=positive_count, metavar="N", help="at most this many (server default 50)")
    parser.add_argument(
        "--page-token", default="", metavar="TOKEN", help="the next page: the token a previous page ended with"
    )
    parser.add_argument("--all", action="store_true", help="follow every page and show them as one")


def connect(args: argparse.Namespace) -> Client:
    return Client(args.server, token=_token(args), credentials=_credentials(args), timeout=args.timeout)


def _token(args: argparse.Namespace) -> str | None:
    if args.token and args.token_file:
        raise UsageError("give --token or --token-file (or WEBHOOKS_TOKEN or WEBHOOKS_TOKEN_FILE), not both")
    if args.token_file:
        return read_text(args.token_file, "--token-file").strip() or None
    return args.token or None


def _credentials(args: argparse.Namespace) -> grpc.ChannelCredentials | None:
    if bool(args.tls_client_cert) != bool(args.tls_client_key):
        raise UsageError("--tls-client-cert and --tls-client-key go together")
    if not (args.tls or args.tls_ca or args.tls_client_cert):
        return None
    return grpc.ssl_channel_credentials(
        root_certificates=_pem(args.tls_ca, "--tls-ca"),
        private_key=_pem(args.tls_client_key, "--tls-client-key"),
        certificate_chain=_pem(args.tls_client_cert, "--tls-client-cert"),
    )


def _pem(path: Path | None, flag: str) -> bytes | None:
    """The file's bytes, checked here because gRPC only says it failed to create a security handshaker."""
    if path is None:
        return None
    data = read_bytes(path, flag)
    if b"-----BEGIN " not in data:
        raise UsageError(f"{flag} {path}: not PEM (no -----BEGIN line)")
    return data


def read_bytes(path: Path, flag: str = "") -> bytes:
    try:
        return path.read_bytes()
    except OSError as error:
        raise UsageError(f"{flag} {path}: {error.strerror or error}".lstrip()) from None


def read_text(path: Path, flag: str = "") -> str:
    try:
        return read_bytes(path, flag).decode()
    except UnicodeDecodeError:
        raise UsageError(f"{flag} {path}: not UTF-8 text".lstrip()) from None


def pages(call: Callable[[Any], Any], request: Any, items: str, args: argparse.Namespace) -> Any:
    """The page the flags ask for; with --all, every page from there on as one response with no next token."""
    request.page_token = args.page_token
    response = call(request)
    if not args.all:
        return response
    merged = type(response)()
    merged.CopyFrom(response)
    while response.next_page_token:
        request.page_token = response.next_page_token
        response = call(request)
        getattr(merged, items).extend(getattr(response, items))
    merged.next_page_token = ""
    return merged
