"""A small hand-written client for the webhook delivery service, over the generated stubs; the service's
message and enum types are re-exported here, so callers import from one place.

from webhooks_client import Client, ListWebhooksRequest

with Client("127.0.0.1:50051", token=token) as client:
    hooks = client.webhooks.ListWebhooks(ListWebhooksRequest(parent="organizations/acme"))
"""

from google.protobuf.field_mask_pb2 import FieldMask

from webhooks.v1.delivery_pb2 import (
    WebhookDelivery,
    WebhookDeliveryAttempt,
    WebhookDeliveryState,
    WebhookDeliveryView,
)
from webhooks.v1.event_pb2 import (
    DeploymentEvent,
    DeploymentStatus,
    Event,
    Identity,
    StackAction,
    StackEvent,
    UpdateEvent,
    UpdateKind,
    UpdateResult,
)
from webhooks.v1.event_service_pb2 import (
    MismatchReason,
    PublishEventRequest,
    PublishEventResponse,
    TestEventMatchRequest,
    TestEventMatchResponse,
    WebhookMatch,
)
from webhooks.v1.webhook_pb2 import Ordering, Webhook, WebhookFilter, WebhookFormat, WebhookGroup
from webhooks.v1.webhook_service_pb2 import (
    CreateWebhookRequest,
    DeleteWebhookRequest,
    GetWebhookDeliveryRequest,
    GetWebhookRequest,
    ListWebhookDeliveriesRequest,
    ListWebhookDeliveriesResponse,
    ListWebhooksRequest,
    ListWebhooksResponse,
    PingWebhookRequest,
    RecoverWebhookDeliveriesRequest,
    RecoverWebhookDeliveriesResponse,
    RedeliverWebhookDeliveryRequest,
    RotateWebhookSecretRequest,
    RotateWebhookSecretResponse,
    UpdateWebhookRequest,
    WatchWebhookDeliveriesRequest,
    WatchWebhookDeliveriesResponse,
)
from webhooks_client.client import DEFAULT_ATTEMPTS, DEFAULT_TIMEOUT, AsyncClient, Client, service_config
from webhooks_client.errors import (
    ERROR_DOMAIN,
    error_info,
    error_reason,
    field_violations,
    retry_delay,
    violations,
)
from webhooks_client.signatures import verify_signature

__all__ = [
    "DEFAULT_ATTEMPTS",
    "DEFAULT_TIMEOUT",
    "ERROR_DOMAIN",
    "AsyncClient",
    "Client",
    "CreateWebhookRequest",
    "DeleteWebhookRequest",
    "DeploymentEvent",
    "DeploymentStatus",
    "Event",
    "FieldMask",
    "GetWebhookDeliveryRequest",
    "GetWebhookRequest",
    "Identity",
    "ListWebhookDeliveriesRequest",
    "ListWebhookDeliveriesResponse",
    "ListWebhooksRequest",
    "ListWebhooksResponse",
    "MismatchReason",
    "Ordering",
    "PingWebhookRequest",
    "PublishEventRequest",
    "PublishEventResponse",
    "RecoverWebhookDeliveriesRequest",
    "RecoverWebhookDeliveriesResponse",
    "RedeliverWebhookDeliveryRequest",
    "RotateWebhookSecretRequest",
    "RotateWebhookSecretResponse",
    "StackAction",
    "StackEvent",
    "TestEventMatchRequest",
    "TestEventMatchResponse",
    "UpdateEvent",
    "UpdateKind",
    "UpdateResult",
    "UpdateWebhookRequest",
    "WatchWebhookDeliveriesRequest",
    "WatchWebhookDeliveriesResponse",
    "Webhook",
    "WebhookDelivery",
    "WebhookDeliveryAttempt",
    "WebhookDeliveryState",
    "WebhookDeliveryView",
    "WebhookFilter",
    "WebhookFormat",
    "WebhookGroup",
    "WebhookMatch",
    "error_info",
    "error_reason",
    "field_violations",
    "retry_delay",
    "service_config",
    "verify_signature",
    "violations",
]
