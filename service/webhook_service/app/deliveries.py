"""The delivery log: list, get, redeliver, recover."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Collection, Sequence
from dataclasses import dataclass
from datetime import datetime

from webhook_service.app.requests import check_request_id
from webhook_service.app.watch import Mailbox, Watchers
from webhook_service.dispatch import direct
from webhook_service.dispatch.sender import Sender
from webhook_service.domain import pages
from webhook_service.domain.access import Principal, check_operation, check_reach
from webhook_service.domain.errors import Reason, Violation, Violations
from webhook_service.domain.idempotency import recover_key
from webhook_service.domain.model import Delivery, DeliveryState
from webhook_service.domain.names import (
    Parent,
    WebhookName,
    parse_delivery_name,
    parse_webhook_name,
    parse_webhook_or_parent,
)
from webhook_service.store import deliveries, webhooks
from webhook_service.store.database import Executor

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DeliveryPage:
    deliveries: list[Delivery]
    next_page_token: str


class Deliveries:
    def __init__(
        self, store: Executor, sender: Sender, first_delay: float, delivered: Callable[[], None], watchers: Watchers
    ) -> None:
        self._store = store
        self._sender = sender
        self._watchers = watchers
        self._first_delay = first_delay
        # Tells this process's dispatcher that deliveries are due, rather than letting it find them at its next poll.
        self._delivered = delivered

    async def list(
        self,
        caller: Principal,
        webhook: str,
        page_size: int = 0,
        page_token: str = "",
        full: bool = False,
        rejected: Sequence[Violation] = (),
    ) -> DeliveryPage:
        """Newest first. Short of `full`, without payloads and with only each latest attempt's outcome.
        `rejected` are the violations the door found reading the request, reported with every other one."""
        check_operation(caller, "ListWebhookDeliveries")
        found = Violations(rejected)
        name = found.check(parse_webhook_name, webhook, "parent")
        if name is not None:
            check_reach(caller, name.parent.organization)
        size, cursor = pages.checked(found, page_size, page_token, str(name or webhook))
        found.raise_any()
        assert name is not None
        listed, next_cursor = await self._store.admit(deliveries.list_page, name, cursor, size, full)
        return DeliveryPage(listed, "" if next_cursor is None else pages.encode_token(str(name), next_cursor))

    async def get(self, caller: Principal, name: str, rejected: Sequence[Violation] = ()) -> Delivery:
        """The delivery with every attempt. `rejected` are the violations the door found reading the
        request, reported with every other one."""
        check_operation(caller, "GetWebhookDelivery")
        found = Violations(rejected)
        delivery = found.check(parse_delivery_name, name, "name")
        if delivery is not None:
            check_reach(caller, delivery.webhook.parent.organization)
        found.raise_any()
        assert delivery is not None
        return await self._store.admit(deliveries.get, delivery)

    async def redeliver(self, caller: Principal, name: str) -> Delivery:
        """The stored payload again, same delivery ID, sent at once."""
        check_operation(caller, "RedeliverWebhookDelivery")
        delivery = parse_delivery_name(name, "name")
        check_reach(caller, delivery.webhook.parent.organization)
        again = await direct.redeliver(self._store, self._sender, delivery)
        log.info(
            "token %s redelivered %s",
            caller.token_id,
            delivery,
            extra={"token_id": caller.token_id, "webhook": str(delivery.webhook), "delivery": delivery.delivery_id},
        )
        return again

    async def recover(
        self,
        caller: Principal,
        parent: str,
        since: datetime | None,
        request_id: str = "",
        rejected: Sequence[Violation] = (),
    ) -> int:
        """Queues again the FAILED deliveries of a webhook, or of every active webhook of an organization
        (its stacks' included) or a stack, created at or after `since`, under their own IDs and with a
        fresh retry schedule; returns how many. A repeat under the same `request_id` returns the first
        answer and queues nothing new. `rejected` are the violations the door found reading the request,
        reported with every other one."""
        check_operation(caller, "RecoverWebhookDeliveries")
        found = Violations(rejected)
        target = found.check(parse_webhook_or_parent, parent, "parent")
        organization = "" if target is None else _organization(target)
        if target is not None:
            check_reach(caller, organization)
        if since is None and "since" not in {violation.field for violation in found.found}:
            found.add("since", "is required: deliveries created at or after it are recovered", Reason.FIELD_REQUIRED)
        found.check(check_request_id, request_id)
        found.raise_any()
        assert target is not None and since is not None
        key = recover_key(request_id, organization, str(target), since.timestamp())
        count = await self._store.admit(deliveries.recover, target, since.timestamp(), self._first_delay, key)
        if count:
            self._delivered()
        log.info(
            "token %s recovered %d failed deliveries of %s created since %s",
            caller.token_id,
            count,
            target,
            since.isoformat(),
            extra={"webhook": str(target)},
        )
        return count

    @contextlib.asynccontextmanager
    async def watch(
        self,
        caller: Principal,
        parent: str,
        states: Collection[DeliveryState] = (),
        rejected: Sequence[Violation] = (),
    ) -> AsyncIterator[Mailbox]:
        """Every attempt recorded from now on, by whichever process, for a webhook, or every webhook of an
        organization (its stacks' included) or a stack, that leaves its delivery in one of `states` (in any
        state when empty), while the block lasts; iterating the mailbox ends when the server shuts down.
        `rejected` are the violations the door found reading the request, reported with every other one."""
        check_operation(caller, "WatchWebhookDeliveries")
        found = Violations(rejected)
        target = found.check(parse_webhook_or_parent, parent, "parent")
        if target is not None:
            check_reach(caller, _organization(target))
        found.raise_any()
        assert target is not None
        if isinstance(target, WebhookName):
            await self._store.admit(webhooks.find_row, target)
        async with self._watchers.watch(target, states) as mailbox:
            yield mailbox


def _organization(target: WebhookName | Parent) -> str:
    return target.parent.organization if isinstance(target, WebhookName) else target.organization
