"""The payload examples of Pulumi's webhook page, verbatim, and the events that should produce them."""

from __future__ import annotations

from typing import Any

from webhook_service.domain.model import Event, Identity, UpdateChange
from webhooks.v1 import event_pb2

PULUMI_USER = {"name": "Morty Smith", "githubLogin": "morty", "avatarUrl": "https://crazy-adventures.net/morty.png"}
PULUMI_ORG = {
    "name": "Crazy Adventures",
    "githubLogin": "crazy-adventures",
    "avatarUrl": "https://crazy-adventures.net/logo.png",
}
STACK = "organizations/crazy-adventures/projects/website/stacks/website-prod"
BASE = "https://app.pulumi.com/crazy-adventures/website/website-prod"

STACK_CREATION: dict[str, Any] = {
    "user": PULUMI_USER,
    "organization": PULUMI_ORG,
    "action": "created",
    "projectName": "website",
    "stackName": "website-prod",
}
STACK_UPDATE: dict[str, Any] = {
    "user": PULUMI_USER,
    "organization": PULUMI_ORG,
    "projectName": "website",
    "stackName": "website-prod",
    "updateUrl": f"{BASE}/updates/42",
    "kind": "refresh",
    "result": "succeeded",
    "resourceChanges": {"update": 3, "delete": 1, "update-replace": 2},
    "isPreview": False,
}
STACK_PREVIEW: dict[str, Any] = {
    "user": PULUMI_USER,
    "organization": PULUMI_ORG,
    "projectName": "website",
    "stackName": "website-prod",
    "updateUrl": f"{BASE}/previews/11bf162b-d9d5-4715-8f88-20dcd0e0b167",
    "kind": "update",
    "result": "failed",
    "resourceChanges": {"update": 3, "delete": 1, "update-replace": 2},
    "isPreview": True,
}
DEPLOYMENT: dict[str, Any] = {
    "user": PULUMI_USER,
    "organization": PULUMI_ORG,
    "projectName": "website",
    "stackName": "website-prod",
    "deploymentUrl": f"{BASE}/deployments/127",
    "version": 127,
    "operation": "update",
    "status": "running",
}


def identity(fields: dict[str, str]) -> event_pb2.Identity:
    return event_pb2.Identity(name=fields["name"], github_login=fields["githubLogin"], avatar_url=fields["avatarUrl"])


def event(stack: str = STACK, **payload: Any) -> event_pb2.Event:
    return event_pb2.Event(stack=stack, user=identity(PULUMI_USER), organization=identity(PULUMI_ORG), **payload)


def stack_event(action: int = event_pb2.STACK_ACTION_CREATED, stack: str = STACK) -> event_pb2.Event:
    return event(stack, stack_event=event_pb2.StackEvent(action=action))


def update_event(
    kind: int = event_pb2.UPDATE_KIND_REFRESH,
    result: int = event_pb2.UPDATE_RESULT_SUCCEEDED,
    is_preview: bool = False,
    stack: str = STACK,
    url: str = f"{BASE}/updates/42",
) -> event_pb2.Event:
    return event(
        stack,
        update_event=event_pb2.UpdateEvent(
            update_url=url,
            kind=kind,
            result=result,
            resource_changes={"update": 3, "delete": 1, "update-replace": 2},
            is_preview=is_preview,
        ),
    )


def deployment_event(status: int = event_pb2.DEPLOYMENT_STATUS_RUNNING, stack: str = STACK) -> event_pb2.Event:
    return event(
        stack,
        deployment_event=event_pb2.DeploymentEvent(
            deployment_url=f"{BASE}/deployments/127", version=127, operation="update", status=status
        ),
    )


def stack_update(organization: str, serial: int) -> Event:
    """The `serial`th succeeded update of `organization`'s website/prod stack, as the store publishes it."""
    return Event(
        organization_name=organization,
        project="website",
        stack="prod",
        user=Identity("User", "user", ""),
        organization=Identity(organization, organization, ""),
        change=UpdateChange(f"{BASE}/updates/{serial}", "update", "succeeded", {}),
    )
