"""The one place where service errors become gRPC statuses."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any, cast

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from webhook_service.api.grpc.handlers import Context, Handler
from webhook_service.api.observe import CODE_NAMES
from webhook_service.domain import errors

log = logging.getLogger(__name__)

_CODES: dict[type[errors.ServiceError], int] = {kind: code_pb2.Code.Value(name) for kind, name in CODE_NAMES.items()}


def to_status(error: errors.ServiceError) -> grpc.Status:
    status = status_pb2.Status(code=_CODES[type(error)], message=str(error))
    if isinstance(error, errors.InvalidArgument):
        detail = any_pb2.Any()
        detail.Pack(
            error_details_pb2.BadRequest(
                field_violations=[
                    error_details_pb2.BadRequest.FieldViolation(field=error.field, description=error.description)
                ]
            )
        )
        status.details.append(detail)
    if isinstance(error, errors.ResourceExhausted) and error.retry_after is not None:
        hint = error_details_pb2.RetryInfo()
        hint.retry_delay.FromNanoseconds(round(error.retry_after * 1e9))
        detail = any_pb2.Any()
        detail.Pack(hint)
        status.details.append(detail)
    converted: grpc.Status = rpc_status.to_status(status)
    return converted


class ErrorInterceptor(grpc.aio.ServerInterceptor):
    """Turns ServiceError into its status, and anything unexpected into a bare
    INTERNAL whose details reveal nothing (the log has the traceback)."""

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
                await context.abort(grpc.StatusCode.INTERNAL, "internal error")

        return grpc.unary_unary_rpc_method_handler(guarded, response_serializer=handler.response_serializer)


def _decoded(decode: Callable[[bytes], Any] | None, raw: bytes) -> Any:
    if decode is None:
        return raw
    try:
        return decode(raw)
    except Exception:
        raise errors.InvalidArgument("request", "is not a valid protobuf message for this method") from None
