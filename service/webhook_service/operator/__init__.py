"""The operator's commands: the service's API over gRPC, with the same tokens as any other caller.

Exit status: 0 on success; 2 when the command line or a file it names is wrong (nothing was sent); and, as
grpcurl does, 64 plus the gRPC status code when the call fails (69 NOT_FOUND, 67 INVALID_ARGUMENT,
80 UNAUTHENTICATED, 78 UNAVAILABLE when the server cannot be reached, ...).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Iterator
from typing import Any, TextIO

import grpc

from webhook_service.operator import deliveries, hooks, publish, tail
from webhook_service.operator.command import UsageError, connect
from webhook_service.operator.show import one_line, print_json
from webhooks_client import error_reason, violations

COMMANDS = ("hooks", "deliveries", "publish", "tail")
USAGE = 2
RPC_FAILED = 64
# As a shell reports a command ended by SIGINT, or by SIGPIPE (its reader went away, as `| head` does).
INTERRUPTED = 130
BROKEN_PIPE = 141


def register(commands: Any) -> None:
    hooks.register(commands)
    deliveries.register(commands)
    publish.register(commands)
    tail.register(commands)


def run(args: argparse.Namespace) -> int:
    try:
        with _without_grpc_logs(), connect(args) as client:
            response = args.call(client, args)
        # A stream has shown what it got as it came.
        if response is not None:
            if args.output == "json":
                print_json(response)
            else:
                args.show(response, args)
    except UsageError as error:
        print(f"{args.command_name}: {error}", file=sys.stderr)
        return USAGE
    except grpc.RpcError as error:
        print(f"{args.command_name}: {describe(error)}", file=sys.stderr)
        code: grpc.StatusCode = error.code()
        return RPC_FAILED + int(code.value[0])
    except KeyboardInterrupt:
        return INTERRUPTED
    except BrokenPipeError:
        _discard_output()
        return BROKEN_PIPE
    return 0


def _discard_output() -> None:
    """Nothing reads standard output any more: what is left in its buffer goes nowhere, rather than into a
    second BrokenPipeError as Python flushes it on exit."""
    with contextlib.suppress(OSError, ValueError):
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, sys.stdout.fileno())
        os.close(null)


@contextlib.contextmanager
def _without_grpc_logs() -> Iterator[None]:
    """gRPC's core logs some failures itself, straight to file descriptor 2 (a failed TLS handshake as an
    INFO line, whatever GRPC_VERBOSITY said after gRPC was imported); the command says what failed in its one
    line instead. Setting GRPC_VERBOSITY or GRPC_TRACE keeps gRPC's lines, for debugging."""
    if "GRPC_VERBOSITY" in os.environ or "GRPC_TRACE" in os.environ:
        yield
        return
    sys.stderr.flush()
    kept = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
        with contextlib.ExitStack() as stack:
            if _writes_to(sys.stderr, 2):
                # The command's own lines, such as a stream's notes, still reach standard error.
                own = sys.stderr
                terminal = stack.enter_context(
                    open(kept, "w", buffering=1, encoding=own.encoding, errors=own.errors, closefd=False)
                )
                stack.enter_context(contextlib.redirect_stderr(terminal))
            yield
    finally:
        os.dup2(kept, 2)
        os.close(kept)


def _writes_to(stream: TextIO, descriptor: int) -> bool:
    try:
        return stream.fileno() == descriptor
    except (AttributeError, OSError, ValueError):
        # A stream of the caller's, such as a test's StringIO.
        return False


def describe(error: grpc.RpcError) -> str:
    """One line: the status code's name, then each field the request got wrong (or else the message),
    then the service's reason for it."""
    code: grpc.StatusCode = error.code()
    found = violations(error)
    if found:
        text = "; ".join(f"{violation.field}: {violation.description} ({violation.reason})" for violation in found)
        return f"{code.name}: {one_line(text)}"
    details: str = error.details() or ""
    reason = error_reason(error)
    suffix = f" ({reason})" if reason and reason != code.name else ""
    return f"{code.name}: {one_line(details)}{suffix}"
