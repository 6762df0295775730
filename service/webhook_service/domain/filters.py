"""Which webhooks an event goes to: Pulumi's filters and groups."""

from __future__ import annotations

from webhook_service.domain.model import (
    DeploymentChange,
    Event,
    StackChange,
    UpdateChange,
    Webhook,
    WebhookFilter,
    WebhookGroup,
)

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


def matches(webhook: Webhook, event: Event) -> bool:
    """Whether `webhook` wants `event`; whether it is active and in scope is the caller's concern."""
    wanted = event_filter(event)
    if webhook.parent.is_stack and wanted in ORGANIZATION_ONLY:
        return False
    if not webhook.filters and not webhook.groups:
        return True
    return wanted in webhook.filters or any(wanted in GROUP_FILTERS[group] for group in webhook.groups)
