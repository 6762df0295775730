"""Reading the service's rich errors (`google.rpc.Status` details), from the sync and the asyncio client alike."""

from __future__ import annotations

from typing import Any, TypeVar

import grpc
from google.protobuf.message import Message
from google.rpc import error_details_pb2, status_pb2

# The `domain` of every ErrorInfo the service sends.
ERROR_DOMAIN = "webhooks.internal"
_DETAILS_KEY = "grpc-status-details-bin"

M = TypeVar("M", bound=Message)


def _status(error: grpc.RpcError) -> status_pb2.Status | None:
    # Both grpc.RpcError from a call and grpc.aio.AioRpcError carry trailing metadata as (key, value) pairs.
    trailing: Any = error.trailing_metadata() if isinstance(error, grpc.Call | grpc.aio.AioRpcError) else ()
    for key, value in trailing or ():
        if key == _DETAILS_KEY:
            return status_pb2.Status.FromString(value)
    return None


def _details(error: grpc.RpcError, kind: type[M]) -> list[M]:
    status = _status(error)
    found = []
    for detail in status.details if status is not None else ():
        if detail.Is(kind.DESCRIPTOR):
            message = kind()
            detail.Unpack(message)
            found.append(message)
    return found


def violations(error: grpc.RpcError) -> list[error_details_pb2.BadRequest.FieldViolation]:
    """Every violation of the request an INVALID_ARGUMENT error lists (`google.rpc.BadRequest`), in order,
    each with its `field` path (`webhook.filters[2]`), `description` and `reason`."""
    return [violation for bad in _details(error, error_details_pb2.BadRequest) for violation in bad.field_violations]


def field_violations(error: grpc.RpcError) -> dict[str, str]:
    """The violations of an INVALID_ARGUMENT error, field path to description."""
    return {violation.field: violation.description for violation in violations(error)}


def error_info(error: grpc.RpcError) -> error_details_pb2.ErrorInfo | None:
    """The error's `google.rpc.ErrorInfo`, which every error of the service carries."""
    return next(iter(_details(error, error_details_pb2.ErrorInfo)), None)


def error_reason(error: grpc.RpcError) -> str | None:
    """The stable reason of an error of this service (`WEBHOOK_NOT_FOUND`, `ETAG_MISMATCH`, ...)."""
    info = error_info(error)
    return info.reason if info is not None and info.domain == ERROR_DOMAIN else None


def retry_delay(error: grpc.RpcError) -> float | None:
    """Seconds the service asks to wait before trying again (`google.rpc.RetryInfo`), if it says."""
    hint = next(iter(_details(error, error_details_pb2.RetryInfo)), None)
    return hint.retry_delay.ToNanoseconds() / 1e9 if hint is not None else None
