"""What a request_id stands for: one request, in the organization the request acts on."""

from __future__ import annotations

import dataclasses
import functools
import json
from dataclasses import dataclass, field
from typing import Any

from webhook_service.domain.model import Event, Webhook, WebhookOrdering


@dataclass(frozen=True)
class RequestKey:
    """A caller's request_id, scoped to the organization the request acts on, and the request it names.

    `request` is the request in canonical form: equal requests give equal bytes. It holds the webhook secret of
    a create, so it stays out of repr; the store keeps only a keyed digest of it.
    """

    organization: str
    request_id: str
    request: bytes = field(repr=False)


# Set by rotations and the store, never by a create: left out of a create's canonical form, which then reads
# as it did before rotations, etags and health existed, so a request_id remembered by an earlier release
# still matches its repeat.
_NOT_ASKED_FOR = frozenset({"previous_secret", "previous_secret_expire_time", "etag", "health"})


def canonical(value: Any, leave_out: frozenset[str] = frozenset()) -> bytes:
    """A dataclass value as JSON with sorted keys and no spacing, without the fields in `leave_out`: the
    bytes `dataclasses.asdict` gave earlier releases, which stored their digests, without its deep copies."""
    fields = {key: item for key, item in _plain(value).items() if key not in leave_out}
    return json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


# Values that stand for themselves in the canonical form; checked first, as most fields are these.
_AS_THEY_ARE = frozenset({str, int, float, bool, type(None)})


@functools.cache
def _field_names(kind: type) -> tuple[str, ...] | None:
    """A dataclass type's field names, None for any other type."""
    if not dataclasses.is_dataclass(kind):
        return None
    return tuple(field.name for field in dataclasses.fields(kind))


def _plain(value: Any) -> Any:
    kind: type = type(value)
    if kind in _AS_THEY_ARE:
        return value
    names = _field_names(kind)
    if names is not None:
        return {name: _plain(getattr(value, name)) for name in names}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    return value


def create_key(request_id: str, webhook: Webhook, requested_id: str) -> RequestKey | None:
    """The key of a CreateWebhook, None without a request_id.

    `requested_id` is the webhook_id the caller gave, empty when the service draws one: a repeat without one
    draws another, and is the same request all the same.
    """
    if not request_id:
        return None
    asked = dataclasses.replace(webhook, webhook_id=requested_id)
    # Unordered, a create reads as it did before ordering existed, for the same reason.
    leave_out = _NOT_ASKED_FOR | ({"ordering"} if webhook.ordering is WebhookOrdering.UNORDERED else set())
    return RequestKey(webhook.parent.organization, request_id, canonical(asked, leave_out))


def publish_key(request_id: str, event: Event) -> RequestKey | None:
    """The key of a PublishEvent, None without a request_id."""
    if not request_id:
        return None
    return RequestKey(event.organization_name, request_id, canonical(event))


def recover_key(request_id: str, organization: str, parent: str, since: float) -> RequestKey | None:
    """The key of a RecoverWebhookDeliveries, None without a request_id."""
    if not request_id:
        return None
    request = json.dumps({"parent": parent, "since": since}, sort_keys=True, separators=(",", ":")).encode()
    return RequestKey(organization, request_id, request)
