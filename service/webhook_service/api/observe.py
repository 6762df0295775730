"""What every door records of each API call it served, the same way whichever door it was: the call's
series and its access-log line."""

from __future__ import annotations

import logging

from webhook_service.domain import errors
from webhook_service.metrics import Metrics

# Every door names an outcome as gRPC does, so its series and log lines read the same for each door.
CODE_NAMES: dict[type[errors.ServiceError], str] = {
    errors.InvalidArgument: "INVALID_ARGUMENT",
    errors.NotFound: "NOT_FOUND",
    errors.AlreadyExists: "ALREADY_EXISTS",
    errors.FailedPrecondition: "FAILED_PRECONDITION",
    errors.Aborted: "ABORTED",
    errors.PermissionDenied: "PERMISSION_DENIED",
    errors.Unauthenticated: "UNAUTHENTICATED",
    errors.ResourceExhausted: "RESOURCE_EXHAUSTED",
    errors.Unavailable: "UNAVAILABLE",
}

# A logger of its own, so the access log can be kept or dropped apart from the rest.
access_log = logging.getLogger("webhook_service.access")


def record_call(metrics: Metrics, method: str, code: str, seconds: float, token_id: str = "") -> None:
    """One finished call: `method` is the operation (CreateWebhook), `code` its outcome as a gRPC code name
    (OK, INVALID_ARGUMENT, ...) whichever door it came through, `token_id` the caller's token ID once known.

    The access line is at DEBUG: a line per call costs the event loop time at thousands of calls a second,
    and the audit lines of changes are at INFO anyway.
    """
    metrics.observe_call(method, code, seconds)
    if access_log.isEnabledFor(logging.DEBUG):
        duration_ms = round(seconds * 1000, 3)
        access_log.debug(
            "%s %s in %.1f ms (token %s)",
            method,
            code,
            duration_ms,
            token_id or "-",
            extra={"method": method, "code": code, "duration_ms": duration_ms, "token_id": token_id or None},
        )
