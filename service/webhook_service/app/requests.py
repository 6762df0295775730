"""Checks shared by several RPCs."""

from __future__ import annotations

from webhook_service.domain.errors import InvalidArgument, Reason

MAX_REQUEST_ID = 128


def check_request_id(request_id: str) -> str:
    if len(request_id) > MAX_REQUEST_ID:
        raise InvalidArgument("request_id", f"must be at most {MAX_REQUEST_ID} characters", Reason.FIELD_TOO_LARGE)
    return request_id
