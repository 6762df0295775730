"""Pulumi's JSON words to domain values and back.

Responses follow Pulumi's shapes: webhooks with `hasSecret` in place of the secret, deliveries with their
latest attempt's request and response, headers as `Name: value` lines, `timestamp` in unix seconds and
`duration` in milliseconds.
"""

from __future__ import annotations

import enum
import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

from webhook_service.domain.durations import parse_duration
from webhook_service.domain.errors import InvalidArgument
from webhook_service.domain.model import Delivery, Webhook, WebhookFields, WebhookFilter, WebhookFormat, WebhookGroup
from webhook_service.domain.names import Parent

E = TypeVar("E", bound=enum.StrEnum)

# Where a webhook lives; in a body they must agree with the path, which is what decides.
PLACEMENT = ("organizationName", "projectName", "stackName")
# What a caller sets, by its JSON name and its domain name (the update paths).
SETTABLE = {
    "displayName": "display_name",
    "payloadUrl": "payload_url",
    "secret": "secret",
    "active": "active",
    "format": "format",
    "filters": "filters",
    "groups": "groups",
}
# Output only, accepted and ignored, so a webhook as GET returns it can be sent back with changes.
OUTPUT_ONLY = (
    "hasSecret",
    "disabledReason",
    "previousSecretExpireTime",
    "lastSuccessTime",
    "failingSince",
    "pendingDeliveries",
    "succeededAttempts24h",
    "failedAttempts24h",
)
KNOWN = frozenset({*PLACEMENT, "name", *SETTABLE, *OUTPUT_ONLY})

# Domain field paths whose REST name is not simply their camelCase.
_REST_NAMES = {"webhook_id": "name", "parent": "path", "page_token": "continuationToken"}


def json_field(field: str) -> str:
    """The REST name of a field a domain error names: `webhook.display_name` is `displayName`."""
    field = field.removeprefix("webhook.")
    return _REST_NAMES.get(field) or re.sub(r"_([a-z])", lambda m: m[1].upper(), field)


def parse_object(raw: bytes) -> dict[str, Any]:
    try:
        value = json.loads(raw)
    except (ValueError, RecursionError):
        raise InvalidArgument("body", "is not JSON") from None
    if not isinstance(value, dict):
        raise InvalidArgument("body", "must be a JSON object")
    return value


@dataclass(frozen=True)
class WebhookBody:
    webhook_id: str
    fields: WebhookFields
    # The domain names of the settable fields the body carries: what an update changes.
    present: tuple[str, ...]


def webhook_body(body: dict[str, Any], parent: Parent, webhook_id: str = "") -> WebhookBody:
    """The webhook a create or update body describes; absent fields take their defaults. `webhook_id` is
    the one the path names (an update), which a `name` in the body must repeat."""
    unknown = sorted(body.keys() - KNOWN)
    if unknown:
        raise InvalidArgument(unknown[0], f"is not a field of a webhook; known: {', '.join(sorted(KNOWN))}")
    for key, expected in zip(PLACEMENT, (parent.organization, parent.project, parent.stack), strict=True):
        if key in body and _string(body, key) != expected:
            where = f"{expected!r}" if expected else "none (an organization webhook)"
            raise InvalidArgument(key, f"is {body[key]!r} but the path says {where}")
    name = _string(body, "name") if "name" in body else ""
    if webhook_id and name not in ("", webhook_id):
        raise InvalidArgument("name", f"is {name!r} but the path names {webhook_id!r}; a webhook keeps its name")
    defaults = WebhookFields()
    fields = WebhookFields(
        display_name=_string(body, "displayName") if "displayName" in body else defaults.display_name,
        payload_url=_string(body, "payloadUrl") if "payloadUrl" in body else defaults.payload_url,
        secret=_string(body, "secret") if "secret" in body else defaults.secret,
        active=_bool(body, "active") if "active" in body else defaults.active,
        format=_member(body["format"], "format", WebhookFormat) if "format" in body else defaults.format,
        filters=_words(body, "filters", WebhookFilter) if "filters" in body else defaults.filters,
        groups=_words(body, "groups", WebhookGroup) if "groups" in body else defaults.groups,
    )
    present = tuple(field for key, field in SETTABLE.items() if key in body)
    return WebhookBody(webhook_id or name, fields, present)


def _string(body: dict[str, Any], key: str) -> str:
    value = body[key]
    if not isinstance(value, str):
        raise InvalidArgument(key, "must be a string")
    return value


def _bool(body: dict[str, Any], key: str) -> bool:
    value = body[key]
    if not isinstance(value, bool):
        raise InvalidArgument(key, "must be true or false")
    return value


