"""Protobuf messages to domain values and back; unknown enum numbers are caller errors."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any, TypeVar

from google.protobuf.descriptor import EnumDescriptor
from google.protobuf.timestamp_pb2 import Timestamp

from webhook_service.domain.errors import InvalidArgument
from webhook_service.domain.model import Webhook, WebhookFilter, WebhookFormat, WebhookGroup
from webhook_service.domain.names import Parent
from webhook_service.domain.webhooks import UPDATABLE_FIELDS
from webhooks.v1 import webhook_pb2

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


def webhook_format(number: int, field: str) -> WebhookFormat:
    if number == webhook_pb2.WEBHOOK_FORMAT_UNSPECIFIED:
        return WebhookFormat.RAW
    return enum_from_proto(_FORMAT, "WEBHOOK_FORMAT_", WebhookFormat, number, field)


def webhook_from_proto(parent: Parent, webhook_id: str, message: webhook_pb2.Webhook) -> Webhook:
    """The domain webhook the message describes; an absent `active` means true."""
    return Webhook(
        parent=parent,
        webhook_id=webhook_id,
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
    )


def fields_set(message: webhook_pb2.Webhook) -> tuple[str, ...]:
    """The updatable fields a caller set, for an update with an empty mask."""
    present = {descriptor.name for descriptor, _ in message.ListFields()}
    return tuple(field for field in UPDATABLE_FIELDS if field in present)
