"""Sends that an operator asks for and waits on: ping and redeliver. They skip the queue."""

from __future__ import annotations

import secrets
import time

from webhook_service.dispatch.sender import Sender
from webhook_service.dispatch.settings import lease_for
from webhook_service.domain.model import Delivery, DeliveryState
from webhook_service.domain.names import DeliveryName, WebhookName
from webhook_service.domain.payloads import render_ping
from webhook_service.domain.retries import is_success
from webhook_service.store import deliveries, webhooks
from webhook_service.store.database import Executor
from webhook_service.store.deliveries import Claim, Outcome
from webhook_service.store.events import new_id


async def ping(store: Executor, sender: Sender, name: WebhookName) -> Delivery:
    webhook = await store.run(webhooks.get, name)
    payload = render_ping(webhook.format, int(time.time()))
    claim = await store.run(deliveries.create_direct, name, "ping", payload, new_id(), *_lease(sender))
    return await _send(store, sender, claim, on_failure=DeliveryState.FAILED, next_attempt_time=None)


async def redeliver(store: Executor, sender: Sender, name: DeliveryName) -> Delivery:
    """The stored payload again, same delivery ID, as one more attempt; a failure leaves the state as it was.

    The attempt holds a lease like a dispatcher's claim, so no dispatcher sends the delivery meanwhile.
    """
    claim, current = await store.run(deliveries.for_redelivery, name, *_lease(sender))
    due = current.next_attempt_time.timestamp() if current.next_attempt_time else None
    return await _send(store, sender, claim, on_failure=current.state, next_attempt_time=due)


async def _send(
    store: Executor, sender: Sender, claim: Claim, on_failure: DeliveryState, next_attempt_time: float | None
) -> Delivery:
    attempt = await sender.send(claim)
    succeeded = is_success(attempt.response_code)
    outcome = Outcome(
        claim=claim,
        attempt=attempt,
        state=DeliveryState.SUCCEEDED if succeeded else on_failure,
        next_attempt_time=None if succeeded else next_attempt_time,
        succeeded=succeeded,
        queued=False,
    )
    await store.run(deliveries.record, [outcome])
    return await store.run(deliveries.get_by_id, claim.row_id)


def _lease(sender: Sender) -> tuple[str, float]:
    """A lease of its own for one direct attempt."""
    return f"direct-{secrets.token_hex(6)}", lease_for(sender.timeout)
