"""The one place where service errors become gRPC statuses."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any, cast

import grpc
from google.protobuf import any_pb2
from google.protobuf.message import Message
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from webhook_service.api.grpc.handlers import Context, Handler
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
    (the log has the traceback)."""

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any] | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler = await continuation(handler_call_details)
        if handler is None or handler.unary_unary is None:
            return handler
        inner = cast(Handler, handler.unary_unary)
        decode = handler.request_deserializer
        method = handler_call_details.method

        # The request arrives as bytes and is decoded here, so a malformed one is INVALID_ARGUMENT, not INTERNAL.
        async def guarded(raw: bytes, context: Context) -> Any:
            try:
                return await inner(_decoded(decode, raw), context)
            except errors.ServiceError as error:
                status = to_status(error)
                await context.abort(status.code, status.details, status.trailing_metadata)
            except grpc.aio.AbortError:
                raise
            except Exception:
                log.exception("%s failed unexpectedly", method)
                status = internal_status()
                await context.abort(status.code, status.details, status.trailing_metadata)

        return grpc.unary_unary_rpc_method_handler(guarded, response_serializer=handler.response_serializer)


def _decoded(decode: Callable[[bytes], Any] | None, raw: bytes) -> Any:
    if decode is None:
        return raw
    try:
        return decode(raw)
    except Exception:
        raise errors.InvalidArgument(
            "request", "is not a valid protobuf message for this method", errors.Reason.MALFORMED_REQUEST
        ) from None