def _words(body: dict[str, Any], key: str, kind: type[E]) -> tuple[E, ...]:
    values = body[key]
    if not isinstance(values, list):
        raise InvalidArgument(key, "must be a list")
    return tuple(_member(value, key, kind) for value in values)


def _member(value: Any, key: str, kind: type[E]) -> E:
    words = [member.value for member in kind]
    if not isinstance(value, str) or value not in words:
        raise InvalidArgument(key, f"{json.dumps(value)} is not one of {', '.join(words)}")
    return kind(value)


def rotation_body(body: dict[str, Any]) -> tuple[str, float | None]:
    """The secret (empty: generate one) and the overlap in seconds (None: the default) of a rotate-secret
    body; the overlap is written as on the command line, `24h`, `30m`, `0s`."""
    _only(body, ("secret", "overlap"))
    secret = _string(body, "secret") if "secret" in body else ""
    if "overlap" not in body:
        return secret, None
    try:
        return secret, parse_duration(_string(body, "overlap"))
    except ValueError as error:
        raise InvalidArgument("overlap", str(error)) from None


def recovery_body(body: dict[str, Any]) -> tuple[datetime | None, str]:
    """`since` (unix seconds, as deliveries' `timestamp`, or an RFC 3339 time) and `requestId` of a
    recover body."""
    _only(body, ("since", "requestId"))
    request_id = _string(body, "requestId") if "requestId" in body else ""
    if "since" not in body:
        return None, request_id
    value = body["since"]
    try:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return datetime.fromtimestamp(value, UTC), request_id
        if isinstance(value, str):
            moment = datetime.fromisoformat(value)
            if moment.tzinfo is not None:
                return moment, request_id
    except (ValueError, OverflowError, OSError):
        pass
    raise InvalidArgument(
        "since", "must be unix seconds or an RFC 3339 time with its offset, e.g. 2024-05-01T12:00:00Z"
    )


def _only(body: dict[str, Any], known: tuple[str, ...]) -> None:
    unknown = sorted(body.keys() - set(known))
    if unknown:
        raise InvalidArgument(unknown[0], f"is not a field of this request; known: {', '.join(known)}")


def webhook_json(webhook: Webhook) -> dict[str, Any]:
    """The webhook as Pulumi returns one: never the secret, only whether there is one. Stack webhooks
    add their project and stack; a rotation under way adds when the secret it replaced stops signing
    (`previousSecretExpireTime`, unix seconds). Beyond Pulumi's fields, its health; Pulumi's clients
    skip fields they do not know, and take a webhook with them back."""
    where: dict[str, Any] = {"organizationName": webhook.parent.organization}
    if webhook.parent.is_stack:
        where |= {"projectName": webhook.parent.project, "stackName": webhook.parent.stack}
    health = webhook.health
    for key, moment in (
        ("previousSecretExpireTime", webhook.previous_secret_expire_time),
        ("lastSuccessTime", health.last_success_time),
        ("failingSince", health.failing_since),
    ):
        if moment is not None:
            where[key] = int(moment.timestamp())
    return where | {
        "name": webhook.webhook_id,
        "displayName": webhook.display_name,
        "payloadUrl": webhook.payload_url,
        "active": webhook.active,
        "hasSecret": bool(webhook.secret),
        "format": webhook.format.value,
        "filters": [wanted.value for wanted in webhook.filters],
        "groups": [group.value for group in webhook.groups],
        "disabledReason": webhook.disabled_reason,
        "pendingDeliveries": health.pending_deliveries,
        "succeededAttempts24h": health.succeeded_attempts_24h,
        "failedAttempts24h": health.failed_attempts_24h,
    }


def delivery_json(delivery: Delivery) -> dict[str, Any]:
    """Pulumi's delivery record, from the latest attempt (a delivery not yet attempted has empty request
    and response, and its creation time), plus what retries add: `state`, `attemptCount`, `error`."""
    latest = delivery.attempts[-1] if delivery.attempts else None
    moment = latest.start_time if latest else delivery.create_time
    return {
        "id": delivery.delivery_id,
        "kind": delivery.kind,
        "payload": delivery.payload.decode("utf-8", errors="replace"),
        "timestamp": int(moment.timestamp()),
        "duration": round(latest.duration * 1000) if latest else 0,
        "requestUrl": latest.request_url if latest else "",
        "requestHeaders": _header_lines(latest.request_headers if latest else {}),
        "responseCode": latest.response_code if latest else 0,
        "responseHeaders": _header_lines(latest.response_headers if latest else {}),
        "responseBody": latest.response_body if latest else "",
        "state": delivery.state.value,
        "attemptCount": delivery.attempt_count,
        "error": latest.error if latest else "",
    }


def _header_lines(headers: dict[str, str]) -> str:
    return "".join(f"{name}: {value}\r\n" for name, value in headers.items())
