"""The body of a ping, in each format a webhook can take."""

from __future__ import annotations

from typing import Any

from webhook_service.domain.model import WebhookFormat
from webhook_service.domain.payloads.teams import adaptive_card_message

PING_MESSAGE = "🍹 Just a friendly ping from Pulumi 🍹"


def ping_payload(fmt: WebhookFormat, timestamp: int) -> dict[str, Any]:
    if fmt == WebhookFormat.SLACK:
        return {"text": PING_MESSAGE}
    if fmt == WebhookFormat.MS_TEAMS:
        body = [{"type": "TextBlock", "text": PING_MESSAGE, "wrap": True}]
        return adaptive_card_message(body, [])
    return {"timestamp": timestamp, "message": PING_MESSAGE}
