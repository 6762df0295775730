"""Protobuf messages to domain values and back; unknown enum numbers are caller errors."""

from __future__ import annotations

import enum
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any, TypeVar

from google.protobuf.descriptor import EnumDescriptor
from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp

from webhook_service.domain.errors import InvalidArgument, Reason, Violations
from webhook_service.domain.filters import Match
from webhook_service.domain.model import (
    Attempt,
    Delivery,
    DeliveryState,
    DeploymentChange,
    Event,
    FinishedAttempt,
    Identity,
    StackChange,
    UpdateChange,
    Webhook,
    WebhookFields,
    WebhookFilter,
    WebhookFormat,
    WebhookGroup,
    WebhookOrdering,
)
from webhook_service.domain.names import parse_stack
from webhook_service.domain.webhooks import UPDATABLE_FIELDS
from webhooks.v1 import delivery_pb2, event_pb2, event_service_pb2, webhook_pb2, webhook_service_pb2

E = TypeVar("E", bound=enum.StrEnum)


def enum_from_proto(descriptor: EnumDescriptor, prefix: str, domain: type[E], number: int, field: str) -> E:
    """The domain value of a proto enum number; UNSPECIFIED and unknown numbers are refused."""
    value = descriptor.values_by_number.get(number)
    if value is None:
        raise InvalidArgument(field, f"{number} is not a known {descriptor.name}", Reason.INVALID_ENUM_VALUE)
    if value.number == 0:
        raise InvalidArgument(field, f"{value.name} is not allowed; choose a value", Reason.INVALID_ENUM_VALUE)
    return domain(value.name.removeprefix(prefix).lower())


def _enums_from_proto(
    descriptor: EnumDescriptor, prefix: str, domain: type[E], numbers: Iterable[int], field: str, found: Violations
) -> tuple[E, ...]:
    """The values of a repeated enum field; each bad entry is a violation at its index. With any, the field
    is left empty: without them the entries' indexes would shift, and the rules that name an entry by its
    index wait for a valid list."""
    values = []
    for index, number in enumerate(numbers):
        if found.full:
            return ()
        values.append(found.check(enum_from_proto, descriptor, prefix, domain, number, f"{field}[{index}]"))
    return () if None in values else tuple(value for value in values if value is not None)


def enum_to_proto(descriptor: EnumDescriptor, prefix: str, value: enum.StrEnum) -> Any:
    """The proto enum number of a domain value (typed Any: each message field has its own enum type)."""
    return descriptor.values_by_name[prefix + value.value.upper()].number


_FORMAT = webhook_pb2.DESCRIPTOR.enum_types_by_name["WebhookFormat"]
_FILTER = webhook_pb2.DESCRIPTOR.enum_types_by_name["WebhookFilter"]
_GROUP = webhook_pb2.DESCRIPTOR.enum_types_by_name["WebhookGroup"]
_ORDERING = webhook_pb2.DESCRIPTOR.enum_types_by_name["Ordering"]


def timestamp(moment: datetime | None) -> Timestamp | None:
    if moment is None:
        return None
    stamp = Timestamp()
    stamp.FromDatetime(moment)
    return stamp


# The range a Timestamp may hold: 0001-01-01T00:00:00Z to 9999-12-31T23:59:59.999999999Z.
_MIN_SECONDS, _MAX_SECONDS = -62_135_596_800, 253_402_300_799


def moment_from_proto(stamp: Timestamp, field: str) -> datetime:
    if not _MIN_SECONDS <= stamp.seconds <= _MAX_SECONDS or not 0 <= stamp.nanos < 1_000_000_000:
        raise InvalidArgument(field, "is not a valid timestamp (0001-01-01 to 9999-12-31)", Reason.INVALID_TIME)
    return stamp.ToDatetime(tzinfo=UTC)


def seconds_from_proto(duration: Duration, field: str) -> float:
    """A Duration in seconds; the bounds of what it may be are the application's to check."""
    if duration.seconds * duration.nanos < 0 or not -1_000_000_000 < duration.nanos < 1_000_000_000:
        raise InvalidArgument(
            field, "is not a valid duration: seconds and nanos must share their sign", Reason.INVALID_TIME
        )
    return duration.seconds + duration.nanos / 1e9


