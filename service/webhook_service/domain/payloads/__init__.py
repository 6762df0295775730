"""Request bodies for each webhook format, and the Pulumi-Webhook-Kind of an event."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from webhook_service.domain.model import (
    DeploymentChange,
    Event,
    StackChange,
    WebhookFormat,
)
from webhook_service.domain.payloads.ping import PING_MESSAGE, ping_payload
from webhook_service.domain.payloads.raw import raw_payload
from webhook_service.domain.payloads.slack import slack_payload
from webhook_service.domain.payloads.teams import teams_payload

__all__ = [
    "PING_MESSAGE",
    "event_kind",
    "ping_payload",
    "raw_payload",
    "render_event",
    "render_ping",
    "slack_payload",
    "teams_payload",
]

_RENDERERS: dict[WebhookFormat, Callable[[Event], dict[str, Any]]] = {
    WebhookFormat.RAW: raw_payload,
    WebhookFormat.SLACK: slack_payload,
    WebhookFormat.MS_TEAMS: teams_payload,
}


def _encode(payload: dict[str, Any]) -> bytes:
    # These bytes are both sent and signed, so they are produced in exactly one place.
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def render_event(fmt: WebhookFormat, event: Event) -> bytes:
    return _encode(_RENDERERS[fmt](event))


def render_ping(fmt: WebhookFormat, timestamp: int) -> bytes:
    return _encode(ping_payload(fmt, timestamp))


def event_kind(event: Event) -> str:
    change = event.change
    if isinstance(change, StackChange):
        return "stack"
    if isinstance(change, DeploymentChange):
        return "deployment"
    return "stack_preview" if change.is_preview else "stack_update"
