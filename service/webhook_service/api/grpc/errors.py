"""The one place where service errors become gRPC statuses."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from types import TracebackType
from typing import Any

import grpc
from google.protobuf import any_pb2
from google.protobuf.message import Message
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from webhook_service.api.grpc.handlers import Context, Continuation, PerMethod, wrap
from webhook_service.api.observe import CODE_NAMES
from webhook_service.domain import errors

log = logging.getLogger(__name__)

_CODES: dict[type[errors.ServiceError], int] = {kind: code_pb2.Code.Value(name) for kind, name in CODE_NAMES.items()}


def to_status(error: errors.ServiceError) -> grpc.Status:
    """The status with its details: ErrorInfo always, BadRequest with every violation, RetryInfo when
    waiting helps."""
    details: list[Message] = [error_details_pb2.ErrorInfo(reason=error.reason, domain=errors.DOMAIN)]
    if isinstance(error, errors.InvalidArgument):
        details.append(
            error_details_pb2.BadRequest(
                field_violations=[
                    error_details_pb2.BadRequest.FieldViolation(
                        field=violation.field, description=violation.description, reason=violation.reason
                    )
                    for violation in error.violations
                ]
            )
        )
    if isinstance(error, errors.ResourceExhausted) and error.retry_after is not None:
        hint = error_details_pb2.RetryInfo()
        hint.retry_delay.FromNanoseconds(round(error.retry_after * 1e9))
        details.append(hint)
    return _status(_CODES[type(error)], str(error), details)


def _status(code: int, message: str, details: list[Message]) -> grpc.Status:
    status = status_pb2.Status(code=code, message=message)
    for message_detail in details:
        packed = any_pb2.Any()
        packed.Pack(message_detail)
        status.details.append(packed)
    converted: grpc.Status = rpc_status.to_status(status)
    return converted


def internal_status() -> grpc.Status:
    """What an unexpected failure says: nothing about itself (the log has the traceback)."""
    info = error_details_pb2.ErrorInfo(reason="INTERNAL", domain=errors.DOMAIN)
    return _status(code_pb2.INTERNAL, "internal error", [info])


class ErrorInterceptor(grpc.aio.ServerInterceptor):
    """Turns ServiceError into its status, and anything unexpected into an INTERNAL that reveals nothing
    (the log has the traceback), for unary calls and streams alike."""

    def __init__(self) -> None:
        self._handlers = PerMethod(self._guarded)

    async def intercept_service(
        self, continuation: Continuation, handler_call_details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        return await self._handlers.handler(continuation, handler_call_details)

    def _guarded(self, method: str, handler: grpc.RpcMethodHandler[Any, Any]) -> grpc.RpcMethodHandler[Any, Any]:
        # The request arrives as bytes and is decoded inside, so a malformed one is INVALID_ARGUMENT, not INTERNAL.
        return wrap(handler, functools.partial(_Guarded, method), _decoded)


class _Guarded:
    """Around one call: what it raised, as its status. A plain class rather than a generator context manager:
    it runs around every call, and a generator costs several times as much."""

    __slots__ = ("_context", "_method")

    def __init__(self, method: str, context: Context) -> None:
        self._method = method
        self._context = context

    async def __aenter__(self) -> None:
        return None

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        if isinstance(error, errors.ServiceError):
            status = to_status(error)
        elif isinstance(error, Exception) and not isinstance(error, grpc.aio.AbortError):
            log.error("%s failed unexpectedly", self._method, exc_info=error)
            status = internal_status()
        else:
            return
        await self._context.abort(status.code, status.details, status.trailing_metadata)


def _decoded(decode: Callable[[bytes], Any] | None, raw: bytes) -> Any:
    if decode is None:
        return raw
    try:
        return decode(raw)
    except Exception:
        raise errors.InvalidArgument(
            "request", "is not a valid protobuf message for this method", errors.Reason.MALFORMED_REQUEST
        ) from None