def webhook_format(number: int, field: str) -> WebhookFormat:
    if number == webhook_pb2.WEBHOOK_FORMAT_UNSPECIFIED:
        return WebhookFormat.RAW
    return enum_from_proto(_FORMAT, "WEBHOOK_FORMAT_", WebhookFormat, number, field)


def webhook_ordering(number: int, field: str) -> WebhookOrdering:
    if number == webhook_pb2.ORDERING_UNSPECIFIED:
        return WebhookOrdering.UNORDERED
    return enum_from_proto(_ORDERING, "ORDERING_", WebhookOrdering, number, field)


def webhook_fields(message: webhook_pb2.Webhook, found: Violations) -> WebhookFields:
    """The fields the message sets; an absent `active` means true. Enum values it cannot take are added to
    `found` (filters and groups by index) and left out, so the application can report them with the rest."""
    return WebhookFields(
        display_name=message.display_name,
        payload_url=message.payload_url,
        secret=message.secret,
        active=message.active if message.HasField("active") else True,
        format=found.check(webhook_format, message.format, "webhook.format") or WebhookFormat.RAW,
        filters=_enums_from_proto(_FILTER, "WEBHOOK_FILTER_", WebhookFilter, message.filters, "webhook.filters", found),
        groups=_enums_from_proto(_GROUP, "WEBHOOK_GROUP_", WebhookGroup, message.groups, "webhook.groups", found),
        ordering=found.check(webhook_ordering, message.ordering, "webhook.ordering") or WebhookOrdering.UNORDERED,
    )


def webhook_to_proto(webhook: Webhook) -> webhook_pb2.Webhook:
    """The webhook as callers see it: the secret itself never leaves, only whether there is one."""
    return webhook_pb2.Webhook(
        name=webhook.name,
        display_name=webhook.display_name,
        payload_url=webhook.payload_url,
        has_secret=bool(webhook.secret),
        active=webhook.active,
        format=enum_to_proto(_FORMAT, "WEBHOOK_FORMAT_", webhook.format),
        filters=[enum_to_proto(_FILTER, "WEBHOOK_FILTER_", f) for f in webhook.filters],
        groups=[enum_to_proto(_GROUP, "WEBHOOK_GROUP_", g) for g in webhook.groups],
        disabled_reason=webhook.disabled_reason,
        create_time=timestamp(webhook.create_time),
        update_time=timestamp(webhook.update_time),
        previous_secret_expire_time=timestamp(webhook.previous_secret_expire_time),
        etag=webhook.etag,
        ordering=(
            webhook_pb2.ORDERING_UNSPECIFIED
            if webhook.ordering is WebhookOrdering.UNORDERED
            else enum_to_proto(_ORDERING, "ORDERING_", webhook.ordering)
        ),
        last_success_time=timestamp(webhook.health.last_success_time),
        failing_since=timestamp(webhook.health.failing_since),
        pending_deliveries=webhook.health.pending_deliveries,
        succeeded_attempts_24h=webhook.health.succeeded_attempts_24h,
        failed_attempts_24h=webhook.health.failed_attempts_24h,
    )


_MISMATCH = event_service_pb2.DESCRIPTOR.enum_types_by_name["MismatchReason"]


def match_to_proto(webhook: Webhook, found: Match) -> event_service_pb2.WebhookMatch:
    return event_service_pb2.WebhookMatch(
        webhook=webhook.name,
        matched=found.matched,
        reason=(
            event_service_pb2.MISMATCH_REASON_UNSPECIFIED
            if found.mismatch is None
            else enum_to_proto(_MISMATCH, "MISMATCH_REASON_", found.mismatch)
        ),
        detail=found.detail,
    )


def fields_set(message: webhook_pb2.Webhook) -> tuple[str, ...]:
    """The updatable fields a caller set, for an update with an empty mask."""
    present = {descriptor.name for descriptor, _ in message.ListFields()}
    return tuple(field for field in UPDATABLE_FIELDS if field in present)


MAX_TEXT = 1024
MAX_URL = 2048
MAX_RESOURCE_KINDS = 100

