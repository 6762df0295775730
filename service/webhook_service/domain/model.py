"""The values the service reasons about, independent of protobuf and SQL."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime

from webhook_service.domain.names import DeliveryName, Parent


class WebhookFormat(enum.StrEnum):
    RAW = "raw"
    SLACK = "slack"
    MS_TEAMS = "ms_teams"


class WebhookFilter(enum.StrEnum):
    """Pulumi's filter names, exactly as its REST API spells them."""

    STACK_CREATED = "stack_created"
    STACK_DELETED = "stack_deleted"
    PREVIEW_SUCCEEDED = "preview_succeeded"
    PREVIEW_FAILED = "preview_failed"
    UPDATE_SUCCEEDED = "update_succeeded"
    UPDATE_FAILED = "update_failed"
    DESTROY_SUCCEEDED = "destroy_succeeded"
    DESTROY_FAILED = "destroy_failed"
    REFRESH_SUCCEEDED = "refresh_succeeded"
    REFRESH_FAILED = "refresh_failed"
    DEPLOYMENT_QUEUED = "deployment_queued"
    DEPLOYMENT_STARTED = "deployment_started"
    DEPLOYMENT_SUCCEEDED = "deployment_succeeded"
    DEPLOYMENT_FAILED = "deployment_failed"


class WebhookGroup(enum.StrEnum):
    STACKS = "stacks"
    DEPLOYMENTS = "deployments"


class WebhookOrdering(enum.StrEnum):
    """In which order a webhook's deliveries go out."""

    # Each as soon as it can, beside the others.
    UNORDERED = "unordered"
    # A stack's deliveries one at a time, in the order their events were published.
    PER_STACK = "per_stack"


class DeliveryState(enum.StrEnum):
    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


@dataclass(frozen=True)
class WebhookFields:
    """What a caller sets on a webhook, whichever door it came in by; the service adds the rest."""

    display_name: str = ""
    payload_url: str = ""
    secret: str = field(default="", repr=False)
    active: bool = True
    format: WebhookFormat = WebhookFormat.RAW
    filters: tuple[WebhookFilter, ...] = ()
    groups: tuple[WebhookGroup, ...] = ()
    ordering: WebhookOrdering = WebhookOrdering.UNORDERED


@dataclass(frozen=True)
class WebhookHealth:
    """How a webhook's queued deliveries fare, as the store keeps track; pings and redeliveries, which an
    operator asks for and watches, are not counted."""

    last_success_time: datetime | None = None
    # When attempts began failing without a success since; None while the last one succeeded.
    failing_since: datetime | None = None
    pending_deliveries: int = 0
    succeeded_attempts_24h: int = 0
    failed_attempts_24h: int = 0


@dataclass(frozen=True)
class Webhook:
    """A registered webhook as the service keeps it; `secret` never leaves the service."""

    parent: Parent
    webhook_id: str
    display_name: str
    payload_url: str
    secret: str = ""
    active: bool = True
    format: WebhookFormat = WebhookFormat.RAW
    filters: tuple[WebhookFilter, ...] = ()
    groups: tuple[WebhookGroup, ...] = ()
    disabled_reason: str = ""
    create_time: datetime | None = None
    update_time: datetime | None = None
    # The secret a rotation replaced, still signing until `previous_secret_expire_time`; empty otherwise.
    previous_secret: str = field(default="", repr=False)
    previous_secret_expire_time: datetime | None = None
    # Changes with every change a caller can see (AIP-154); set by the store.
    etag: str = ""
    ordering: WebhookOrdering = WebhookOrdering.UNORDERED
    # Read with the webhook where a caller gets to see it; it changes without changing the etag.
    health: WebhookHealth = WebhookHealth()

    @property
    def name(self) -> str:
        return f"{self.parent}/webhooks/{self.webhook_id}"


@dataclass(frozen=True)
class Identity:
    name: str = ""
    github_login: str = ""
    avatar_url: str = ""


@dataclass(frozen=True)
class StackChange:
    """A stack was created or deleted; `action` is `created` or `deleted`."""

    action: str


@dataclass(frozen=True)
class UpdateChange:
    """An update, refresh or destroy ended, or a preview of one.

    `kind` is `update`, `refresh` or `destroy`; `result` is `succeeded` or `failed`.
    """

    update_url: str
    kind: str
    result: str
    resource_changes: dict[str, int] = field(default_factory=dict)
    is_preview: bool = False


@dataclass(frozen=True)
class DeploymentChange:
    """A deployment changed state; `status` is `queued`, `running`, `succeeded` or `failed`."""

    deployment_url: str
    version: int
    operation: str
    status: str


@dataclass(frozen=True)
class Event:
    organization_name: str
    project: str
    stack: str
    user: Identity
    organization: Identity
    change: StackChange | UpdateChange | DeploymentChange

    @property
    def parent(self) -> Parent:
        """The stack the event is about, as the parent its stack webhooks hang off."""
        return Parent(self.organization_name, self.project, self.stack)


@dataclass(frozen=True)
class Attempt:
    """One HTTP request of a delivery. `response_code` is 0 when no response came, and `error` says why."""

    number: int
    start_time: datetime
    request_url: str
    request_headers: dict[str, str]
    response_code: int = 0
    response_headers: dict[str, str] = field(default_factory=dict)
    response_body: str = ""
    duration: float = 0.0
    error: str = ""


@dataclass(frozen=True)
class Delivery:
    """One payload for one webhook; `delivery_id` is the Pulumi-Webhook-ID on every attempt."""

    webhook: str
    delivery_id: str
    event_id: str
    kind: str
    payload: bytes
    state: DeliveryState
    attempt_count: int
    next_attempt_time: datetime | None
    create_time: datetime
    attempts: tuple[Attempt, ...] = ()

    @property
    def name(self) -> str:
        return f"{self.webhook}/deliveries/{self.delivery_id}"


@dataclass(frozen=True)
class FinishedAttempt:
    """An attempt as watchers are told of it, once recorded: `state` is what it left its delivery in."""

    delivery: DeliveryName
    kind: str
    number: int
    response_code: int
    duration: float
    state: DeliveryState
    error: str
    finish_time: datetime
