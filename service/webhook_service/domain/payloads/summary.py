"""What a chat message says about an event, shared by the Slack and Teams renderers."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from urllib.parse import urlsplit

from webhook_service.domain.model import DeploymentChange, Event, Identity, StackChange


class Outcome(enum.Enum):
    SUCCESS = "success"
    FAILURE = "failure"
    # Created, deleted, queued, running: nothing went right or wrong yet.
    NEUTRAL = "neutral"


@dataclass(frozen=True)
class Summary:
    title: str
    facts: tuple[tuple[str, str], ...]
    outcome: Outcome
    link: str = ""
    link_label: str = ""


def _outcome(word: str) -> Outcome:
    if word == "succeeded":
        return Outcome.SUCCESS
    if word == "failed":
        return Outcome.FAILURE
    return Outcome.NEUTRAL


def _user(user: Identity) -> str:
    if user.name and user.github_login and user.name != user.github_login:
        return f"{user.name} ({user.github_login})"
    return user.name or user.github_login or "unknown"


def _web_link(url: str) -> str:
    """`url` when chat clients may show it as a link: http(s) with a host. The URLs come from the publisher,
    and a javascript: or file: link in a message is somebody's click away."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return ""
    return url if parts.scheme.lower() in {"http", "https"} and parts.hostname else ""


def format_resource_changes(changes: dict[str, int]) -> str:
    return ", ".join(f"{op}: {count}" for op, count in changes.items()) or "none"


def summarize(event: Event) -> Summary:
    org = event.organization.github_login or event.organization.name or event.organization_name
    stack = f"{org}/{event.project}/{event.stack}"
    change = event.change
    extra: tuple[tuple[str, str], ...] = ()
    link = label = ""
    if isinstance(change, StackChange):
        operation, result = "stack", change.action
    elif isinstance(change, DeploymentChange):
        operation, result = (
            f"deployment #{change.version} ({change.operation})",
            change.status,
        )
        link, label = change.deployment_url, "View deployment"
    else:
        if change.is_preview:
            # A plain `pulumi preview` previews an update; say "preview" as Pulumi's UI does.
            operation = "preview" if change.kind == "update" else f"{change.kind} preview"
            label = "View preview"
        else:
            operation, label = change.kind, f"View {change.kind}"
        result, link = change.result, change.update_url
        extra = (("Resource changes", format_resource_changes(change.resource_changes)),)
    facts = (
        ("Stack", stack),
        ("Operation", operation),
        ("Result", result),
        ("User", _user(event.user)),
        *extra,
    )
    link = _web_link(link)
    return Summary(
        title=f"{stack} {operation} {result}.",
        facts=facts,
        outcome=_outcome(result),
        link=link,
        link_label=label if link else "",
    )
