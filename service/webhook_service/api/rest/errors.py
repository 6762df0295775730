"""The one place where service errors, and aiohttp's own refusals, become REST answers: Pulumi's
`{"code": <status>, "message": ...}`."""

from __future__ import annotations

import logging
import math

from aiohttp import web
from aiohttp.typedefs import Handler

from webhook_service.api.rest.convert import json_field
from webhook_service.domain import errors

log = logging.getLogger(__name__)

_STATUSES: dict[type[errors.ServiceError], int] = {
    errors.InvalidArgument: 400,
    errors.Unauthenticated: 401,
    errors.PermissionDenied: 403,
    errors.NotFound: 404,
    errors.AlreadyExists: 409,
    # 409, not 412: the call conflicts with the resource's current state (an attempt in flight), and 412
    # answers a failed If-Match style precondition, which this API has none of.
    errors.FailedPrecondition: 409,
    # A stale etag; this API sends none, so only another door's callers meet it.
    errors.Aborted: 409,
    errors.ResourceExhausted: 429,
    errors.Unavailable: 503,
}


def error_answer(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"code": status, "message": message}, status=status, headers=headers)


def service_error_answer(error: errors.ServiceError) -> web.Response:
    status = _STATUSES[type(error)]
    message = str(error)
    headers: dict[str, str] = {}
    if isinstance(error, errors.InvalidArgument):
        message = f"{json_field(error.field)}: {error.description}"
    if isinstance(error, errors.Unauthenticated):
        headers["WWW-Authenticate"] = 'Bearer realm="webhooks"'
    if isinstance(error, errors.ResourceExhausted) and error.retry_after is not None:
        # Retry-After takes whole seconds; rounding down would invite a retry that is refused again.
        headers["Retry-After"] = str(max(1, math.ceil(error.retry_after)))
    return error_answer(status, message, headers)


@web.middleware
async def answer_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Around every REST route, and aiohttp's refusals under /api (no such route, method not allowed,
    body too large); anything unexpected is a bare 500 whose message reveals nothing (the log has it)."""
    try:
        return await handler(request)
    except errors.ServiceError as error:
        return service_error_answer(error)
    except web.HTTPRequestEntityTooLarge as error:
        return error_answer(error.status, error.text or error.reason)
    except web.HTTPException as error:
        if error.status < 400:
            raise
        allow = {"Allow": error.headers["Allow"]} if "Allow" in error.headers else None
        return error_answer(error.status, f"{error.reason}: {request.method} {request.path}", allow)
    except Exception:
        log.exception("%s %s failed unexpectedly", request.method, request.path)
        return error_answer(500, "internal error")