_STACK_ACTION = event_pb2.DESCRIPTOR.enum_types_by_name["StackAction"]
_UPDATE_KIND = event_pb2.DESCRIPTOR.enum_types_by_name["UpdateKind"]
_UPDATE_RESULT = event_pb2.DESCRIPTOR.enum_types_by_name["UpdateResult"]
_DEPLOYMENT_STATUS = event_pb2.DESCRIPTOR.enum_types_by_name["DeploymentStatus"]
_DELIVERY_STATE = delivery_pb2.DESCRIPTOR.enum_types_by_name["WebhookDeliveryState"]
_DELIVERY_VIEW = delivery_pb2.DESCRIPTOR.enum_types_by_name["WebhookDeliveryView"]


class _Words(enum.StrEnum):
    """Pulumi's lower-case words for the event enums, checked against the proto names."""

    CREATED = "created"
    DELETED = "deleted"
    UPDATE = "update"
    REFRESH = "refresh"
    DESTROY = "destroy"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    QUEUED = "queued"
    RUNNING = "running"


def _text(value: str, field: str, limit: int = MAX_TEXT) -> str:
    if len(value) > limit:
        raise InvalidArgument(field, f"must be at most {limit} characters", Reason.FIELD_TOO_LARGE)
    return value


def _identity(message: event_pb2.Identity, field: str, found: Violations) -> Identity:
    return Identity(
        name=found.check(_text, message.name, f"{field}.name") or "",
        github_login=found.check(_text, message.github_login, f"{field}.github_login") or "",
        avatar_url=found.check(_text, message.avatar_url, f"{field}.avatar_url", MAX_URL) or "",
    )


def _update_change(update: event_pb2.UpdateEvent, found: Violations) -> UpdateChange:
    field = "event.update_event"
    if len(update.resource_changes) > MAX_RESOURCE_KINDS:
        found.add(f"{field}.resource_changes", f"at most {MAX_RESOURCE_KINDS} entries", Reason.FIELD_TOO_LARGE)
    else:
        for operation, count in update.resource_changes.items():
            found.check(_text, operation, f"{field}.resource_changes", 64)
            if count < 0:
                found.add(f"{field}.resource_changes", f"{operation!r} has a negative count")
    return UpdateChange(
        update_url=found.check(_text, update.update_url, f"{field}.update_url", MAX_URL) or "",
        kind=found.check(enum_from_proto, _UPDATE_KIND, "UPDATE_KIND_", _Words, update.kind, f"{field}.kind") or "",
        result=found.check(enum_from_proto, _UPDATE_RESULT, "UPDATE_RESULT_", _Words, update.result, f"{field}.result")
        or "",
        resource_changes=dict(update.resource_changes),
        is_preview=update.is_preview,
    )


def _deployment_change(deployment: event_pb2.DeploymentEvent, found: Violations) -> DeploymentChange:
    field = "event.deployment_event"
    if deployment.version < 0:
        found.add(f"{field}.version", "must not be negative")
    return DeploymentChange(
        deployment_url=found.check(_text, deployment.deployment_url, f"{field}.deployment_url", MAX_URL) or "",
        version=deployment.version,
        operation=found.check(_text, deployment.operation, f"{field}.operation", 64) or "",
        status=found.check(
            enum_from_proto, _DEPLOYMENT_STATUS, "DEPLOYMENT_STATUS_", _Words, deployment.status, f"{field}.status"
        )
        or "",
    )


def event_from_proto(message: event_pb2.Event) -> Event:
    """The domain event; exactly one payload, known enum values and bounded text are required, and every
    violation is reported at once."""
    found = Violations()
    stack = found.check(parse_stack, message.stack, "event.stack")
    user = _identity(message.user, "event.user", found)
    organization = _identity(message.organization, "event.organization", found)
    which = message.WhichOneof("payload")
    change: StackChange | UpdateChange | DeploymentChange | None = None
    if which == "stack_event":
        action = message.stack_event.action
        field = "event.stack_event.action"
        change = StackChange(found.check(enum_from_proto, _STACK_ACTION, "STACK_ACTION_", _Words, action, field) or "")
    elif which == "update_event":
        change = _update_change(message.update_event, found)
    elif which == "deployment_event":
        change = _deployment_change(message.deployment_event, found)
    else:
        found.add(
            "event.payload", "one of stack_event, update_event or deployment_event is required", Reason.FIELD_REQUIRED
        )
    found.raise_any()
    assert stack is not None and change is not None
    return Event(
        organization_name=stack.organization,
        project=stack.project,
        stack=stack.stack,
        user=user,
        organization=organization,
        change=change,
    )


