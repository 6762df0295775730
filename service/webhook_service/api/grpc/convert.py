"""Protobuf messages to domain values and back; unknown enum numbers are caller errors."""

from __future__ import annotations

import enum
from datetime import UTC, datetime
from typing import Any, TypeVar

from google.protobuf.descriptor import EnumDescriptor
from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp

from webhook_service.domain.errors import InvalidArgument
from webhook_service.domain.model import (
    Attempt,
    Delivery,
    DeploymentChange,
    Event,
    Identity,
    StackChange,
    UpdateChange,
    Webhook,
    WebhookFields,
    WebhookFilter,
    WebhookFormat,
    WebhookGroup,
)
from webhook_service.domain.names import parse_stack
from webhook_service.domain.webhooks import UPDATABLE_FIELDS
from webhooks.v1 import delivery_pb2, event_pb2, webhook_pb2

E = TypeVar("E", bound=enum.StrEnum)


def enum_from_proto(descriptor: EnumDescriptor, prefix: str, domain: type[E], number: int, field: str) -> E:
    """The domain value of a proto enum number; UNSPECIFIED and unknown numbers are refused."""
    value = descriptor.values_by_number.get(number)
    if value is None:
        raise InvalidArgument(field, f"{number} is not a known {descriptor.name}")
    if value.number == 0:
        raise InvalidArgument(field, f"{value.name} is not allowed; choose a value")
    return domain(value.name.removeprefix(prefix).lower())


def enum_to_proto(descriptor: EnumDescriptor, prefix: str, value: enum.StrEnum) -> Any:
    """The proto enum number of a domain value (typed Any: each message field has its own enum type)."""
    return descriptor.values_by_name[prefix + value.value.upper()].number


_FORMAT = webhook_pb2.DESCRIPTOR.enum_types_by_name["WebhookFormat"]
_FILTER = webhook_pb2.DESCRIPTOR.enum_types_by_name["WebhookFilter"]
_GROUP = webhook_pb2.DESCRIPTOR.enum_types_by_name["WebhookGroup"]


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
        raise InvalidArgument(field, "is not a valid timestamp (0001-01-01 to 9999-12-31)")
    return stamp.ToDatetime(tzinfo=UTC)


def seconds_from_proto(duration: Duration, field: str) -> float:
    """A Duration in seconds; the bounds of what it may be are the application's to check."""
    if duration.seconds * duration.nanos < 0 or not -1_000_000_000 < duration.nanos < 1_000_000_000:
        raise InvalidArgument(field, "is not a valid duration: seconds and nanos must share their sign")
    return duration.seconds + duration.nanos / 1e9


def webhook_format(number: int, field: str) -> WebhookFormat:
    if number == webhook_pb2.WEBHOOK_FORMAT_UNSPECIFIED:
        return WebhookFormat.RAW
    return enum_from_proto(_FORMAT, "WEBHOOK_FORMAT_", WebhookFormat, number, field)


def webhook_fields(message: webhook_pb2.Webhook) -> WebhookFields:
    """The fields the message sets; an absent `active` means true."""
    return WebhookFields(
        display_name=message.display_name,
        payload_url=message.payload_url,
        secret=message.secret,
        active=message.active if message.HasField("active") else True,
        format=webhook_format(message.format, "webhook.format"),
        filters=tuple(
            enum_from_proto(_FILTER, "WEBHOOK_FILTER_", WebhookFilter, number, "webhook.filters")
            for number in message.filters
        ),
        groups=tuple(
            enum_from_proto(_GROUP, "WEBHOOK_GROUP_", WebhookGroup, number, "webhook.groups")
            for number in message.groups
        ),
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
        raise InvalidArgument(field, f"must be at most {limit} characters")
    return value


def _identity(message: event_pb2.Identity, field: str) -> Identity:
    return Identity(
        name=_text(message.name, f"{field}.name"),
        github_login=_text(message.github_login, f"{field}.github_login"),
        avatar_url=_text(message.avatar_url, f"{field}.avatar_url", MAX_URL),
    )


def event_from_proto(message: event_pb2.Event) -> Event:
    """The domain event; exactly one payload, known enum values and bounded text are required."""
    stack = parse_stack(message.stack, "event.stack")
    which = message.WhichOneof("payload")
    change: StackChange | UpdateChange | DeploymentChange
    if which == "stack_event":
        change = StackChange(
            enum_from_proto(
                _STACK_ACTION, "STACK_ACTION_", _Words, message.stack_event.action, "event.stack_event.action"
            )
        )
    elif which == "update_event":
        update = message.update_event
        if len(update.resource_changes) > MAX_RESOURCE_KINDS:
            raise InvalidArgument("event.update_event.resource_changes", f"at most {MAX_RESOURCE_KINDS} entries")
        for operation, count in update.resource_changes.items():
            _text(operation, "event.update_event.resource_changes", 64)
            if count < 0:
                raise InvalidArgument("event.update_event.resource_changes", f"{operation!r} has a negative count")
        change = UpdateChange(
            update_url=_text(update.update_url, "event.update_event.update_url", MAX_URL),
            kind=enum_from_proto(_UPDATE_KIND, "UPDATE_KIND_", _Words, update.kind, "event.update_event.kind"),
            result=enum_from_proto(
                _UPDATE_RESULT, "UPDATE_RESULT_", _Words, update.result, "event.update_event.result"
            ),
            resource_changes=dict(update.resource_changes),
            is_preview=update.is_preview,
        )
    elif which == "deployment_event":
        deployment = message.deployment_event
        if deployment.version < 0:
            raise InvalidArgument("event.deployment_event.version", "must not be negative")
        change = DeploymentChange(
            deployment_url=_text(deployment.deployment_url, "event.deployment_event.deployment_url", MAX_URL),
            version=deployment.version,
            operation=_text(deployment.operation, "event.deployment_event.operation", 64),
            status=enum_from_proto(
                _DEPLOYMENT_STATUS, "DEPLOYMENT_STATUS_", _Words, deployment.status, "event.deployment_event.status"
            ),
        )
    else:
        raise InvalidArgument("event.payload", "one of stack_event, update_event or deployment_event is required")
    return Event(
        organization_name=stack.organization,
        project=stack.project,
        stack=stack.stack,
        user=_identity(message.user, "event.user"),
        organization=_identity(message.organization, "event.organization"),
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
        raise InvalidArgument(field, f"{number} is not a known {_DELIVERY_VIEW.name}")
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
