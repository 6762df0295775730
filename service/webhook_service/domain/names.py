"""Resource names of the public contract: parents, webhooks, deliveries."""

from __future__ import annotations

import re
from dataclasses import dataclass

from webhook_service.domain.errors import InvalidArgument, Reason

_SEGMENT = r"[A-Za-z0-9._-]{1,100}"
_WEBHOOK_ID = r"[A-Za-z0-9._-]{1,32}"
_DELIVERY_ID = r"[A-Za-z0-9._-]{1,64}"

_PARENT = rf"organizations/(?P<org>{_SEGMENT})(?:/projects/(?P<project>{_SEGMENT})/stacks/(?P<stack>{_SEGMENT}))?"
_PARENT_RE = re.compile(_PARENT)
_WEBHOOK_RE = re.compile(rf"(?P<parent>{_PARENT})/webhooks/(?P<webhook>{_WEBHOOK_ID})")
_DELIVERY_RE = re.compile(rf"(?P<webhook>{_PARENT}/webhooks/{_WEBHOOK_ID})/deliveries/(?P<delivery>{_DELIVERY_ID})")
WEBHOOK_ID_RE = re.compile(_WEBHOOK_ID)
ORGANIZATION_RE = re.compile(_SEGMENT)
SEGMENT_RULE = "1-100 characters of [a-zA-Z0-9._-]"

PARENT_PATTERN = "organizations/{organization} or organizations/{organization}/projects/{project}/stacks/{stack}"


@dataclass(frozen=True)
class Parent:
    """An organization, or one stack of it when `project` and `stack` are set."""

    organization: str
    project: str = ""
    stack: str = ""

    @property
    def is_stack(self) -> bool:
        return bool(self.stack)

    def __str__(self) -> str:
        if self.is_stack:
            return f"organizations/{self.organization}/projects/{self.project}/stacks/{self.stack}"
        return f"organizations/{self.organization}"


@dataclass(frozen=True)
class WebhookName:
    parent: Parent
    webhook_id: str

    def __str__(self) -> str:
        return f"{self.parent}/webhooks/{self.webhook_id}"


@dataclass(frozen=True)
class DeliveryName:
    webhook: WebhookName
    delivery_id: str

    def __str__(self) -> str:
        return f"{self.webhook}/deliveries/{self.delivery_id}"


def _parent_of(match: re.Match[str]) -> Parent:
    return Parent(match["org"], match["project"] or "", match["stack"] or "")


def parse_parent(value: str, field: str) -> Parent:
    match = _PARENT_RE.fullmatch(value)
    if match is None:
        raise InvalidArgument(
            field, f"must look like {PARENT_PATTERN}, each segment {SEGMENT_RULE}", Reason.INVALID_NAME
        )
    return _parent_of(match)


def parse_stack(value: str, field: str) -> Parent:
    parent = parse_parent(value, field)
    if not parent.is_stack:
        raise InvalidArgument(
            field, "must look like organizations/{organization}/projects/{project}/stacks/{stack}", Reason.INVALID_NAME
        )
    return parent


def parse_webhook_name(value: str, field: str) -> WebhookName:
    match = _WEBHOOK_RE.fullmatch(value)
    if match is None:
        raise InvalidArgument(
            field,
            "must look like {parent}/webhooks/{webhook}, the webhook ID 1-32 characters of [a-zA-Z0-9._-]",
            Reason.INVALID_NAME,
        )
    return WebhookName(_parent_of(match), match["webhook"])


def parse_delivery_name(value: str, field: str) -> DeliveryName:
    match = _DELIVERY_RE.fullmatch(value)
    if match is None:
        raise InvalidArgument(
            field, "must look like {parent}/webhooks/{webhook}/deliveries/{delivery}", Reason.INVALID_NAME
        )
    return DeliveryName(parse_webhook_name(match["webhook"], field), match["delivery"])


def check_webhook_id(value: str, field: str) -> str:
    if WEBHOOK_ID_RE.fullmatch(value) is None:
        raise InvalidArgument(field, "must be 1-32 characters of [a-zA-Z0-9._-]", Reason.INVALID_NAME)
    return value


def parse_webhook_or_parent(value: str, field: str) -> WebhookName | Parent:
    """A webhook name, or the organization or stack whose webhooks a call covers."""
    if _WEBHOOK_RE.fullmatch(value):
        return parse_webhook_name(value, field)
    if _PARENT_RE.fullmatch(value):
        return parse_parent(value, field)
    raise InvalidArgument(
        field,
        f"must be a webhook name, {{parent}}/webhooks/{{webhook}}, or a parent: {PARENT_PATTERN}",
        Reason.INVALID_NAME,
    )


def covers(target: WebhookName | Parent, webhook: WebhookName) -> bool:
    """Whether `webhook` is `target`, or one of its webhooks: an organization's include its stacks'."""
    if isinstance(target, WebhookName):
        return webhook == target
    where = webhook.parent
    if target.is_stack:
        return where == target
    return where.organization == target.organization
