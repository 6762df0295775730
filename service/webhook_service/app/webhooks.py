"""Webhook registration: create, get, list, update, delete, ping, rotate the secret."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from webhook_service.app.requests import check_request_id
from webhook_service.dispatch import direct
from webhook_service.dispatch.sender import Sender
from webhook_service.domain import pages
from webhook_service.domain.access import Principal, check_operation, check_reach
from webhook_service.domain.errors import InvalidArgument, Reason, Violation, Violations
from webhook_service.domain.idempotency import create_key
from webhook_service.domain.model import Delivery, Webhook, WebhookFields
from webhook_service.domain.names import Parent, check_webhook_id, parse_parent, parse_webhook_name
from webhook_service.domain.webhooks import (
    SECRET_FIELDS,
    apply_update,
    check_etag,
    check_rotation,
    check_update_mask,
    new_secret,
    new_webhook_id,
    rotate,
    stored_fields,
    validate_webhook,
)
from webhook_service.store import webhooks
from webhook_service.store.database import Executor

log = logging.getLogger(__name__)


# The most stacks `Webhooks.stacks` lists: an organization's stacks are not bounded as its webhooks are.
MAX_STACKS_LISTED = 1000


@dataclass(frozen=True)
class WebhookPage:
    webhooks: list[Webhook]
    next_page_token: str


@dataclass(frozen=True)
class StackList:
    stacks: list[Parent]
    # More stacks have webhooks than were listed.
    truncated: bool


@dataclass(frozen=True)
class Rotated:
    """A rotated webhook, and the secret the service generated for it: empty when the caller named one."""

    webhook: Webhook
    secret: str = field(repr=False)


class Webhooks:
    def __init__(self, store: Executor, sender: Sender) -> None:
        self._store = store
        self._sender = sender

    async def create(
        self,
        caller: Principal,
        parent: str,
        webhook_id: str,
        fields: WebhookFields,
        request_id: str = "",
        rejected: Sequence[Violation] = (),
    ) -> Webhook:
        """A new webhook under `parent`; an empty `webhook_id` has one made up. A repeat of the same
        request under the same `request_id` returns the webhook the first one made. `rejected` are the
        violations the door found reading the request; they are reported with every other one."""
        check_operation(caller, "CreateWebhook")
        found = Violations(rejected)
        where = found.check(parse_parent, parent, "parent")
        if where is not None:
            check_reach(caller, where.organization)
        requested_id = (found.check(check_webhook_id, webhook_id, "webhook_id") or "") if webhook_id else ""
        webhook = found.check(
            validate_webhook,
            # Under a parent already refused, the rules that depend on it wait for a valid one.
            Webhook(
                parent=where or Parent(""),
                webhook_id=requested_id or new_webhook_id(),
                **dataclasses.asdict(fields),
            ),
            self._sender.allowed,
        )
        found.check(check_request_id, request_id)
        found.raise_any()
        assert webhook is not None
        key = create_key(request_id, webhook, requested_id)
        created = await self._store.admit(webhooks.create, webhook, key)
        log.info(
            "token %s created webhook %s",
            caller.token_id,
            created.name,
            extra={"token_id": caller.token_id, "webhook": created.name},
        )
        return created

    async def get(self, caller: Principal, name: str) -> Webhook:
        check_operation(caller, "GetWebhook")
        webhook = parse_webhook_name(name, "name")
        check_reach(caller, webhook.parent.organization)
        return await self._store.admit(webhooks.get, webhook)

    async def list(self, caller: Principal, parent: str, page_size: int = 0, page_token: str = "") -> WebhookPage:
        """Oldest first, `page_size` at a time (50 when 0)."""
        check_operation(caller, "ListWebhooks")
        found = Violations()
        where = found.check(parse_parent, parent, "parent")
        if where is not None:
            check_reach(caller, where.organization)
        size, cursor = pages.checked(found, page_size, page_token, str(where or parent))
        found.raise_any()
        assert where is not None
        listed, next_cursor = await self._store.admit(webhooks.list_page, where, cursor or 0, size)
        return WebhookPage(listed, "" if next_cursor is None else pages.encode_token(str(where), next_cursor))

    async def stacks(self, caller: Principal, organization: str) -> StackList:
        """The stacks of `organization` that have webhooks of their own, by project and stack name."""
        check_operation(caller, "ListWebhooks")
        where = parse_parent(f"organizations/{organization}", "organization")
        if where.is_stack:
            raise InvalidArgument("organization", "must be one organization's name, not a stack's", Reason.INVALID_NAME)
        check_reach(caller, where.organization)
        found = await self._store.admit(webhooks.stacks_with_webhooks, where.organization, MAX_STACKS_LISTED + 1)
        return StackList(found[:MAX_STACKS_LISTED], len(found) > MAX_STACKS_LISTED)

    async def update(
        self,
        caller: Principal,
        name: str,
        patch: WebhookFields,
        paths: Sequence[str],
        etag: str = "",
        rejected: Sequence[Violation] = (),
    ) -> Webhook:
        """Takes the fields `paths` names (`*`: every updatable one, an empty secret aside) from `patch`, if
        the webhook's etag is still `etag` (when given). `rejected` are the violations the door found
        reading the request; they are reported with every other one."""
        check_operation(caller, "UpdateWebhook")
        found = Violations()
        webhook = found.check(parse_webhook_name, name, "webhook.name")
        if webhook is not None:
            check_reach(caller, webhook.parent.organization)
        fields = found.check(check_update_mask, paths, patch)
        if webhook is None or fields is None:
            Violations([*found.found, *rejected]).raise_any()
        assert webhook is not None and fields is not None
        allowed = self._sender.allowed

        def change(current: Webhook) -> Webhook:
            check_etag(current, etag)
            checked = Violations(rejected)
            changed = checked.check(apply_update, current, patch, fields, allowed)
            checked.raise_any()
            assert changed is not None
            return changed

        updated = await self._store.admit(webhooks.update, webhook, stored_fields(fields), change)
        log.info(
            "token %s updated %s of webhook %s",
            caller.token_id,
            ",".join(fields) or "nothing",
            webhook,
            extra={"token_id": caller.token_id, "webhook": str(webhook)},
        )
        return updated

    async def delete(self, caller: Principal, name: str) -> None:
        check_operation(caller, "DeleteWebhook")
        webhook = parse_webhook_name(name, "name")
        check_reach(caller, webhook.parent.organization)
        await self._store.admit(webhooks.delete, webhook)
        log.info(
            "token %s deleted webhook %s",
            caller.token_id,
            webhook,
            extra={"token_id": caller.token_id, "webhook": str(webhook)},
        )

    async def ping(self, caller: Principal, name: str) -> Delivery:
        """Sent at once, not queued; the delivery with its one attempt."""
        check_operation(caller, "PingWebhook")
        webhook = parse_webhook_name(name, "name")
        check_reach(caller, webhook.parent.organization)
        delivery = await direct.ping(self._store, self._sender, webhook)
        log.info(
            "token %s pinged webhook %s",
            caller.token_id,
            webhook,
            extra={"token_id": caller.token_id, "webhook": str(webhook), "delivery": delivery.delivery_id},
        )
        return delivery

    async def rotate_secret(
        self,
        caller: Principal,
        name: str,
        secret: str = "",
        overlap: float | None = None,
        rejected: Sequence[Violation] = (),
    ) -> Rotated:
        """Signs with `secret` from now on (a generated one when empty, returned this once), while the secret
        it replaces keeps signing for `overlap` seconds (24 hours when None, at most 7 days). `rejected` are
        the violations the door found reading the request, reported with every other one."""
        check_operation(caller, "RotateWebhookSecret")
        found = Violations(rejected)
        webhook = found.check(parse_webhook_name, name, "name")
        if webhook is not None:
            check_reach(caller, webhook.parent.organization)
        seconds = found.check(check_rotation, secret, overlap)
        found.raise_any()
        assert webhook is not None and seconds is not None
        generated = "" if secret else new_secret()

        def change(current: Webhook) -> Webhook:
            return rotate(current, secret or generated, seconds, datetime.now(UTC))

        rotated = await self._store.admit(webhooks.update, webhook, SECRET_FIELDS, change)
        until = rotated.previous_secret_expire_time
        log.info(
            "token %s rotated the secret of webhook %s; %s",
            caller.token_id,
            webhook,
            f"the one it replaced signs until {until.isoformat(timespec='seconds')}" if until else "no other signs",
            extra={"webhook": str(webhook)},
        )
        return Rotated(rotated, generated)
