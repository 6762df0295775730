"""What the pages show, made from the application's values: the URLs of the console, words for a person,
and webhooks as the templates get them, without their secret."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import quote, urlsplit

from webhook_service.domain.filters import ORGANIZATION_ONLY
from webhook_service.domain.model import Delivery, Webhook, WebhookFilter, WebhookFormat, WebhookGroup
from webhook_service.domain.names import Parent, WebhookName, parse_delivery_name

FORMAT_LABELS = {
    WebhookFormat.SLACK: "Slack",
    WebhookFormat.MS_TEAMS: "Microsoft Teams",
    WebhookFormat.RAW: "Webhook",
}
GROUP_LABELS = {
    WebhookGroup.STACKS: "Every stack event (the stacks group)",
    WebhookGroup.DEPLOYMENTS: "Every deployment event (the deployments group)",
}


def scope_url(parent: Parent) -> str:
    """The console's path of an organization or a stack."""
    path = f"/orgs/{quote(parent.organization, safe='')}"
    if parent.is_stack:
        path += f"/{quote(parent.project, safe='')}/{quote(parent.stack, safe='')}"
    return path


def webhooks_url(parent: Parent) -> str:
    return f"{scope_url(parent)}/webhooks"


def organization_url(organization: str) -> str:
    return webhooks_url(Parent(organization))


def webhook_url(name: WebhookName) -> str:
    return f"{webhooks_url(name.parent)}/{quote(name.webhook_id, safe='')}"


def scope_title(parent: Parent) -> str:
    return f"{parent.organization}/{parent.project}/{parent.stack}" if parent.is_stack else parent.organization


def filter_label(wanted: WebhookFilter) -> str:
    return wanted.value.replace("_", " ").capitalize()


@dataclass(frozen=True)
class FilterKind:
    """One group of the filters menu: the filters of one kind of event."""

    title: str
    filters: tuple[WebhookFilter, ...]
    organization_only: bool


def filter_menu(parent: Parent) -> list[FilterKind]:
    """The filters a webhook of `parent` may pick, by kind (stack, preview, update, destroy, refresh,
    deployment); a stack's webhooks are not offered the organization-only ones."""
    kinds: dict[str, list[WebhookFilter]] = {}
    for wanted in WebhookFilter:
        if not (parent.is_stack and wanted in ORGANIZATION_ONLY):
            kinds.setdefault(wanted.value.split("_")[0], []).append(wanted)
    return [
        FilterKind(kind.capitalize(), tuple(filters), all(f in ORGANIZATION_ONLY for f in filters))
        for kind, filters in kinds.items()
    ]


def when(moment: datetime | None) -> str:
    return "" if moment is None else moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def milliseconds(seconds: float) -> str:
    return f"{seconds * 1000:,.0f} ms"


@dataclass(frozen=True)
class DeliveryLine:
    """A delivery as the log lists it: its latest attempt's outcome."""

    url: str
    delivery_id: str
    time: str
    kind: str
    state: str
    response_code: int | None
    duration: str
    attempts: int
    error: str

    @classmethod
    def of(cls, delivery: Delivery) -> DeliveryLine:
        latest = delivery.attempts[-1] if delivery.attempts else None
        return cls(
            url=delivery_url(delivery),
            delivery_id=delivery.delivery_id,
            time=when(delivery.create_time),
            kind=delivery.kind,
            state=delivery.state.value,
            response_code=latest.response_code if latest and latest.response_code else None,
            duration=milliseconds(latest.duration) if latest else "",
            attempts=delivery.attempt_count,
            error=latest.error if latest else "",
        )


def delivery_url(delivery: Delivery) -> str:
    name = parse_delivery_name(delivery.name, "name")
    return f"{webhook_url(name.webhook)}/deliveries/{quote(name.delivery_id, safe='')}"


@dataclass(frozen=True)
class WebhookView:
    """A webhook for the pages. It has no secret to render, only whether there is one."""

    name: WebhookName
    url: str
    display_name: str
    payload_url: str
    payload_host: str
    format: WebhookFormat
    format_label: str
    filters: tuple[WebhookFilter, ...]
    groups: tuple[WebhookGroup, ...]
    events: list[str]
    active: bool
    disabled_reason: str
    has_secret: bool
    created: str
    updated: str
    last_delivery: DeliveryLine | None = None

    @classmethod
    def of(cls, webhook: Webhook, last_delivery: Delivery | None = None) -> WebhookView:
        name = WebhookName(webhook.parent, webhook.webhook_id)
        events = [filter_label(f) for f in webhook.filters] + [f"{group.value} group" for group in webhook.groups]
        return cls(
            name=name,
            url=webhook_url(name),
            display_name=webhook.display_name,
            payload_url=webhook.payload_url,
            payload_host=_host(webhook.payload_url),
            format=webhook.format,
            format_label=FORMAT_LABELS[webhook.format],
            filters=webhook.filters,
            groups=webhook.groups,
            events=events or ["All events"],
            active=webhook.active,
            disabled_reason=webhook.disabled_reason,
            has_secret=bool(webhook.secret),
            created=when(webhook.create_time),
            updated=when(webhook.update_time),
            last_delivery=DeliveryLine.of(last_delivery) if last_delivery else None,
        )


def _host(url: str) -> str:
    """The host and port, without any user name or password the URL carries."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return ""
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    return f"{host}:{port}" if port else host


def pretty_payload(payload: bytes) -> str:
    """JSON indented for reading; anything else as text."""
    text = payload.decode("utf-8", errors="replace")
    try:
        return json.dumps(json.loads(text), indent=2, ensure_ascii=False)
    except ValueError:
        return text
