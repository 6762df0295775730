"""The operator's commands: the service's API over gRPC, with the same tokens as any other caller.

Exit status: 0 on success; 2 when the command line or a file it names is wrong (nothing was sent); and, as
grpcurl does, 64 plus the gRPC status code when the call fails (69 NOT_FOUND, 67 INVALID_ARGUMENT,
80 UNAUTHENTICATED, 78 UNAVAILABLE when the server cannot be reached, ...).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import grpc

from webhook_service.operator import deliveries, hooks, publish
from webhook_service.operator.command import UsageError, connect
from webhook_service.operator.show import print_json
from webhooks_client import error_reason, violations

COMMANDS = ("hooks", "deliveries", "publish")
USAGE = 2
RPC_FAILED = 64


def register(commands: Any) -> None:
    hooks.register(commands)
    deliveries.register(commands)
    publish.register(commands)


def run(args: argparse.Namespace) -> int:
    try:
        with connect(args) as client:
            response = args.call(client, args)
    except UsageError as error:
        print(f"{args.command_name}: {error}", file=sys.stderr)
        return USAGE
    except grpc.RpcError as error:
        print(f"{args.command_name}: {describe(error)}", file=sys.stderr)
        code: grpc.StatusCode = error.code()
        return RPC_FAILED + int(code.value[0])
    if args.output == "json":
        print_json(response)
    else:
        args.show(response, args)
    return 0


def describe(error: grpc.RpcError) -> str:
    """One line: the status code's name, then each field the request got wrong (or else the message),
    then the service's reason for it."""
    code: grpc.StatusCode = error.code()
    found = violations(error)
    if found:
        text = "; ".join(f"{violation.field}: {violation.description} ({violation.reason})" for violation in found)
        return f"{code.name}: {' '.join(text.split())}"
    details: str = error.details() or ""
    reason = error_reason(error)
    suffix = f" ({reason})" if reason and reason != code.name else ""
    return f"{code.name}: {' '.join(details.split())}{suffix}"
