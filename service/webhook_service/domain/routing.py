"""Which webhooks get an event, and the body each one is sent."""

from __future__ import annotations

from webhook_service.domain.filters import matches
from webhook_service.domain.model import Event, Webhook, WebhookFormat
from webhook_service.domain.payloads import render_event


def route(event: Event, webhooks: list[Webhook]) -> list[tuple[Webhook, bytes]]:
    """Each matching webhook with its body, rendered once per format."""
    bodies: dict[WebhookFormat, bytes] = {}
    routed = []
    for webhook in webhooks:
        if matches(webhook, event):
            if webhook.format not in bodies:
                bodies[webhook.format] = render_event(webhook.format, event)
            routed.append((webhook, bodies[webhook.format]))
    return routed
