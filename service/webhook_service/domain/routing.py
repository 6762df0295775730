"""Which webhooks get an event, and the body each one is sent."""

from __future__ import annotations

from webhook_service.domain.filters import match
from webhook_service.domain.model import Event, Webhook, WebhookFormat
from webhook_service.domain.payloads import render_event


def route(event: Event, webhooks: list[Webhook]) -> list[tuple[Webhook, bytes]]:
    """The webhooks `match` gives the event to, each with its body, rendered once per format. The store
    offers only the active webhooks of the event's scope; `match` holds the whole rule all the same, so
    the dry run, which is offered every webhook of the organization, explains by the same code."""
    bodies: dict[WebhookFormat, bytes] = {}
    routed = []
    for webhook in webhooks:
        if match(webhook, event).matched:
            if webhook.format not in bodies:
                bodies[webhook.format] = render_event(webhook.format, event)
            routed.append((webhook, bodies[webhook.format]))
    return routed
