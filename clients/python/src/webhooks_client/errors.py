"""Reading the service's rich errors."""

from __future__ import annotations

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status


def field_violations(error: grpc.RpcError) -> dict[str, str]:
    """The `google.rpc.BadRequest` field violations of an INVALID_ARGUMENT error, field to description."""
    status = rpc_status.from_call(error)
    violations: dict[str, str] = {}
    if status is None:
        return violations
    for detail in status.details:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad_request = error_details_pb2.BadRequest()
            detail.Unpack(bad_request)
            violations.update({v.field: v.description for v in bad_request.field_violations})
    return violations
