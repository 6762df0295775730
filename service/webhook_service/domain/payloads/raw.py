"""Pulumi's generic JSON payloads, key for key and in Pulumi's key order."""

from __future__ import annotations

from typing import Any

from webhook_service.domain.model import DeploymentChange, Event, Identity, StackChange


def _identity(identity: Identity) -> dict[str, str]:
    return {
        "name": identity.name,
        "githubLogin": identity.github_login,
        "avatarUrl": identity.avatar_url,
    }


def raw_payload(event: Event) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "user": _identity(event.user),
        "organization": _identity(event.organization),
    }
    change = event.change
    if isinstance(change, StackChange):
        # Pulumi puts `action` before the stack reference for this kind only.
        payload["action"] = change.action
        payload["projectName"] = event.project
        payload["stackName"] = event.stack
    elif isinstance(change, DeploymentChange):
        payload["projectName"] = event.project
        payload["stackName"] = event.stack
        payload["deploymentUrl"] = change.deployment_url
        payload["version"] = change.version
        payload["operation"] = change.operation
        payload["status"] = change.status
    else:
        payload["projectName"] = event.project
        payload["stackName"] = event.stack
        payload["updateUrl"] = change.update_url
        payload["kind"] = change.kind
        payload["result"] = change.result
        # Copied so the caller's event stays untouched by whoever mutates the payload.
        payload["resourceChanges"] = dict(change.resource_changes)
        payload["isPreview"] = change.is_preview
    return payload