def _duration(seconds: float) -> Duration:
    duration = Duration()
    duration.FromNanoseconds(round(seconds * 1e9))
    return duration


def attempt_to_proto(attempt: Attempt) -> delivery_pb2.WebhookDeliveryAttempt:
    return delivery_pb2.WebhookDeliveryAttempt(
        attempt_number=attempt.number,
        start_time=timestamp(attempt.start_time),
        request_url=attempt.request_url,
        request_headers=attempt.request_headers,
        response_code=attempt.response_code,
        response_headers=attempt.response_headers,
        response_body=attempt.response_body,
        duration=_duration(attempt.duration),
        error=attempt.error,
    )


def delivery_view(number: int, field: str, unspecified_is_full: bool) -> bool:
    """Whether a request asks for the FULL view of deliveries; UNSPECIFIED means what the RPC defaults to."""
    if number == delivery_pb2.WEBHOOK_DELIVERY_VIEW_UNSPECIFIED:
        return unspecified_is_full
    if number not in _DELIVERY_VIEW.values_by_number:
        raise InvalidArgument(field, f"{number} is not a known {_DELIVERY_VIEW.name}", Reason.INVALID_ENUM_VALUE)
    return number == delivery_pb2.WEBHOOK_DELIVERY_VIEW_FULL


def delivery_to_proto(delivery: Delivery, full: bool) -> delivery_pb2.WebhookDelivery:
    """The delivery with its latest attempt's outcome on top. FULL adds the payload, the latest attempt's
    request and response, and every attempt."""
    message = delivery_pb2.WebhookDelivery(
        name=delivery.name,
        kind=delivery.kind,
        state=enum_to_proto(_DELIVERY_STATE, "WEBHOOK_DELIVERY_STATE_", delivery.state),
        attempt_count=delivery.attempt_count,
        next_attempt_time=timestamp(delivery.next_attempt_time),
        create_time=timestamp(delivery.create_time),
        event_id=delivery.event_id,
    )
    if delivery.attempts:
        latest = delivery.attempts[-1]
        message.response_code = latest.response_code
        message.duration.CopyFrom(_duration(latest.duration))
        message.error = latest.error
        if full:
            message.request_url = latest.request_url
            message.request_headers.update(latest.request_headers)
            message.response_headers.update(latest.response_headers)
            message.response_body = latest.response_body
    if full:
        message.payload = delivery.payload.decode("utf-8", errors="replace")
        message.attempts.extend(attempt_to_proto(attempt) for attempt in delivery.attempts)
    return message


def delivery_states(numbers: Iterable[int], field: str, found: Violations) -> tuple[DeliveryState, ...]:
    """The states of a repeated WebhookDeliveryState field; UNSPECIFIED and unknown numbers are violations."""
    return _enums_from_proto(_DELIVERY_STATE, "WEBHOOK_DELIVERY_STATE_", DeliveryState, numbers, field, found)


def finished_to_proto(attempt: FinishedAttempt, dropped: int) -> webhook_service_pb2.WatchWebhookDeliveriesResponse:
    """An attempt as a watcher gets it; `dropped`, the attempts the watcher missed just before it."""
    return webhook_service_pb2.WatchWebhookDeliveriesResponse(
        delivery=str(attempt.delivery),
        kind=attempt.kind,
        attempt_number=attempt.number,
        response_code=attempt.response_code,
        duration=_duration(attempt.duration),
        state=enum_to_proto(_DELIVERY_STATE, "WEBHOOK_DELIVERY_STATE_", attempt.state),
        error=attempt.error,
        finish_time=timestamp(attempt.finish_time),
        dropped_count=dropped,
    )
