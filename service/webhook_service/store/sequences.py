"""The sequences of a webhook that keeps order per stack: which one each of its deliveries takes its turn in.

A delivery of such a webhook names its stack, `project/stack`; one without a stack (a ping) is a sequence of
its own, its delivery_id, which holds nothing back. Other webhooks' deliveries name none, so they stay out of
the index that claims walk, and cost nothing for a feature they do not use.

A webhook switched to ordered delivery is stored as NUMBERING until its queue, made while it was unordered,
is numbered: the next claim does it (`number_queues`), then stores it as ordered.
"""

from __future__ import annotations

from collections.abc import Iterable

import peewee

from webhook_service.domain.model import DeliveryState, WebhookOrdering
from webhook_service.store.models import DeliveryRow, EventRow, WebhookRow

NUMBERING = "numbering"


def ordering_of(stored: str) -> WebhookOrdering:
    """The ordering a webhook's stored value stands for; raises ValueError on one this release does not know."""
    return WebhookOrdering.PER_STACK if stored == NUMBERING else WebhookOrdering(stored)


def of_stack(project: str, stack: str) -> str:
    return f"{project}/{stack}"


def assigned() -> peewee.Node:
    """A delivery's sequence, for an UPDATE of deliveries: the one it names, else its event's stack, else its own."""
    stack = EventRow.select(EventRow.project.concat("/").concat(EventRow.stack)).where(EventRow.id == DeliveryRow.event)
    node: peewee.Node = peewee.fn.COALESCE(peewee.fn.NULLIF(DeliveryRow.sequence, ""), stack, DeliveryRow.delivery_id)
    return node


def number_queues(webhook_rows: Iterable[int]) -> None:
    """Stores these NUMBERING webhooks as ordered, and names the sequences of the pending deliveries they
    queued while unordered, in flight ones included. The webhooks' rows are written before the deliveries',
    as recording an attempt and deleting a webhook lock them, so none of them wait on each other in turn."""
    for row in sorted(webhook_rows):
        WebhookRow.update(ordering=WebhookOrdering.PER_STACK.value).where(
            (WebhookRow.id == row) & (WebhookRow.ordering == NUMBERING)
        ).execute()
        DeliveryRow.update(sequence=assigned()).where(
            (DeliveryRow.webhook == row)
            & (DeliveryRow.state == DeliveryState.PENDING.value)
            & (DeliveryRow.sequence == "")
        ).execute()
