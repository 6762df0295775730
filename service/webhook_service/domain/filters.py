"""Which webhooks an event goes to: Pulumi's filters and groups."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from webhook_service.domain.model import (
    DeploymentChange,
    Event,
    StackChange,
    UpdateChange,
    Webhook,
    WebhookFilter,
    WebhookGroup,
)
from webhook_service.domain.names import Parent

F = WebhookFilter

GROUP_FILTERS: dict[WebhookGroup, frozenset[WebhookFilter]] = {
    WebhookGroup.STACKS: frozenset(
        {
            F.STACK_CREATED,
            F.STACK_DELETED,
            F.PREVIEW_SUCCEEDED,
            F.PREVIEW_FAILED,
            F.UPDATE_SUCCEEDED,
            F.UPDATE_FAILED,
            F.DESTROY_SUCCEEDED,
            F.DESTROY_FAILED,
            F.REFRESH_SUCCEEDED,
            F.REFRESH_FAILED,
        }
    ),
    WebhookGroup.DEPLOYMENTS: frozenset(
        {F.DEPLOYMENT_QUEUED, F.DEPLOYMENT_STARTED, F.DEPLOYMENT_SUCCEEDED, F.DEPLOYMENT_FAILED}
    ),
}

# Stack lifecycle events exist only at organization level in Pulumi: a stack
# webhook is created after its stack and goes away with it.
ORGANIZATION_ONLY: frozenset[WebhookFilter] = frozenset({F.STACK_CREATED, F.STACK_DELETED})

_DEPLOYMENT_FILTERS = {
    "queued": F.DEPLOYMENT_QUEUED,
    "running": F.DEPLOYMENT_STARTED,
    "succeeded": F.DEPLOYMENT_SUCCEEDED,
    "failed": F.DEPLOYMENT_FAILED,
}


def event_filter(event: Event) -> WebhookFilter:
    """The one filter an event answers to."""
    change = event.change
    if isinstance(change, StackChange):
        return F(f"stack_{change.action}")
    if isinstance(change, UpdateChange):
        operation = "preview" if change.is_preview else change.kind
        return F(f"{operation}_{change.result}")
    assert isinstance(change, DeploymentChange)
    return _DEPLOYMENT_FILTERS[change.status]


class Mismatch(enum.StrEnum):
    """Why a webhook does not get an event, in order of precedence: when several apply, `match` names the
    first. The order is publishing's: which webhooks the event's scope takes in, which of those are
    active, then which of those want the event."""

    OTHER_STACK = "other_stack"
    INACTIVE = "inactive"
    ORGANIZATION_ONLY = "organization_only"
    FILTER = "filter"
    GROUP = "group"


@dataclass(frozen=True)
class Match:
    """Whether a webhook gets an event: `mismatch` None when it does; `detail` says why in words."""

    mismatch: Mismatch | None
    detail: str

    @property
    def matched(self) -> bool:
        return self.mismatch is None


def match(webhook: Webhook, event: Event) -> Match:
    """Whether `webhook` gets `event`, and why (not): the one rule publishing routes by, and the dry run
    explains. A webhook of another stack (or organization) never does; then an inactive one; then a stack
    webhook for an organization-only event; then its filters and groups decide, any one naming the
    event's filter being enough, and none at all meaning every event."""
    wanted = event_filter(event)
    where = webhook.parent
    if where.organization != event.organization_name or (where.is_stack and where != event.parent):
        about = f"stack {event.project}/{event.stack} of {event.organization_name}"
        return Match(Mismatch.OTHER_STACK, f"it belongs to {_scope(where)}; the event is about {about}")
    if not webhook.active:
        why = f" ({webhook.disabled_reason})" if webhook.disabled_reason else ""
        return Match(Mismatch.INACTIVE, f"it is inactive{why}")
    if where.is_stack and wanted in ORGANIZATION_ONLY:
        return Match(
            Mismatch.ORGANIZATION_ONLY,
            f"{wanted} events go to organization webhooks only, and this one belongs to {_scope(where)}",
        )
    if not webhook.filters and not webhook.groups:
        return Match(None, "it has no filters or groups, so it takes every event")
    if wanted in webhook.filters:
        return Match(None, f"its filter {wanted} names the event")
    covering = next((group for group in webhook.groups if wanted in GROUP_FILTERS[group]), None)
    if covering is not None:
        return Match(None, f"its group {covering} covers {wanted}")
    groups = f"its groups ({', '.join(webhook.groups)}) do not cover it"
    if not webhook.filters:
        return Match(Mismatch.GROUP, f"the event is {wanted}; {groups}")
    filters = f"none of its filters ({', '.join(webhook.filters)}) names it"
    return Match(Mismatch.FILTER, f"the event is {wanted}; {filters}" + (f", and {groups}" if webhook.groups else ""))


def _scope(parent: Parent) -> str:
    if parent.is_stack:
        return f"stack {parent.project}/{parent.stack}"
    return f"organization {parent.organization}"
